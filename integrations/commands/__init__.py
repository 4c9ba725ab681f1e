"""CLI commands, one module per area; worker.py adds each module's `commands`."""
