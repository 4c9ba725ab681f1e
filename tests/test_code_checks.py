"""The checks that keep the tree's shape (issue 13): lint, format, types, import direction.

They run with the rest of the suite, so README's one test command is also the CI gate.
Imports are read with the ast module, never by importing the code.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# The pure modules: plain values in and out, no I/O (STYLE.md: "Pure functions ...").
PURE_ZOOM = {"integrations.zoom.signature", "integrations.zoom.webhooks", "integrations.zoom.jsontext"}
IO_LIBRARIES = {"flask", "werkzeug", "requests", "sqlite_utils", "sqlite3", "click", "apscheduler", "store"}


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", *command], cwd=ROOT, capture_output=True, text=True, timeout=600, check=False
    )


def test_ruff_check_passes():
    result = _run("ruff", "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_leaves_every_file_as_it_is():
    result = _run("ruff", "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_passes_with_the_projects_configuration():
    # pyproject.toml [tool.mypy]: strict on the pure modules, default elsewhere.
    result = _run("mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _python_files(*tops: str) -> Iterator[Path]:
    for top in tops:
        path = ROOT / top
        yield from [path] if path.suffix == ".py" else sorted(path.rglob("*.py"))


def _imports(path: Path) -> Iterator[tuple[str, int]]:
    """(what is imported, line) for every import in `path`: `from a.b import c` gives `a.b.c`
    (a module or a name inside one: either way it is within a.b)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                yield f"{base}.{alias.name}", node.lineno


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


def _violations(paths: Iterator[Path], forbidden) -> list[str]:
    found = []
    for path in paths:
        for module, line in _imports(path):
            reason = forbidden(_module_name(path), module)
            if reason:
                found.append(f"{path.relative_to(ROOT)}:{line}: imports {module}: {reason}")
    return found


def test_the_store_imports_only_the_pure_attendance_rules_from_integrations():
    def forbidden(_: str, module: str) -> str | None:
        if _within(module, "integrations") and not _within(module, "integrations.attendance"):
            return "the store is SQL; only the pure rules of integrations.attendance may be used"
        return None

    assert _violations(_python_files("store"), forbidden) == []


@pytest.mark.parametrize(
    "files",
    [["integrations/attendance"], [m.replace(".", "/") + ".py" for m in sorted(PURE_ZOOM)]],
    ids=["attendance", "zoom-pure"],
)
def test_pure_modules_import_no_io_and_nothing_outside_themselves(files):
    own = {"integrations.attendance"} if files == ["integrations/attendance"] else PURE_ZOOM

    def forbidden(_: str, module: str) -> str | None:
        if any(_within(module, io) for io in IO_LIBRARIES):
            return "a pure module does no I/O"
        if _within(module, "integrations") and not any(_within(module, o) for o in own):
            return "a pure module uses only its own package"
        return None

    paths = list(_python_files(*files))
    assert paths
    assert _violations(iter(paths), forbidden) == []


def test_only_the_web_app_and_the_cli_import_the_web_app_and_the_cli():
    # worker.py is the CLI's entry point; bench/ and tests/ are clients of both.
    # integrations/demo runs the web app as the Procfile's gunicorn process (a subprocess),
    # so it imports neither integrations.web nor flask.
    def forbidden(importer: str, module: str) -> str | None:
        for upper in ("integrations.web", "integrations.cli"):
            if not _within(module, upper) or _within(importer, upper):
                continue
            if importer == "worker" and module == "integrations.cli.cli":
                continue
            if _within(importer, "integrations.cli") and module == "integrations.web.configure_logging":
                continue  # the CLI logs as the web app does
            return f"only {upper} itself (and worker.py for the CLI) may import it"
        if _within(importer, "integrations.demo") and _within(module, "flask"):
            return "the demo starts the web app as a process, it does not import it"
        return None

    assert _violations(_python_files("worker.py", "integrations", "store"), forbidden) == []


def test_no_imports_inside_functions_outside_the_tests():
    # STYLE: imports at module level, unless one breaks a real cycle (none does today).
    found = []
    for path in _python_files("worker.py", "integrations", "store", "bench"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                found += [
                    f"{path.relative_to(ROOT)}:{inner.lineno}: in {node.name}"
                    for inner in ast.walk(node)
                    if isinstance(inner, ast.Import | ast.ImportFrom)
                ]
    assert found == []


def test_the_import_reader_sees_what_it_checks():
    # The checks above pass vacuously if the reader finds nothing: it must see known imports.
    seen = {module for module, _ in _imports(ROOT / "integrations/cli/service.py")}
    assert "integrations.web.configure_logging" in seen
    store_modules = {module for path in _python_files("store") for module, _ in _imports(path)}
    assert "integrations.attendance.intervals.OPEN" in store_modules and "sqlite_utils" in store_modules
