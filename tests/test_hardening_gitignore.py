""".gitignore (issue 14): everything the service writes beside its database is ignored."""

from __future__ import annotations

import os
import shutil
import subprocess

from integrations.jobs.leadership import Leadership
from integrations.ops.multiprocess import remove_dead_files
from tests.audit_support import ROOT
from tests.conftest import post_event
from tests.fault_support import import_spooled

JOINED = {
    "event": "meeting.participant_joined",
    "event_ts": 1714557600000,
    "payload": {"account_id": "A", "object": {"id": "81200000001", "uuid": "u==", "participant": {"user_id": "1"}}},
}


def test_the_files_beside_the_database_are_ignored(tmp_path, client, config, db, runner_env):
    assert shutil.which("git"), "git is needed to ask what it ignores"
    post_event(client, JOINED)
    import_spooled(tmp_path / "attendance.db")
    runner_env(["meetings", "--format", "json"])  # takes the derived lock
    leadership = Leadership(db)  # the worker's leader lock file
    assert leadership.check()
    leadership.lock.release()
    remove_dead_files(config.metrics_dir)  # the web processes' and the worker's Prometheus counters
    written = sorted(os.listdir(tmp_path))
    assert "attendance.db-spool" in written and any(name.endswith("-lock") for name in written), written
    assert {"attendance.db-scheduled-jobs", "attendance.db-metrics"} <= set(written), written
    # Ask git about the same names as they would lie in the repository's root.
    names = [name + ("/" if (tmp_path / name).is_dir() else "") for name in written] + [".export-abc.part"]
    result = subprocess.run(
        ["git", "check-ignore", "--no-index", "--verbose", "--non-matching", *names],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    not_ignored = [line.split("\t")[1] for line in result.stdout.splitlines() if line.startswith("::")]
    assert not_ignored == [], not_ignored
