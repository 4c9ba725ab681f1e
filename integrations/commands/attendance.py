"""CLI commands: attendance."""

import click

commands: list[click.Command] = []
