"""Imports every module that registers migrations.

Add a module here when it registers migrations. They apply in the order of their m0NN
names (store/schema.py `ordered_migrations`), not in the order of these imports.
"""

import store.audit_schema  # noqa: F401  (m005: raw_records meeting_id index, issue 5)
import store.derived_schema  # noqa: F401  (m008-m010: derived attendance tables, issue 8)
import store.reports  # noqa: F401  (m002, m003: report fetches, rows, registrants, schedule)
import store.schema  # noqa: F401  (m001: evidence, events, instances)
import store.spool_schema  # noqa: F401  (m011: spool import progress, issue 6)
