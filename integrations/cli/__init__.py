"""The command line: one click group, one module per group of commands.

Add a command to the module of its area (or a new module) and list it in that module's
`commands`; `cli` registers them all. `worker.py` is only the entry point.
"""

from __future__ import annotations

import click

from integrations.cli import attendance, audit, certificates, demo, doctor, funnel, reports, service
from integrations.cli.context import App


@click.group()
@click.version_option("0.1.0", prog_name="attendance-worker")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Attendance worker for Zoom: receive webhooks, poll reports, prove attendance."""
    ctx.obj = App()
    ctx.call_on_close(ctx.obj.close)


for _module in (service, reports, attendance, funnel, audit, demo, certificates, doctor):
    for _command in _module.commands:
        cli.add_command(_command)
