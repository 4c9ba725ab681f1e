"""Options that several CLI commands share, declared once so their types and names agree.

Each command keeps its own help text: the same option means "eligible", "attended" or
"for this query only" depending on the command.
"""

from __future__ import annotations

from collections.abc import Callable

import click

from integrations.cli.context import FINITE_MINUTES, PERCENT


def rule_options(min_minutes: str, min_percent: str, pass_percent: str | None = None) -> Callable[[Callable], Callable]:
    """`--min-minutes N`, `--min-percent P` and, given its help, `--pass-percent P`."""

    def decorate(f: Callable) -> Callable:
        if pass_percent is not None:
            f = click.option("--pass-percent", type=PERCENT, metavar="P", help=pass_percent)(f)
        f = click.option("--min-percent", type=PERCENT, metavar="P", help=min_percent)(f)
        return click.option("--min-minutes", type=FINITE_MINUTES, metavar="N", help=min_minutes)(f)

    return decorate
