"""Ingestion: a webhook made durable in the spool before its answer (webhook_path,
group_commit, spool), then normalized into participant events (normalize)."""
