"""E-certificates (issue 17): issue from the attendance evidence, sign, render, send, verify."""
