"""Reads shared by the CLI and the read API: attendance brought up to date first, and the
output formats (table, CSV, JSON)."""
