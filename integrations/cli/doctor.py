"""`worker.py doctor`: the pre-event checklist (issue 18), one line per check, ok or how to fix.

Exit status 0 only when no check failed (skipped ones do not apply to this setup).
"""

from __future__ import annotations

import json

import click

from integrations.cli.context import App, pass_app
from integrations.ops.doctor import FAILED, OK, run_checks
from store.db import DatabaseUnavailable, Store, open_existing
from store.errors import DRIVER_ERRORS

MARKS = {OK: "ok  ", FAILED: "FAIL", "skipped": "-   "}


@click.command()
@click.option("--format", "output", type=click.Choice(["text", "json"]), default="text", show_default=True)
@pass_app
def doctor(app: App, output: str) -> None:
    """Check the setup before an event: configuration, database, Zoom credentials and scopes, clock, public URL."""
    config = app.config
    # The database as it is: a check must never create the database it checks, nor migrate it.
    db: Store | None = None
    problem: BaseException | None = None
    try:
        db = open_existing(config.database_path, lock_timeout=config.db_lock_timeout_seconds)
    except (DatabaseUnavailable, *DRIVER_ERRORS, OSError) as e:
        problem = e
    try:
        checks = run_checks(config, db, open_error=problem)
    finally:
        if db is not None:
            db.close()
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
