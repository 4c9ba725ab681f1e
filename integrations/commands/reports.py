"""CLI commands: reports."""

import click

commands: list[click.Command] = []
