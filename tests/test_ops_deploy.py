"""deploy/ for those who run Prometheus and Grafana (issue 18): the rules pass promtool, and
every dashboard panel asks for metrics the service exports."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import post_event

DEPLOY = Path(__file__).resolve().parents[1] / "deploy"
OUR_PREFIXES = ("zoom_", "attendance_", "http_request_")


def promtool() -> str:
    path = shutil.which("promtool")
    assert path, "promtool is missing: apt-get install prometheus (Debian's package ships it)"
    return path


def test_alert_rules_pass_promtool_check():
    result = subprocess.run(
        [promtool(), "check", "rules", str(DEPLOY / "prometheus-alerts.yml")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 8 rules found" in result.stdout


def test_alert_rules_pass_their_promtool_unit_tests():
    result = subprocess.run(
        [promtool(), "test", "rules", "prometheus-alerts.test.yml"],
        cwd=DEPLOY,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def exported_names(client) -> set[str]:
    """Every series name /metrics can carry (histogram and counter suffixes included)."""
    post_event(client, {"event": "meeting.started", "payload": {"object": {"id": "1", "uuid": "u"}}})
    names = set()
    for family in text_string_to_metric_families(client.get("/metrics").get_data(as_text=True)):
        suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"]}.get(family.type, [""])
        names.update(family.name + suffix for suffix in suffixes)
    return names


def test_every_dashboard_panel_names_an_exported_metric(client):
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exported = exported_names(client)
    assert dashboard["panels"]
    for panel in dashboard["panels"]:
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            ours = [t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", target["expr"]) if t.startswith(OUR_PREFIXES)]
            assert ours, (panel["title"], target["expr"])
            missing = [name for name in ours if name not in exported]
            assert not missing, (panel["title"], missing)


def test_every_alert_rule_names_an_exported_metric(client):
    exported = exported_names(client) | {"up"}
    text = (DEPLOY / "prometheus-alerts.yml").read_text()
    exprs = re.findall(r"^\s+expr: (.+)$", text, re.MULTILINE)
    assert len(exprs) == 8
    for expr in exprs:
        ours = [t for t in re.findall(r"[a-zA-Z_:][a-zA-Z0-9_:]*", expr) if t.startswith(OUR_PREFIXES)]
        assert all(name in exported for name in ours), expr
