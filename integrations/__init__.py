"""Everything above the SQL: the Zoom boundary, the attendance rules, ingestion, the web
app, the CLI, the worker's jobs, audits and the simulator; store/ holds the SQL."""
