"""E-certificates (issue 17): issue from the evidence, sign, render, verify, revoke, reissue."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import zipfile
from pathlib import Path

import pytest
from pypdf import PdfReader

from integrations.certificates.signing import (
    CertificateContent,
    InvalidCode,
    decode_code,
    generate_key,
    sign_content,
    verify_code,
)
from store.audit import verify_file
from store.certificates import certificates_of_person, verify_certificate_chain
from store.db import open_db
from tests.certificates_support import BASE_URL, MEETING, PEOPLE, UUID, certificate_config, finished_meeting


@pytest.fixture
def config(tmp_path):
    return certificate_config(tmp_path)


@pytest.fixture
def meeting(client, config, runner_env):
    finished_meeting(client, config)
    result = runner_env(["certificates", "keygen"])
    assert result.exit_code == 0, result.output
    return config


def ok(result):
    assert result.exit_code == 0, result.output
    return result


def listed(runner_env):
    return json.loads(ok(runner_env(["certificates", "list", MEETING, "--format", "json"])).stdout)


def test_keygen_writes_an_owner_only_key_and_refuses_to_overwrite(meeting, runner_env):
    path = meeting.cert_signing_key_file
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    before = Path(path).read_bytes()
    result = runner_env(["certificates", "keygen"])
    assert result.exit_code == 1
    assert "refusing to overwrite" in result.output
    assert Path(path).read_bytes() == before


def test_issue_twice_gives_the_same_set(meeting, runner_env):
    ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    first = listed(runner_env)
    result = ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    assert "issued 0 certificates" in result.stdout
    assert listed(runner_env) == first
    assert sorted(r["name"] for r in first) == sorted(p[0] for p in PEOPLE[:3])


def test_person_below_the_rules_gets_none(meeting, runner_env):
    ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    emails = {r["email"] for r in listed(runner_env)}
    assert "short@example.org" not in emails  # 5 minutes
    assert "ivan@example.org" in emails  # exactly 30 minutes


def test_passed_stage_needs_a_pass_percent(meeting, runner_env):
    result = runner_env(["certificates", "issue", MEETING, "--stage", "passed"])
    assert result.exit_code == 1
    assert result.output == (
        f"Error: stage 'passed' needs a pass percent: store one with `worker.py rules {MEETING} "
        "--pass-percent P` or give --pass-percent\n"
    )
    # With one but no quiz taken, nobody passed: nothing is issued.
    result = ok(runner_env(["certificates", "issue", MEETING, "--stage", "passed", "--pass-percent", "70"]))
    assert "issued 0 certificates" in result.stdout and listed(runner_env) == []


def test_never_two_live_certificates_for_one_person(meeting, runner_env):
    ok(runner_env(["certificates", "issue", MEETING]))
    db = open_db(meeting.database_path)
    with pytest.raises(Exception, match="UNIQUE"):
        db.execute(
            "INSERT INTO certificates (meeting_id, person_key, name, date, attended_minutes, stage, rules, key_id, "
            "code, issued_at) SELECT meeting_id, person_key, name, date, attended_minutes, stage, rules, key_id, "
            "code || 'x', issued_at FROM certificates LIMIT 1"
        )


def test_a_tampered_code_another_key_and_a_revoked_certificate_all_fail(meeting, runner_env, client):
    ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    rows = listed(runner_env)
    good, victim = rows[0], rows[1]
    assert client.get(f"/api/certificates/{good['code']}").get_json()["valid"] is True

    payload, signature = decode_code(good["code"])
    flipped = bytearray(payload + signature)
    flipped[5] ^= 0x01
    import base64

    tampered = base64.urlsafe_b64encode(bytes(flipped)).rstrip(b"=").decode()
    other = sign_content(
        CertificateContent(good["number"], MEETING, "2024-05-01", 60, None, good["name"]), generate_key()
    )
    for bad in (tampered, other, good["code"][:-2] + ("AA" if not good["code"].endswith("AA") else "BB")):
        response = client.get(f"/api/certificates/{bad}")
        assert response.status_code == 404
        assert response.get_json() == {"valid": False}
        assert runner_env(["certificates", "verify", bad]).exit_code == 1

    ok(runner_env(["certificates", "revoke", str(victim["number"]), "--reason", "duplicate account"]))
    answer = client.get(f"/api/certificates/{victim['code']}").get_json()
    assert answer["valid"] is False and answer["revoked"] is True
    result = runner_env(["certificates", "verify", f"{BASE_URL}/verify/{victim['code']}"])
    assert result.exit_code == 1 and "REVOKED" in result.output
    assert "revoked" in client.get(f"/verify/{victim['code']}").get_data(as_text=True).lower()
    # The others stay valid.
    assert client.get(f"/api/certificates/{good['code']}").get_json()["valid"] is True


def test_signing_is_pure_and_round_trips():
    key = generate_key()
    content = CertificateContent(12003, "98765432100", "2024-05-01", 95, "87.5", "Zoë Παπαδοπούλου")
    code = sign_content(content, key)
    assert verify_code(code, key.public_key()) == content
    assert len(code) < 200 and set(code) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    with pytest.raises(InvalidCode):
        verify_code(code, generate_key().public_key())
    with pytest.raises(InvalidCode):
        verify_code(code + "A", key.public_key())


def test_reissue_revokes_the_old_and_prints_the_corrected_name(meeting, runner_env, client, tmp_path):
    ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    old = next(r for r in listed(runner_env) if r["email"] == "ivan@example.org")
    ok(runner_env(["certificates", "reissue", str(old["number"]), "--name", "Иван Петрович Ёлкин-Смирнов"]))
    rows = {r["number"]: r for r in listed(runner_env)}
    assert rows[old["number"]]["revoked"] is not None
    new = max(rows.values(), key=lambda r: r["number"])
    assert new["name"] == "Иван Петрович Ёлкин-Смирнов" and new["revoked"] is None
    assert client.get(f"/api/certificates/{new['code']}").get_json()["name"] == "Иван Петрович Ёлкин-Смирнов"
    db = open_db(meeting.database_path)
    events = [r[0] for r in db.execute("SELECT action FROM certificate_events ORDER BY id")]
    assert events == ["issued"] * 3 + ["revoked", "issued"]
    assert verify_certificate_chain(db)[0] == 5
    mine = certificates_of_person(db, MEETING, "IVAN@example.org")
    assert [c["number"] for c in mine] == [new["number"], old["number"]]
    assert certificates_of_person(db, UUID, mine[0]["person_key"])[0]["number"] == new["number"]


def test_pdf_holds_the_exact_names_and_a_qr_code_to_the_verify_url(meeting, runner_env, tmp_path):
    ok(runner_env(["certificates", "issue", MEETING, "--min-minutes", "30"]))
    out = tmp_path / "pdfs"
    result = ok(runner_env(["certificates", "pdf", MEETING, "--out", str(out)]))
    assert "wrote 3 certificates" in result.stdout
    for row in listed(runner_env):
        path = out / f"certificate-{row['number']}.pdf"
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        text = PdfReader(str(path)).pages[0].extract_text()
        assert row["name"] in text
        poppler = subprocess.run(["pdftotext", str(path), "-"], capture_output=True, text=True, check=True).stdout
        assert row["name"] in poppler
        subprocess.run(["pdftoppm", "-png", "-r", "110", "-singlefile", str(path), str(tmp_path / "page")], check=True)
        decoded = subprocess.run(
            ["zbarimg", "--quiet", "--raw", str(tmp_path / "page.png")], capture_output=True, text=True, check=True
        ).stdout.strip()
        assert decoded == f"{BASE_URL}/verify/{row['code']}" == row["verify_url"]
        # The PDF alone is enough for an offline check.
        checked = ok(runner_env(["certificates", "verify", str(path), "--offline"]))
        assert json.loads(checked.stdout)["name"] == row["name"]


def test_pdf_zip_and_no_writing_through_a_symlink(meeting, runner_env, tmp_path):
    ok(runner_env(["certificates", "issue", MEETING]))
    out = tmp_path / "zipped"
    ok(runner_env(["certificates", "pdf", MEETING, "--out", str(out), "--zip"]))
    archive = out / f"certificates-{MEETING}.zip"
    assert stat.S_IMODE(os.stat(archive).st_mode) == 0o600
    with zipfile.ZipFile(archive) as z:
        assert len(z.namelist()) == 4
    target = tmp_path / "elsewhere.txt"
    target.write_text("keep me")
    os.remove(archive)
    os.symlink(target, archive)
    result = runner_env(["certificates", "pdf", MEETING, "--out", str(out), "--zip"])
    assert result.exit_code == 1 and "symlink" in result.output
    assert target.read_text() == "keep me"


def test_long_and_hostile_names_are_just_text(meeting, runner_env, tmp_path):
    ok(runner_env(["certificates", "issue", MEETING]))
    row = listed(runner_env)[0]
    hostile = "María-José ) Tj /F1 99 Tf (<script>alert(1)</script> " + "de la Santísima Trinidad " * 4
    ok(runner_env(["certificates", "reissue", str(row["number"]), "--name", hostile]))
    ok(runner_env(["certificates", "pdf", MEETING, "--out", str(tmp_path / "p")]))
    new = max(listed(runner_env), key=lambda r: r["number"])
    text = subprocess.run(
        ["pdftotext", str(tmp_path / "p" / f"certificate-{new['number']}.pdf"), "-"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert " ".join(text.split()).find(" ".join(hostile.split())) >= 0


def test_verify_page_and_json_carry_nothing_personal_beyond_the_name(meeting, runner_env, client):
    ok(runner_env(["certificates", "issue", MEETING]))
    for row in listed(runner_env):
        for path in (f"/verify/{row['code']}", f"/api/certificates/{row['code']}"):
            response = client.get(path)
            assert response.status_code == 200
            body = response.get_data(as_text=True)
            assert "@" not in body and "example.org" not in body and "email" not in body.lower()
            assert "person_key" not in body and "rules" not in body
        answer = client.get(f"/api/certificates/{row['code']}").get_json()
        assert set(answer) == {
            "valid",
            "revoked",
            "number",
            "name",
            "event",
            "date",
            "attended_minutes",
            "score",
            "revoked_at",
        }
        page = client.get(f"/verify/{row['code']}")
        assert "<script" not in page.get_data(as_text=True)
        assert "script-src" not in page.headers["Content-Security-Policy"]
        assert page.headers["Referrer-Policy"] == "no-referrer"


def test_public_key_and_api_need_no_token(meeting, client):
    pem = client.get("/verify/key")
    assert pem.status_code == 200 and pem.get_data().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert b"PRIVATE" not in pem.get_data()
    assert client.get("/api/meetings").status_code == 401  # the read API still wants its token
    assert client.get("/api/certificates/AAAA").status_code == 404


def test_lookups_are_rate_limited_per_client(tmp_path):
    from integrations.web import create_app

    config = certificate_config(tmp_path, CERT_VERIFY_PER_MINUTE="3")
    generate = __import__("integrations.certificates.keys", fromlist=["write_new_key"]).write_new_key
    generate(config.cert_signing_key_file)
    app = create_app(config)
    app.config["TESTING"] = True
    clock = [0.0]
    app.extensions["cert_verify_limiter"].clock = lambda: clock[0]
    client = app.test_client()
    codes = [
        client.get("/api/certificates/AAAA", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code for _ in range(4)
    ]
    assert codes == [404, 404, 404, 429]
    assert client.get("/verify/AAAA", environ_base={"REMOTE_ADDR": "10.0.0.2"}).status_code == 404
    clock[0] += 20.0  # one token back after a third of a minute
    assert client.get("/api/certificates/AAAA", environ_base={"REMOTE_ADDR": "10.0.0.1"}).status_code == 404


def test_issuance_is_in_a_hash_chain_and_verify_still_passes(meeting, runner_env):
    ok(runner_env(["certificates", "issue", MEETING]))
    db = open_db(meeting.database_path)
    count, head = verify_certificate_chain(db)
    assert count == 4
    body = json.loads(db.execute("SELECT body FROM certificate_events ORDER BY id LIMIT 1").fetchone()[0])
    assert body["evidence_head"] == verify_file(meeting.database_path).chain_hash
    result = ok(runner_env(["verify"]))
    assert f"OK certificate events 4, head {head}" in result.output
    db.execute("""UPDATE certificate_events SET body = replace(body, '"action":"', '"action":"x') WHERE id = 1""")
    result = runner_env(["verify"])
    assert result.exit_code == 1 and "certificate event 1" in result.output


def test_names_the_pdf_cannot_print_as_spelled_are_named_before_sending(meeting, runner_env, tmp_path):
    # The renderer draws one glyph per character in stored order: no bidi, no Arabic joining,
    # and DejaVu Sans has no CJK (docs/certificates.md, "Names in other scripts").
    ok(runner_env(["certificates", "issue", MEETING]))
    first, second, *_ = listed(runner_env)
    ok(runner_env(["certificates", "reissue", str(first["number"]), "--name", "محمد عبد الله"]))
    ok(runner_env(["certificates", "reissue", str(second["number"]), "--name", "王小明"]))
    arabic, chinese = sorted(r["number"] for r in listed(runner_env))[-2:]
    result = ok(runner_env(["certificates", "pdf", MEETING, "--out", str(tmp_path / "p")]))
    assert (
        f"warning: 1 names with right-to-left letters (printed left to right; Arabic unjoined): certificates {arabic}\n"
        in result.stderr
    )
    assert (
        f"warning: 1 names with letters the font does not have (printed as boxes): certificates {chinese}\n"
        in result.stderr
    )
    # What the PDF holds: the characters in stored order (extractors then read it reversed).
    pdf = str(tmp_path / "p" / f"certificate-{arabic}.pdf")
    poppler = subprocess.run(["pdftotext", pdf, "-"], capture_output=True, text=True, check=True).stdout
    assert "محمد عبد الله"[::-1] in poppler
