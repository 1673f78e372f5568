"""Files a reader never sees half of: written to a temporary sibling, flushed, renamed into place.

Every file tfuda writes for another process (run metadata, export metadata, caches) goes through
`write_bytes_atomic` or `replace_with`: the new file gets the mode an ordinary `open()` would
give it (0666 minus the umask, so a serving process under another user can read it, as it reads
the model files beside it), its data and the rename are fsync'ed, and a failure leaves the old
file (or none) in place and no temporary behind.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable


def umask_mode(directory: bool = False) -> int:
    """The mode `open()` (0o666) or `mkdir()` (0o777) gives a new file or folder under the umask."""
    mask = os.umask(0)
    os.umask(mask)
    return (0o777 if directory else 0o666) & ~mask


def fsync_dir(path: Path) -> None:
    """Flushes a directory's entries (a rename into it) to disk; a no-op where unsupported."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def fsync_file(path: Path) -> None:
    """Flushes a written file's data to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def replace_with(path: Path, write: Callable[[Path], None]) -> None:
    """Calls `write(tmp)` on a temporary sibling path of `path`, then renames it into place.

    The temporary file starts empty with the umask's mode; `write` may overwrite or replace it
    (a library that saves to a path). Its data, then the directory, are fsync'ed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=path.suffix)
    tmp = Path(name)
    try:
        os.fchmod(fd, umask_mode())
        os.close(fd)
        write(tmp)
        fsync_file(tmp)
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Writes `data` to `path` atomically (see the module docstring)."""
    replace_with(path, lambda tmp: tmp.write_bytes(data))


def write_text_atomic(path: Path, text: str) -> None:
    """Writes UTF-8 `text` to `path` atomically."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_json_atomic(path: Path, value: Any) -> None:
    """Writes JSON (indented, one trailing newline) atomically."""
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def copy_atomic(source: Path, path: Path) -> None:
    """Copies the file `source` to `path` atomically."""
    replace_with(path, lambda tmp: shutil.copyfile(source, tmp))
