"""One writer per output folder: an exclusive lock that names its holder.

    with output_folder("runs/dd1", command="ardistill train ..."):
        ...  # the only process writing runs/dd1

The lock is `fcntl.flock` on `FOLDER/.ardistill.lock`, held for the life of the block and
removed at its end. The kernel releases a flock when its holder exits, however it exits (kill -9
included), so a lock is never stale: a lock file left behind by a dead process is taken over,
with a message. (After taking the flock the holder checks that the file is still the one in
the folder: a lock file removed by its previous holder meanwhile is not a lock.) While held,
the file records the holder (pid, host, command, start time); a second writer gets a
`FolderLocked` error naming it. The ranks of one torchrun job share the lock: rank 0 takes it
(the commands do that in their rank-0 setup).

`check_output_path` turns the ways an output path can be unusable (a regular file in its
place or above it, no permission) into one clear error before anything is computed.
"""

from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from pathlib import Path

from ardistill.errors import UserError

LOCK_NAME = ".ardistill.lock"


class FolderLocked(UserError):
    """Another process is writing the folder."""


def check_output_path(path: str | Path, *, what: str = "output folder", is_file: bool = False
                      ) -> Path:
    """`path` as a usable output (a folder, or with is_file a file to create or replace):
    UserError naming the problem when a regular file is in the way or a parent is not a
    folder. Creates nothing."""
    path = Path(path)
    if is_file and path.is_dir():
        raise UserError(f"{what} {path} is a folder, expected a file name")
    if not is_file and path.exists() and not path.is_dir():
        raise UserError(f"{what} {path} exists and is not a folder")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"{what} {path}: {parent} is a file, not a folder")
            if not os.access(parent, os.W_OK | os.X_OK) and not (path.exists()
                                                                 and parent != path.parent):
                raise UserError(f"{what} {path}: no permission to write in {parent}")
            break
    return path


def make_output_folder(path: str | Path, what: str = "output folder") -> Path:
    """check_output_path, then create the folder (and its parents)."""
    path = check_output_path(path, what=what)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"{what} {path}: cannot create it ({e.strerror})") from e
    return path


def _holder_text(path: Path) -> tuple[str, dict]:
    try:
        rec = json.loads(path.read_text() or "{}")
    except (OSError, ValueError):
        rec = {}
    if not rec:
        return "another process", {}
    return (f"pid {rec.get('pid')} on {rec.get('host')} since {rec.get('started')} "
            f"({rec.get('command')})"), rec


def _alive(rec: dict) -> bool:
    if rec.get("host") != socket.gethostname():
        return True  # cannot tell: assume so
    try:
        os.kill(int(rec.get("pid", -1)), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, ValueError, TypeError):
        return True
    return True


@contextlib.contextmanager
def output_folder(path: str | Path, command: str | None = None, *, enabled: bool = True,
                  what: str = "output folder") -> Iterator[Path]:
    """Create `path` if needed and hold its exclusive lock for the block (enabled=False: only
    create it; the other ranks of a torchrun job). FolderLocked when another process holds it.
    A folder this call created is removed again when the block fails before writing anything
    into it (a bad flag or input leaves no empty run folder behind)."""
    created = not Path(path).exists()
    folder = make_output_folder(path, what)
    try:
        yield from _locked(folder, command, enabled)
    except BaseException:
        if created:
            with contextlib.suppress(OSError):  # not empty (or gone): keep whatever is there
                folder.rmdir()
        raise


def _locked(folder: Path, command: str | None, enabled: bool) -> Iterator[Path]:
    if not enabled:
        yield folder
        return
    lock_path = folder / LOCK_NAME
    fd = _acquire(lock_path, folder)
    try:
        holder, rec = _holder_text(lock_path)
        if rec and rec.get("pid") != os.getpid() and not _alive(rec):
            print(f"ardistill: taking over {folder}: its lock was left by {holder}, which is "
                  "no longer running", file=sys.stderr)
        record = {"pid": os.getpid(), "host": socket.gethostname(),
                  "command": command or " ".join(["ardistill", *sys.argv[1:]]),
                  "started": datetime.datetime.now().isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)
        try:
            yield folder
        finally:
            lock_path.unlink(missing_ok=True)  # released cleanly: no lock file remains
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _acquire(lock_path: Path, folder: Path) -> int:
    """An fd of `lock_path` holding its flock, the file still in place (see the docstring)."""
    for _ in range(100):
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            os.close(fd)
            if e.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            holder, _ = _holder_text(lock_path)
            raise FolderLocked(f"{folder} is in use by {holder}; wait for it to finish, or "
                               "use another output folder") from None
        try:
            same = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its holder removed it while we waited: try the new one
    raise FolderLocked(f"{folder}: could not take its lock (it keeps changing hands)")
