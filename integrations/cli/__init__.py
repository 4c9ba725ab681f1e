"""The command line: one click group, one module per group of commands.

Add a command to the module of its area (or a new module), list it in that module's
`commands`, and name it in `COMMANDS` below. `worker.py` is only the entry point.
"""

from __future__ import annotations

import importlib
import sys

import click
import psycopg

from integrations.cli.context import App
from store.postgres import first_line, redact_text

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
    "copy-db": "copydb",
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


class OneLineErrors(LazyGroup):
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
        # Every message passes redact_text: an argument or a location may be a database URL
        # with its password (`verify postgresql://user:pw@...` is an extra argument).
        except click.UsageError as e:
            command = e.ctx.command_path if e.ctx else "worker.py"
            click.echo(f"Error: {redact_text(e.format_message())} (see '{command} --help')", err=True)
            sys.exit(e.exit_code)
        except click.ClickException as e:
            click.echo(f"Error: {redact_text(e.format_message())}", err=True)
            sys.exit(e.exit_code)
        except psycopg.Error as e:  # PostgreSQL refused something no command expected: one line
            click.echo(f"Error: PostgreSQL: {redact_text(first_line(e))}", err=True)
            sys.exit(1)
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
