"""The command line: one click group, one module per group of commands.

Add a command to the module of its area (or a new module), list it in that module's
`commands`, and name it in `COMMANDS` below. `worker.py` is only the entry point.
"""

from __future__ import annotations

import importlib

import click

from integrations.cli.context import App

# Each command and the module of integrations/cli/ that defines it. A module is imported only
# when one of its commands runs: together they import Flask, the scheduler, the PDF renderer
# and more, 0.7 s that `worker.py funnel` should not pay (tests/test_docs.py keeps this in step).
COMMANDS = {
    "serve": "service",
    "schedule": "service",
    "run": "service",
    "normalize": "service",
    "problems": "service",
    "track": "reports",
    "sync": "reports",
    "get": "reports",
    "poll-status": "reports",
    "meetings": "attendance",
    "attendance": "attendance",
    "summary": "attendance",
    "timeline": "attendance",
    "rebuild": "attendance",
    "import-registrations": "funnel",
    "rules": "funnel",
    "funnel": "funnel",
    "verify": "audit",
    "export-raw": "audit",
    "evidence": "audit",
    "backup": "audit",
    "demo": "demo",
    "certificates": "certificates",
    "doctor": "doctor",
}


class LazyGroup(click.Group):
    """A group whose commands are imported from their module when first asked for."""

    def list_commands(self, ctx: click.Context | None) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context | None, cmd_name: str) -> click.Command | None:
        module_name = COMMANDS.get(cmd_name)
        if module_name is None:
            return None
        module = importlib.import_module(f"integrations.cli.{module_name}")
        return {command.name: command for command in module.commands}[cmd_name]


@click.group(cls=LazyGroup)
@click.version_option("0.1.0", prog_name="attendance-worker")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Attendance worker for Zoom: receive webhooks, poll reports, prove attendance."""
    ctx.obj = App()
    ctx.call_on_close(ctx.obj.close)
