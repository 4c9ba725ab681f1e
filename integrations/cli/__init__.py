"""The command line: one click group, one module per group of commands.

Add a command to the module of its area (or a new module) and list it in that module's
`commands`; `cli` registers them all. `worker.py` is only the entry point.
"""

from __future__ import annotations

import sys

import click

from integrations.cli import attendance, audit, certificates, demo, doctor, reports, service
from integrations.cli.context import App


class OneLineErrors(click.Group):
    """A group whose usage errors are one line on stderr (exit 2), like its runtime errors (exit 1)."""

    def main(self, *args, standalone_mode: bool = True, **kwargs):
        """Run the CLI; usage errors print `Error: ...` on one line instead of click's usage block."""
        if not standalone_mode:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        try:
            return super().main(*args, standalone_mode=False, **kwargs)  # type: ignore[call-overload]
        except click.exceptions.NoArgsIsHelpError as e:
            e.show()  # the help text, as click prints it
            sys.exit(e.exit_code)
        except click.UsageError as e:
            command = e.ctx.command_path if e.ctx else "worker.py"
            click.echo(f"Error: {e.format_message()} (see '{command} --help')", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            e.show()
            sys.exit(e.exit_code)
        except click.Abort:
            click.echo("Aborted!", err=True)
            sys.exit(1)
        except click.exceptions.Exit as e:
            sys.exit(e.exit_code)


@click.group(cls=OneLineErrors)
@click.version_option("0.1.0", prog_name="attendance-worker")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Attendance worker for Zoom: receive webhooks, poll reports, prove attendance."""
    ctx.obj = App()
    ctx.call_on_close(ctx.obj.close)


for _module in (service, reports, attendance, audit, demo, certificates, doctor):
    for _command in _module.commands:
        cli.add_command(_command)
