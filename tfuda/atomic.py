"""Writing files so that a reader never sees half of one: a temporary sibling, then a rename."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pipelines.errors import UserError

if TYPE_CHECKING:
    import keras


def write_text_atomic(path: Path, text: str) -> None:
    """Writes `text` to a temporary sibling, then renames it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_json_atomic(path: Path, value: Any) -> None:
    """Writes JSON (indented, one trailing newline) atomically."""
    write_text_atomic(path, json.dumps(value, indent=2) + "\n")


def save_model_atomic(model: "keras.Model", path: Path) -> None:
    """Saves a `.keras` file next to `path` under a temporary name, then renames it into place."""
    tmp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        model.save(tmp)
        os.replace(tmp, path)
    except OSError as err:
        raise UserError(f"cannot write {path}: {err}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
