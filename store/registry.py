"""Imports every module that registers migrations, in the order they must apply.

Add a module here when it registers migrations; never reorder existing lines.
"""

import store.schema  # noqa: F401  (m001: evidence, events, instances)
import store.reports  # noqa: F401  (m002: report fetches, rows, registrants)
import store.derived_schema  # noqa: F401  (m008, m009: derived attendance tables, issue 8)
import store.audit_schema  # noqa: F401  (m005: raw_records meeting_id index, issue 5)
