"""What auditors receive: the raw join-log export (export, export_parallel) and the
evidence bundle of one instance (bundle)."""
