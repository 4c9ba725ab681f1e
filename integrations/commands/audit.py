"""CLI commands: audit."""

import click

commands: list[click.Command] = []
