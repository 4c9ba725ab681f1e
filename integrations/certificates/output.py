"""Writing certificate PDFs to a directory or one zip: owner-only files, never through a symlink.

Rendering runs in worker processes when there are many (one Renderer built before the fork,
so the font is subset once); files are written by the workers, a zip by the parent.
"""

from __future__ import annotations

import multiprocessing
import os
import zipfile
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from integrations.certificates.render import Renderer, page_of, renderer_for
from integrations.certificates.template import Template

PARALLEL_FROM = 200  # below this, starting processes costs more than it saves


class OutputError(Exception):
    "The output directory or file cannot be written safely"


def pdf_name(row: dict[str, Any]) -> str:
    """The file name of a certificate's PDF."""
    return f"certificate-{row['number']}.pdf"


def open_private(directory_fd: int, name: str) -> int:
    """Open `name` in the directory for writing, mode 0600, refusing a symlink in its place."""
    try:
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600, dir_fd=directory_fd)
    except OSError as e:
        raise OutputError(f"cannot write {name}: {e.strerror} (a symlink there is refused)") from None
    os.fchmod(fd, 0o600)  # an existing file keeps its mode otherwise
    return fd


def make_directory(path: str) -> None:
    """Create the output directory (0700) and its parents if missing; OutputError naming why not."""
    try:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    except OSError as e:
        raise OutputError(f"cannot create the output directory {path}: {e.strerror}") from None


def prepare_directory(path: str) -> None:
    """Create and check the output directory up front, so a bad path fails before any rendering."""
    os.close(open_directory(path))


def open_directory(path: str) -> int:
    """The output directory (created 0700 if missing) opened without following a symlink."""
    make_directory(path)
    try:
        return os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError as e:
        hint = " (a symlink: refused)" if os.path.islink(path) else ""
        raise OutputError(f"cannot use {path} as the output directory: {e.strerror}{hint}") from None


_job: dict[str, Any] = {}


def _render_one(row: dict[str, Any]) -> bytes:
    return _job["renderer"].render(page_of(row, _job["template"], _job["base_url"]))


def _write_one(row: dict[str, Any]) -> str:
    data = _render_one(row)
    fd = open_private(_job["dir_fd"], pdf_name(row))
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    return pdf_name(row)


def _mapped(function: Callable, rows: list[dict[str, Any]], workers: int, *, ordered: bool = False) -> Iterator[Any]:
    if workers <= 1 or len(rows) < PARALLEL_FROM:
        yield from map(function, rows)
        return
    # fork: the workers inherit the Renderer (font already subset) and the open directory.
    context = multiprocessing.get_context("fork")
    with context.Pool(workers) as pool:
        mapper = pool.imap if ordered else pool.imap_unordered
        yield from mapper(function, rows, chunksize=32)


def render_certificates(
    rows: Iterable[dict[str, Any]],
    template: Template,
    base_url: str,
    out_dir: str,
    *,
    as_zip: str | None = None,
    workers: int = 1,
    renderer: Renderer | None = None,
) -> Iterator[str]:
    """Render each row to out_dir (or into the zip named `as_zip` in it); yields names as done."""
    rows = list(rows)
    _job.update(
        renderer=renderer or renderer_for(rows, template),
        template=template,
        base_url=base_url,
        dir_fd=open_directory(out_dir),
    )
    try:
        if as_zip is None:
            yield from _mapped(_write_one, rows, workers)
            return
        fd = open_private(_job["dir_fd"], as_zip)
        # Stored, not deflated: the PDFs inside are compressed already.
        with os.fdopen(fd, "wb") as f, zipfile.ZipFile(f, "w", zipfile.ZIP_STORED) as archive:
            for row, data in zip(rows, _mapped(_render_one, rows, workers, ordered=True), strict=True):
                info = zipfile.ZipInfo(pdf_name(row), date_time=(1980, 1, 1, 0, 0, 0))
                info.external_attr = 0o600 << 16
                archive.writestr(info, data)
                yield pdf_name(row)
    finally:
        os.close(_job.pop("dir_fd"))
        _job.clear()
