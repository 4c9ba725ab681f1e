"""The derived attendance tables kept up to date: refresh (evidence in, rules applied,
changed rows out, with the worker's pacer) and rebuild."""
