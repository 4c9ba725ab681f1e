"""What a user sees when a certificates command cannot do its job: one line, the reason, no traceback."""

from __future__ import annotations

import dataclasses

import pytest

from integrations.certificates.keys import write_new_key
from integrations.cli import context
from store.db import open_db
from tests.certificates_support import MEETING, certificate_config, finished_meeting


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


@pytest.fixture
def issued(client, config, runner_env):
    finished_meeting(client, config)
    assert runner_env(["certificates", "keygen"]).exit_code == 0
    assert runner_env(["certificates", "issue", MEETING]).exit_code == 0
    return config


def one_error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), result.output
    return lines[0]


@pytest.mark.parametrize("zipped", [[], ["--zip"]])
def test_pdf_into_a_directory_that_cannot_be_made_is_one_line(issued, runner_env, tmp_path, zipped):
    (tmp_path / "a-file").write_text("")
    line = one_error_line(
        runner_env(["certificates", "pdf", MEETING, "--out", str(tmp_path / "a-file" / "x"), *zipped])
    )
    assert str(tmp_path / "a-file" / "x") in line and "Not a directory" in line
    line = one_error_line(runner_env(["certificates", "pdf", MEETING, "--out", "/proc/certs", *zipped]))
    assert line == "Error: cannot create the output directory /proc/certs: No such file or directory"


def test_verify_without_a_key_points_to_the_public_key(issued, runner_env, monkeypatch):
    code = runner_env(["certificates", "list", MEETING, "--format", "csv"]).stdout.splitlines()[1].split(",")[3]
    keyless = dataclasses.replace(issued, cert_signing_key_file=None)
    monkeypatch.setattr(context, "load_config", lambda: keyless)
    for argument in (code, "garbage"):
        line = one_error_line(runner_env(["certificates", "verify", argument]))
        assert "--public-key FILE" in line and "/verify/key" in line and "keygen" not in line


def test_verify_a_file_that_is_not_a_pdf_says_so(issued, runner_env, tmp_path):
    (tmp_path / "raw.csv").write_text("number,name\n1,Ana\n")
    line = one_error_line(runner_env(["certificates", "verify", str(tmp_path / "raw.csv")]))
    assert line == f"Error: {tmp_path / 'raw.csv'} is not a PDF (give a certificate's code, verify URL or PDF)"
    line = one_error_line(runner_env(["certificates", "verify", str(tmp_path / "missing.pdf")]))
    assert line == f"Error: cannot read {tmp_path / 'missing.pdf'}: No such file or directory"


def test_list_table_has_the_documented_columns_and_empty_emails_print_empty(issued, runner_env):
    db = open_db(issued.database_path)
    with db.conn:
        db.execute("UPDATE certificates SET email = NULL WHERE number = 2")
    result = runner_env(["certificates", "list", MEETING])
    assert result.exit_code == 0, result.output
    header, rule, *rows = result.stdout.splitlines()
    assert header.split() == ["number", "name", "email", "issued", "revoked", "sent"]
    assert "<" not in result.stdout and len(rows) == 4
    first, second = rows[0].split(), rows[1].split()
    assert first[0] == "1" and "@" in first[-2] and first[-1].endswith("Z")  # issued, to the second
    assert second[0] == "2" and not any("@" in cell for cell in second)


def test_a_rate_limited_verify_page_is_html_and_the_api_json(tmp_path):
    from integrations.web import create_app

    config = certificate_config(tmp_path, CERT_VERIFY_PER_MINUTE="1")
    write_new_key(config.cert_signing_key_file)
    app = create_app(config)
    client = app.test_client()
    for path in ("/verify/AAAA", "/api/certificates/AAAA"):
        assert client.get(path, environ_base={"REMOTE_ADDR": "10.0.0.9"}).status_code in (404, 429)
    page = client.get("/verify/AAAA", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert page.status_code == 429 and page.mimetype == "text/html" and page.headers["Retry-After"] == "60"
    assert "Too many lookups" in page.get_data(as_text=True)
    api = client.get("/api/certificates/AAAA", environ_base={"REMOTE_ADDR": "10.0.0.9"})
    assert api.status_code == 429 and api.get_json()["error"] == "rate_limited"
