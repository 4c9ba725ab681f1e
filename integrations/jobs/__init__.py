"""The worker process: the scheduler and its jobs (normalization, refresh, report polling)."""
