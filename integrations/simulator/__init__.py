"""Zoom without Zoom, for the demo, tests and benchmarks: a REST API server (zoom_api) and
the webhook deliveries Zoom would send (webhooks). Never used in production."""
