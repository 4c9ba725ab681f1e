"""CLI commands: demo."""

import click

commands: list[click.Command] = []
