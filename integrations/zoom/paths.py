"""The Zoom REST paths the service reads, named as metrics labels and the simulator name them.

Each pattern matches a path after /v2; its two groups are the kind (meetings or webinars)
and the meeting id or instance UUID (meetings-api.openapi.json). Where two could match, the
first named wins: a report's /polls before a meeting's own /polls.
"""

API_PATHS = (
    ("participants", r"/report/(meetings|webinars)/(.+)/participants"),
    ("polls", r"/report/(meetings|webinars)/(.+)/polls"),
    ("instances", r"/past_(meetings|webinars)/([^/]+)/instances"),
    ("absentees", r"/past_(webinars)/([^/]+)/absentees"),
    ("registrants", r"/(webinars)/([^/]+)/registrants"),
    ("poll_definitions", r"/(meetings|webinars)/([^/]+)/polls"),
)
