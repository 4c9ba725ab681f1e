"""Output files holding personal data (exports, evidence, backups, certificates, CSVs).

Every such file is written owner-only (0600) to a temporary file beside its target, then
put in place in one step: hard-linked when it must be new (fails on anything already
there, a dangling symlink included), renamed over the target with `force`. Neither step
follows a symlink, and a reader never sees half a file.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from typing import BinaryIO


class OutputError(Exception):
    "The output file cannot be written where asked"


class OutputExists(OutputError):
    "Something already exists at the output path and `force` was not given"


def _fsync_directory(directory: str) -> None:
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def check_output_path(path: str, *, force: bool = False) -> str:
    """The absolute target, or OutputError before any work is done (exists without force, a directory, no parent)."""
    target = os.path.abspath(path)
    if os.path.isdir(target) and not os.path.islink(target):
        raise OutputError(f"{path} is a directory: name a file")
    if os.path.lexists(target) and not force:
        kind = "a symlink" if os.path.islink(target) else "a file"
        raise OutputExists(f"{path} already exists ({kind}): choose a new name, or use --force to replace it")
    check_parent_directory(path)
    return target


def check_parent_directory(path: str) -> None:
    """OutputError when the directory that would hold `path` does not exist (it is never created for the user)."""
    if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
        raise OutputError(f"directory {os.path.dirname(os.path.normpath(path)) or '.'} does not exist")


def publish(temporary: str, path: str, *, force: bool = False) -> None:
    """Put the finished `temporary` (beside `path`) in place: linked as new, or renamed over it with `force`."""
    target = os.path.abspath(path)
    try:
        if force:
            if os.path.isdir(target) and not os.path.islink(target):
                raise OutputError(f"{path} is a directory: name a file")
            # rename replaces a symlink itself, never the file it points to.
            os.replace(temporary, target)
        else:
            # link(2) never follows or replaces what is at `target`: EEXIST for a file,
            # a directory, or a symlink, dangling or not.
            os.link(temporary, target)
            os.unlink(temporary)
    except FileExistsError:
        raise OutputExists(f"{path} already exists: choose a new name, or use --force to replace it") from None
    except OSError as e:
        if e.errno in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP) and not force:
            raise OutputError(f"cannot create {path}: the filesystem refuses hard links ({e.strerror})") from None
        raise OutputError(f"cannot write {path}: {e.strerror}") from None
    _fsync_directory(os.path.dirname(target))


@contextlib.contextmanager
def private_output_path(path: str, *, force: bool = False, prefix: str = ".tmp-") -> Iterator[str]:
    """A temporary owner-only file beside `path` to write to; published to `path` when the block succeeds.

    Raises OutputExists when `path` exists and `force` is false, OutputError when it cannot
    be written. The temporary file is removed whatever happens.
    """
    target = check_output_path(path, force=force)
    try:
        # mkstemp: O_CREAT | O_EXCL, mode 0600, a fresh random name (never an attacker's link).
        fd, temporary = tempfile.mkstemp(prefix=prefix, suffix=".part", dir=os.path.dirname(target))
    except OSError as e:
        raise OutputError(f"cannot write in {os.path.dirname(path) or '.'}: {e.strerror}") from None
    os.close(fd)
    try:
        yield temporary
        os.chmod(temporary, 0o600)  # whatever wrote it (sqlite3 may recreate it)
        fd = os.open(temporary, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        publish(temporary, path, force=force)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)


@contextlib.contextmanager
def private_output(path: str, *, force: bool = False, prefix: str = ".tmp-") -> Iterator[BinaryIO]:
    """An open binary file to write `path` through (see `private_output_path`)."""
    with private_output_path(path, force=force, prefix=prefix) as temporary:
        fd = os.open(temporary, os.O_WRONLY | os.O_TRUNC | os.O_NOFOLLOW)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
