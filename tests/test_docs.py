"""The documentation keeps up with the code.

README.md stays short (10 KB) and its test command is the one CI runs; docs/cli.md shows
every command, docs/api.md every HTTP route, docs/operations.md and config.example.env
every setting; every relative link in README.md and docs/ resolves, anchors included.
"""

import importlib
import itertools
import re
from pathlib import Path

import click
import pytest

import worker
from integrations import cli as cli_package
from tests.conftest import make_config

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_LIMIT = 10240


def text(path: Path) -> str:
    return path.read_text(encoding="utf-8")


def command_names(group: click.Group, prefix: tuple[str, ...] = ()) -> list[str]:
    """Every command of `group`, and of its subgroups as `group sub`."""
    names = []
    for name in group.list_commands(click.Context(group)):
        command = group.get_command(click.Context(group), name)
        assert command is not None, f"{name} is listed but cannot be loaded"
        path = (*prefix, name)
        names.append(" ".join(path))
        if isinstance(command, click.Group):
            names.extend(command_names(command, path))
    return names


def prose_lines(markdown: str) -> list[str]:
    """The lines outside code blocks (fenced, or indented four spaces or more)."""
    lines, fenced = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if not fenced and not line.startswith("    "):
            lines.append(line)
    return lines


def headings(markdown: str) -> list[str]:
    return [m.group(1).strip() for line in prose_lines(markdown) if (m := re.match(r"#{1,6}\s+(.*)", line))]


def anchors(markdown: str) -> set[str]:
    """GitHub's anchors for the headings of a page (`-1`, `-2` for repeated ones)."""
    seen: dict[str, int] = {}
    result = set()
    for heading in headings(markdown):
        slug = re.sub(r"[^\w\- ]", "", heading.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        result.add(slug if count == 0 else f"{slug}-{count}")
    return result


def links(markdown: str) -> list[str]:
    """Targets of the inline links of a page, code spans and blocks left out."""
    targets = []
    for line in prose_lines(markdown):
        line = re.sub(r"`[^`]*`", "", line)
        targets.extend(re.findall(r"\]\(([^)\s]+)\)", line))
    return targets


# -- README -----------------------------------------------------------------------------


def test_readme_is_at_most_10_kb():
    size = len(README.read_bytes())
    assert size <= README_LIMIT, f"README.md is {size} bytes; move detail to docs/ (limit {README_LIMIT})"


def test_ci_runs_exactly_the_readme_test_command():
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = next(
        line.strip() for line in text(README).splitlines() if "pytest" in line and line.startswith("    ")
    )
    assert test_command in [line.strip() for line in ci.splitlines()]


def test_readme_runs_worker_with_the_virtualenv_python():
    bare = [line for line in text(README).splitlines() if re.search(r"(?<![\w/.])python3? worker\.py", line)]
    assert not bare, f"README.md runs worker.py with a bare python (use .venv/bin/python): {bare}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_shell_examples_use_the_virtualenv(page):
    """`$ python ...`, `$ pip ...` work only after activation; the pages use .venv/bin/."""
    venv_tools = {"python", "python3", "pip", "pytest", "ruff", "sqlite-utils", "datasette", "gunicorn"}
    wrong = []
    for line in text(page).splitlines():
        prompt = re.match(r"\s*\$ (.*)", line)
        if not prompt:
            continue
        words = [w for w in prompt.group(1).split() if not re.fullmatch(r"[A-Z_]+=\S*", w)]
        if words and words[0] in venv_tools:
            wrong.append(line.strip())
    assert not wrong, f"{page.name}: run these with .venv/bin/: {wrong}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_no_two_sections_share_a_title(page):
    titles = headings(text(page))
    repeated = sorted({t for t in titles if titles.count(t) > 1})
    assert not repeated, f"{page.name} has several sections titled {repeated}"


# -- links ------------------------------------------------------------------------------


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page):
    broken = []
    for target in links(text(page)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        file = (page.parent / path).resolve() if path else page
        if not file.exists():
            broken.append(f"{target} (no file {file.relative_to(ROOT) if file.is_relative_to(ROOT) else file})")
        elif anchor and file.suffix == ".md" and anchor not in anchors(text(file)):
            broken.append(f"{target} (no heading #{anchor} in {file.name})")
    assert not broken, f"{page.name} links to what does not exist: {broken}"


def test_every_docs_page_is_linked_from_the_readme():
    linked = {(README.parent / t.partition("#")[0]).resolve() for t in links(text(README))}
    pages = [p for p in sorted(DOCS.glob("*.md")) if p.name != "README.md"]
    missing = [p.name for p in pages if p.resolve() not in linked]
    assert not missing, f"README.md does not link to docs pages {missing}"


# -- CLI --------------------------------------------------------------------------------


@pytest.mark.parametrize("command", command_names(worker.cli))
def test_every_command_is_documented_in_cli_md(command):
    pattern = r"worker\.py " + re.escape(command) + r"(?![\w-])"
    assert re.search(pattern, text(DOCS / "cli.md")), f"docs/cli.md does not show `worker.py {command}`"


# -- HTTP -------------------------------------------------------------------------------


def route_patterns(rule: str) -> list[str]:
    """Regexes a documented path of `rule` matches: `<any(a, b):x>` is each of a and b,
    any other `<converter:name>` a placeholder such as MEETING (or the rule as written)."""
    parts = re.split(r"(<[^>]+>)", rule)
    choices = []
    for part in parts:
        variable = re.fullmatch(r"<(?:(\w+)(?:\((.*)\))?:)?(\w+)>", part)
        if variable is None:
            choices.append([re.escape(part)])
        elif variable.group(1) == "any":
            choices.append([re.escape(a.strip().strip("'\"")) for a in variable.group(2).split(",")])
        else:
            choices.append([r"[^\s/`?]+"])
    return ["".join(combo) + r"(?![\w/-])" for combo in itertools.product(*choices)]


def test_every_route_is_documented_in_api_md(tmp_path):
    from integrations.web import create_app

    app = create_app(make_config(tmp_path))
    api = text(DOCS / "api.md")
    missing = []
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        for pattern in route_patterns(rule.rule):
            for method in methods:
                documented = re.search(re.escape(method) + " " + pattern, api) or (
                    re.search(re.escape(method) + " " + re.escape(rule.rule), api)
                )
                if not documented:
                    missing.append(f"{method} {rule.rule} (as {pattern})")
    assert missing == [], f"docs/api.md does not document {missing}"


# -- configuration ----------------------------------------------------------------------


def configuration_names() -> set[str]:
    source = (ROOT / "integrations" / "config.py").read_text()
    names = set(re.findall(r'(?:text|number)\("([A-Z_]+)"', source)) | {"DATABASE_URL"}
    assert names, "no variables found in integrations/config.py"
    return names


def test_every_configuration_variable_is_in_the_example_env():
    example = (ROOT / "config.example.env").read_text()
    missing = sorted(n for n in configuration_names() if f"\n{n}=" not in "\n" + example)
    assert not missing, f"config.example.env does not document {missing}"


def test_every_configuration_variable_is_in_operations_md():
    operations = text(DOCS / "operations.md")
    missing = sorted(n for n in configuration_names() if f"`{n}`" not in operations)
    assert not missing, f"docs/operations.md does not document {missing}"


def test_the_lazy_command_list_names_every_command_of_every_cli_module():
    """integrations/cli/__init__.py's COMMANDS matches what each module of integrations/cli/ defines."""
    defined = {}
    for path in sorted((ROOT / "integrations" / "cli").glob("*.py")):
        module = importlib.import_module(f"integrations.cli.{path.stem}")
        for command in getattr(module, "commands", []):
            defined[command.name] = path.stem
    assert defined == cli_package.COMMANDS
