"""The evidence bundle of one meeting instance: what an auditor receives, checks and opens.

Attendance, the raw join log, report pages, registrants, a README and a MANIFEST of
SHA-256s with the chain head, read in one snapshot taken after attendance is computed."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

from integrations.audit.export import csv_chunks, jsonl_chunks, raw_log_lines
from integrations.files import OutputError, check_parent_directory, private_output
from integrations.reads.attendance import attendee_fields, current_instance, now_seconds
from integrations.reads.formats import csv_lines
from integrations.zoom.rawlog import COLUMN_DOCS, RAW_LOG_COLUMNS, body_text, stored_bytes
from store import attendance_queries as queries
from store.audit import ChainHead, chain_head
from store.db import Store, read_snapshot
from store.evidence import utc_now
from store.rawlog import REGISTRANT_COLUMNS, evidence_pages, registrants

VERSION = "0.1.0"


class BundleError(Exception):
    "The evidence bundle cannot be written there"


ATTENDANCE_DOCS = {
    "person_key": "the person's key within this instance, built from the identifier that grouped their connections",
    "identity": "what grouped the person's connections: `registrant` (registration id), `email`, `user` (Zoom account) "
    "or `name` (display name only: a weak identity, never merged with the strong ones)",
    "name": "display name",
    "email": "email address, when Zoom gave one",
    "registrant_id": "registration id, when the person registered",
    "attended_seconds": "whole seconds in the meeting: the union of all the person's connections (a second device counts "
    "once), clipped to the instance's start and end, waiting room excluded",
    "segments": "number of connections (join to leave) merged into this person",
    "first_join": "first join, UTC ISO 8601",
    "last_leave": "last leave, UTC ISO 8601 (empty while still connected)",
    "in_meeting": "true when the person was still connected at export time (live meeting)",
    "sources": "where the connections came from: `webhook`, `report` (separated by `;`)",
    "webhook_only": "true when the person appears only in webhooks although Zoom's report is complete",
    "eligible": "whether the person meets the threshold the bundle was made with (summary.json: meeting.threshold)",
}
REGISTRANT_DOCS = {
    "meeting_id": "meeting or webinar number",
    "registrant_id": "Zoom's registration id (matches registrant_id in the other files)",
    "email": "email given at registration",
    "first_name": "first name given at registration",
    "last_name": "last name given at registration",
    "name": "full name",
    "status": "registration status (approved, pending, denied)",
    "create_time": "when the person registered, UTC",
    "raw_id": "record_id of the stored registrants page this row was last read from (report_pages.jsonl)",
    "fetched_at": "when we fetched that page, UTC",
}
PAGE_COLUMNS = ("record_id", "received_at", "url", "sha256", "chain_hash", "raw", "raw_encoding")


@dataclass
class Bundle:
    """What was written: where, for which instance, the chain head, and each file's hash."""

    path: str
    meeting_id: str | None
    instance_uuid: str
    head: ChainHead
    exported_at: str
    files: dict[str, str] = field(default_factory=dict)  # name -> sha256
    manifest_sha256: str = ""


class _Hashing:
    """A write-only file that hashes what goes through it."""

    def __init__(self, raw: BinaryIO):
        self.raw = raw
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self.sha256.update(data)
        self.raw.write(data)


class _Directory:
    def __init__(self, path: str):
        if os.path.islink(path):
            raise BundleError(f"{path} is a symlink: name a new directory")
        if os.path.exists(path) and (not os.path.isdir(path) or os.listdir(path)):
            raise BundleError(
                f"{path} exists and is not an empty directory: choose a new one (--force replaces files only)"
            )
        try:
            # Like every output file: the directory is made here, its parent must exist already.
            check_parent_directory(path)
        except OutputError as e:
            raise BundleError(str(e)) from None
        try:
            if not os.path.isdir(path):
                os.mkdir(path, 0o700)
        except OSError as e:
            raise BundleError(f"cannot create directory {path}: {e.strerror}") from None
        self.path = path

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
        fd = os.open(os.path.join(self.path, name), flags, 0o600)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())

    def finish(self) -> None:
        fd = os.open(self.path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def abandon(self) -> None:
        """Leave the partial bundle in place; its MANIFEST is missing, so it cannot pass for complete."""


class _Zip:
    """A .zip written through integrations/files.py: owner-only, new unless `force`, complete or absent."""

    def __init__(self, path: str, *, force: bool):
        self.path = path
        self.output = private_output(path, force=force, prefix=".evidence-")
        try:
            self.file = self.output.__enter__()
        except OutputError as e:
            raise BundleError(str(e)) from None
        self.zip = zipfile.ZipFile(self.file, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=6)

    @contextlib.contextmanager
    def open(self, name: str) -> Iterator[BinaryIO]:
        with self.zip.open(name, "w", force_zip64=True) as f:
            yield f  # type: ignore[misc]

    def finish(self) -> None:
        self.zip.close()
        try:
            self.output.__exit__(None, None, None)
        except OutputError as e:
            raise BundleError(str(e)) from None

    def abandon(self) -> None:
        self.zip.close()
        error = BundleError("abandoned")
        with contextlib.suppress(BundleError):
            self.output.__exit__(BundleError, error, None)


def _write(out, name: str, chunks: Iterable[bytes], files: dict[str, str]) -> None:
    with out.open(name) as f:
        hashing = _Hashing(f)
        for chunk in chunks:
            hashing.write(chunk)
    files[name] = hashing.sha256.hexdigest()


def _encoded(texts: Iterable[str]) -> Iterator[bytes]:
    return (text.encode("utf-8") for text in texts)


def _page_lines(conn, instance_uuid: str, meeting_id: str | None) -> Iterator[bytes]:
    for record_id, received_at, url, body, sha256, chain_hash in evidence_pages(
        conn, instance_uuid=instance_uuid, meeting_id=meeting_id
    ):
        raw, encoding = body_text(stored_bytes(body))
        values = (record_id, received_at, url, sha256, chain_hash, raw, encoding)
        yield json.dumps(dict(zip(PAGE_COLUMNS, values, strict=True)), ensure_ascii=True).encode() + b"\n"


def build_bundle(
    db: Store,
    meeting: str,
    output: str,
    *,
    instance: str | None = None,
    threshold: queries.Threshold | None = None,
    force: bool = False,
) -> Bundle:
    """Write the evidence bundle of MEETING (a number: its latest instance; or an instance UUID) to a directory or `.zip`.

    Raises queries.UnknownMeeting, queries.BadQuery or BundleError.
    """
    threshold = threshold or queries.Threshold()
    uuid = current_instance(db, meeting, instance)
    now = now_seconds()
    people = queries.attendance(db, uuid, now=now, threshold=threshold, include_absent=True)
    summary = queries.summary(db, uuid, now=now, threshold=threshold)
    meeting_id = people["meeting"]["meeting_id"]
    out = _Zip(output, force=force) if output.lower().endswith(".zip") else _Directory(output)
    files: dict[str, str] = {}
    try:
        fields = attendee_fields(people)
        _write(out, "attendance.csv", _encoded(csv_lines(people["attendees"], fields)), files)
        _write(out, "summary.json", [json.dumps(summary, indent=2, ensure_ascii=False).encode() + b"\n"], files)
        with read_snapshot(db) as conn:
            head = chain_head(conn)
            exported_at = utc_now()
            _write(out, "raw_join_log.jsonl", jsonl_chunks(raw_log_lines(conn, meeting=uuid)), files)
            _write(out, "raw_join_log.csv", csv_chunks(raw_log_lines(conn, meeting=uuid)), files)
            _write(out, "report_pages.jsonl", _page_lines(conn, uuid, meeting_id), files)
            rows = registrants(conn, meeting_id) if meeting_id else iter(())
            _write(out, "registrants.csv", _encoded(csv_lines(rows, REGISTRANT_COLUMNS)), files)
        bundle = Bundle(output, meeting_id, uuid, head, exported_at, files)
        _write(out, "README.txt", [readme(bundle, people, fields).encode()], files)
        manifest_text = manifest(bundle).encode()
        _write(out, "MANIFEST", [manifest_text], {})
        bundle.manifest_sha256 = hashlib.sha256(manifest_text).hexdigest()
        out.finish()
    except BaseException:
        out.abandon()
        raise
    return bundle


def verify_command(head: ChainHead, database: str | None = None) -> str:
    """The command that proves the log intact up to `head`."""
    where = f" --database {shlex.quote(database)}" if database else ""
    return f"python worker.py verify{where} --head {head.chain_hash}"


def manifest(bundle: Bundle) -> str:
    """MANIFEST: comment lines, then `sha256  name` lines that `sha256sum -c MANIFEST` checks."""
    head = bundle.head
    lines = [
        f"# Evidence bundle: meeting {bundle.meeting_id or '-'}, instance {bundle.instance_uuid}",
        f"# Exported {bundle.exported_at} by attendance-worker {VERSION}",
        f"# Hash chain head at export: record {head.record_id}, {head.count} records in the log, chain hash {head.chain_hash}",
        "# Check these files:        sha256sum -c MANIFEST",
        f"# Check the log is intact:  {verify_command(head)}",
        "#   (run it on the service's database or a backup of it, adding --database FILE for a backup: it fails",
        "#    if any record up to this head was edited, inserted, deleted or reordered since the export)",
    ]
    lines += [f"{digest}  {name}" for name, digest in bundle.files.items()]
    return "\n".join(lines) + "\n"


def _columns(docs: dict[str, str], names: Iterable[str]) -> list[str]:
    return [f"  {name}: {docs.get(name, 'see the attendance documentation')}" for name in names]


def readme(bundle: Bundle, people: dict[str, Any], attendance_fields: Iterable[str]) -> str:
    """README.txt for the auditor: every file and every column, and how to check them."""
    info = people["meeting"]
    head = bundle.head
    text = [
        f'Attendance evidence for {info.get("kind") or "meeting"} {bundle.meeting_id or ""} "{info.get("topic") or ""}"',
        f"Instance {bundle.instance_uuid}, {info.get('start_time') or '?'} to {info.get('end_time') or '(not ended)'} (UTC).",
        f"Exported {bundle.exported_at}. Attendance as of {info.get('as_of')}; threshold: {json.dumps(info.get('threshold'))}.",
        "",
        "HOW TO CHECK THIS BUNDLE",
        "1. Every file is listed in MANIFEST with its SHA-256: run `sha256sum -c MANIFEST` in this folder",
        "   (or `shasum -a 256 -c MANIFEST` on macOS). Keep MANIFEST's own SHA-256, sent to you separately, to",
        "   know that MANIFEST itself is the one we wrote.",
        "2. Every raw record we keep (each webhook delivery from Zoom, each page fetched from Zoom's API) is in",
        "   one hash chain: chain_hash = SHA-256 of `previous chain_hash:sha256:received_at`, starting from 64 zeros.",
        f"   At export the chain had {head.count} records and its head was {head.chain_hash}",
        f"   (record {head.record_id}). On the service's database, or a backup of it, run:",
        f"       {verify_command(head)}",
        "   It prints OK when every record's body matches its sha256 and every link matches, and this head is",
        "   still in the chain; otherwise it fails naming the first record that does not match.",
        "3. For each webhook line of raw_join_log.jsonl, the SHA-256 of `raw` (UTF-8; base64-decoded when",
        "   raw_encoding is base64) equals its `sha256`. For each page of report_pages.jsonl likewise; each",
        "   report line of the join log is one row of a page, its `raw` found verbatim inside that page.",
        "",
        "All times are UTC (ISO 8601). CSV files are UTF-8 with a header row; a cell that would start with",
        "= + - @ or a tab is prefixed with ' so that spreadsheets show it as text instead of running it.",
        "",
        "FILES",
        "attendance.csv      one row per person (registrants who never joined included, with 0 seconds)",
        "summary.json        headline numbers (registered, unique_attendees, eligible, peak_concurrent, median and",
        "                    total attended seconds, webhook events, report rows) and `reconciliation`: people seen",
        "                    only in webhooks, only in Zoom's report, or whose durations differ by over a minute",
        "raw_join_log.jsonl  the raw join log of this instance: one line per webhook delivery and per report row,",
        "                    with `raw`, the original JSON text exactly as received",
        "raw_join_log.csv    the same lines and columns without `raw`, for spreadsheets",
        "report_pages.jsonl  every stored page of Zoom's participant report for this instance, and the registrant",
        "                    pages, whole: record_id, received_at, url, sha256, chain_hash, raw, raw_encoding",
        "registrants.csv     who registered (webinars with registration)",
        "README.txt          this file",
        "MANIFEST            SHA-256 of every file above, the chain head and the verify command",
        "",
        "COLUMNS OF attendance.csv",
        *_columns(ATTENDANCE_DOCS, attendance_fields),
        "",
        "COLUMNS OF raw_join_log.jsonl AND raw_join_log.csv (the CSV has all but raw and raw_encoding)",
        *_columns(COLUMN_DOCS, (*RAW_LOG_COLUMNS, "raw", "raw_encoding")),
        "",
        "COLUMNS OF registrants.csv",
        *_columns(REGISTRANT_DOCS, REGISTRANT_COLUMNS),
        "",
    ]
    return "\n".join(text)
