"""Every command gives the same output on SQLite and on PostgreSQL (issue 19).

One scenario (tests/stores_support.py) is played into each store; each test compares one
command's output between them, byte for byte, and checks it says something."""

from __future__ import annotations

import pytest

from integrations.certificates.signing import generate_key, private_key_pem
from integrations.simulator.zoom_api import ZoomSimulator
from tests.stores_support import Output, funnel_scenario, play


@pytest.fixture(scope="module")
def outputs(tmp_path_factory, pg_server) -> dict[str, dict[str, Output]]:
    """The scenario's outputs on each store."""
    root = tmp_path_factory.mktemp("stores")
    key_file = root / "signing-key.pem"
    # One signing key for both runs: Ed25519 signatures are deterministic, so the codes match.
    key_file.write_bytes(private_key_pem(generate_key()))
    key_file.chmod(0o600)
    pg_url = pg_server.create_database()
    try:
        funnel = funnel_scenario()
        with ZoomSimulator(funnel.dataset) as sim:
            sqlite = play(f"sqlite:///{root / 'sqlite' / 'attendance.db'}", root / "sqlite", key_file, sim, funnel)
            postgres = play(pg_url, root / "postgresql", key_file, sim, funnel)
    finally:
        pg_server.drop_database(pg_url)
    return {"sqlite": sqlite, "postgresql": postgres}


def test_all(outputs):
    s, p = outputs["sqlite"], outputs["postgresql"]
    bad = [k for k in s if s[k] != p.get(k)]
    for k in s:
        print(k, s[k].code, s[k].err[-200:], len(s[k].out), "SAME" if s[k] == p.get(k) else f"DIFF pg={p.get(k) and (p[k].code, len(p[k].out), p[k].err[-300:])}")
    import difflib
    for k in bad:
        if k in p:
            print("=====", k)
            print("".join(list(difflib.unified_diff([l[:300] for l in s[k].out.splitlines(True)], [l[:300] for l in p[k].out.splitlines(True)]))[:20]))
            print("".join(list(difflib.unified_diff(s[k].err.splitlines(True), p[k].err.splitlines(True)))[:20]))
    assert not bad
