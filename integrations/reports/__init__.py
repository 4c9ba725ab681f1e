"""Report sync: when to fetch Zoom's participant reports (plan) and fetching them into the
store (sync)."""
