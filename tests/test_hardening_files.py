"""Output files (issue 14): export-raw -o, evidence -o and backup write owner-only files,
never through a symlink, and refuse to replace anything unless --force (then atomically)."""

from __future__ import annotations

import os
import stat

import pytest

from integrations.files import OutputError, OutputExists, private_output, private_output_path
from tests.attendance_support import Scenario
from tests.test_attendance_scenarios import MEETING, MEETING_UUID, meeting_webhooks
from tests.test_hardening_input import one_line_error, worker


def mode(path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@pytest.fixture(autouse=True)
def open_umask():
    # Files must be 0600 because we make them so, not because of the test runner's umask.
    old = os.umask(0)
    yield
    os.umask(old)


def test_a_new_file_is_owner_only_and_appears_whole(tmp_path):
    target = tmp_path / "out.csv"
    with private_output(str(target)) as f:
        f.write(b"a,b\n")
        assert not target.exists()  # nothing half-written under the real name
    assert target.read_bytes() == b"a,b\n" and mode(target) == 0o600
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv"]


def test_an_existing_file_is_kept_unless_forced(tmp_path):
    target = tmp_path / "out.csv"
    target.write_bytes(b"old")
    os.chmod(target, 0o644)
    with pytest.raises(OutputExists, match="--force"), private_output(str(target)) as f:
        f.write(b"new")
    assert target.read_bytes() == b"old"
    with private_output(str(target), force=True) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new" and mode(target) == 0o600


def test_symlinks_are_never_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    link = tmp_path / "link.csv"
    link.symlink_to(victim)
    dangling = tmp_path / "dangling.csv"
    dangling.symlink_to(tmp_path / "nowhere")
    for path in (link, dangling):
        with pytest.raises(OutputExists), private_output(str(path)) as f:
            f.write(b"x")
    assert victim.read_bytes() == b"precious" and not (tmp_path / "nowhere").exists()
    # --force replaces the link itself, never what it points to.
    with private_output(str(link), force=True) as f:
        f.write(b"export")
    assert not link.is_symlink() and link.read_bytes() == b"export" and mode(link) == 0o600
    assert victim.read_bytes() == b"precious"


def test_a_race_between_check_and_publish_still_never_replaces(tmp_path):
    target = tmp_path / "out.csv"
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    with pytest.raises(OutputExists), private_output(str(target)) as f:
        f.write(b"x")
        target.symlink_to(victim)  # planted after the check, before the link
    assert victim.read_bytes() == b"precious" and target.is_symlink()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "victim"]


def test_a_failure_leaves_nothing(tmp_path):
    target = tmp_path / "out.csv"
    with pytest.raises(RuntimeError), private_output_path(str(target)) as temporary:
        assert mode(temporary) == 0o600
        raise RuntimeError("export failed")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(OutputError, match="directory"), private_output(str(tmp_path)):
        pass
    with pytest.raises(OutputError, match="does not exist"), private_output(str(tmp_path / "no" / "x")):
        pass


# --- the commands -----------------------------------------------------------------------------


@pytest.fixture
def stored(client, config):
    meeting_webhooks(Scenario(client, config, meeting_id=MEETING, uuid=MEETING_UUID))
    return config.database_path


def test_export_raw_refuses_an_existing_file_and_a_symlink(stored, tmp_path):
    existing = tmp_path / "export.jsonl"
    existing.write_text("keep me")
    os.chmod(existing, 0o644)
    one_line_error(worker("export-raw", "-o", str(existing), database=stored), 1, "already exists", "--force")
    assert existing.read_text() == "keep me"
    victim = tmp_path / "victim"
    victim.write_text("precious")
    link = tmp_path / "link.jsonl"
    link.symlink_to(victim)
    one_line_error(worker("export-raw", "-o", str(link), database=stored), 1, "symlink")
    assert victim.read_text() == "precious"
    forced = worker("export-raw", "-o", str(existing), "--force", database=stored)
    assert forced.returncode == 0, forced.stderr
    assert mode(existing) == 0o600 and b'"source"' in existing.read_bytes()


def test_evidence_refuses_a_dangling_symlink_without_a_traceback(stored, tmp_path):
    for name in ("bundle.zip", "bundle-dir"):
        link = tmp_path / name
        link.symlink_to(tmp_path / f"nowhere-{name}")
        one_line_error(worker("evidence", MEETING, "-o", str(link), database=stored), 1, name)
        assert not (tmp_path / f"nowhere-{name}").exists()
    existing = tmp_path / "old.zip"
    existing.write_bytes(b"old")
    one_line_error(worker("evidence", MEETING, "-o", str(existing), database=stored), 1, "--force")
    assert existing.read_bytes() == b"old"
    forced = worker("evidence", MEETING, "-o", str(existing), "--force", database=stored)
    assert forced.returncode == 0, forced.stderr
    assert mode(existing) == 0o600 and existing.read_bytes().startswith(b"PK")


def test_backup_refuses_to_replace_unless_forced(stored, tmp_path):
    existing = tmp_path / "copy.db"
    existing.write_bytes(b"yesterday's backup")
    one_line_error(worker("backup", str(existing), database=stored), 1, "already exists", "--force")
    assert existing.read_bytes() == b"yesterday's backup"
    forced = worker("backup", str(existing), "--force", database=stored)
    assert forced.returncode == 0, forced.stderr
    assert mode(existing) == 0o600 and existing.read_bytes().startswith(b"SQLite format 3\x00")
    one_line_error(worker("backup", stored, "--force", database=stored), 1, "live database")
