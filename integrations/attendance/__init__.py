"""The attendance rules of issue 4 as pure functions: who is one person (identity), their
connections (segments), time arithmetic (intervals) and the table rows (compute)."""
