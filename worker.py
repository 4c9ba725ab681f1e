"""Attendance worker for Zoom: the command-line entry point.

`.venv/bin/python worker.py --help` lists the commands; they live in integrations/cli/.
Configuration comes from the environment and `.env` (see config.example.env).
"""

from integrations.cli import cli

if __name__ == "__main__":
    cli()
