"""The Zoom boundary: webhook signatures and payload parsing (pure), the REST client and
report paging, and the raw join-log flattening of stored bodies."""
