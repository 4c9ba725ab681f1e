"""`worker.py doctor`: the pre-event checklist (issue 18), one line per check, ok or how to fix.

Exit status 0 only when no check failed (skipped ones do not apply to this setup).
"""

from __future__ import annotations

import json
import sqlite3

import click

from integrations.cli.context import App, pass_app
from integrations.ops.doctor import FAILED, OK, run_checks
from store.db import DatabaseUnavailable

MARKS = {OK: "ok  ", FAILED: "FAIL", "skipped": "-   "}


@click.command()
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def doctor(app: App, output: str) -> None:
    """Check the setup before an event: configuration, database, Zoom credentials and scopes, clock, public URL."""
    config = app.config
    try:
        db = app.store()
    except (click.ClickException, DatabaseUnavailable, sqlite3.Error, OSError):
        db = None
    checks = run_checks(config, db)
    failed = [c for c in checks if c.status == FAILED]
    if output == "json":
        click.echo(json.dumps({"ok": not failed, "checks": [c.to_dict() for c in checks]}, indent=2))
    else:
        for check in checks:
            click.echo(f"{MARKS.get(check.status, check.status)}  {check.name}: {check.detail}")
            if check.fix and check.status == FAILED:
                click.echo(f"      fix: {check.fix}")
        passed = sum(c.status == OK for c in checks)
        click.echo(
            f"{len(checks)} checks: {passed} ok, {len(failed)} failed, {len(checks) - passed - len(failed)} skipped"
        )
    if failed:
        raise SystemExit(1)


commands: list[click.Command] = [doctor]
