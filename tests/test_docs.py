"""README.md documents every command, and its test command is the one CI runs."""

from pathlib import Path

import pytest

import worker

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


@pytest.mark.parametrize("command", sorted(worker.cli.commands))
def test_every_command_is_documented_in_readme(command):
    assert f"worker.py {command}" in README, f"README.md does not show `python worker.py {command}`"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(line.strip() for line in README.splitlines() if "pytest" in line and line.startswith("    "))
    assert test_command in [line.strip() for line in ci.splitlines()]


def test_every_configuration_variable_is_in_the_example_env():
    import re

    source = (ROOT / "integrations" / "config.py").read_text()
    example = (ROOT / "config.example.env").read_text()
    names = set(re.findall(r'(?:text|number)\("([A-Z_]+)"', source)) | {"DATABASE_URL"}
    assert names, "no variables found in integrations/config.py"
    missing = sorted(n for n in names if f"\n{n}=" not in "\n" + example)
    assert not missing, f"config.example.env does not document {missing}"
