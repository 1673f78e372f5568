"""Image folders: listing (labeled by class subfolder, or unlabeled), and a validation pre-pass.

`tf.data`'s `ignore_errors` drops unreadable images without naming them. So before training,
every file is decoded once in a parallel `tf.data` pass whose survivors are collected; the files
that did not survive are the unreadable ones, reported by path. The result is cached per folder
under the user cache dir, keyed by every file's path, size and modification time, so an
unchanged folder is validated once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import tensorflow as tf

from pipelines.errors import DataError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif")


def cache_dir() -> Path:
    """`$TFUDA_CACHE_DIR`, else `$XDG_CACHE_HOME/tfuda`, else `~/.cache/tfuda`."""
    if os.environ.get("TFUDA_CACHE_DIR"):
        return Path(os.environ["TFUDA_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "tfuda"


@dataclasses.dataclass(frozen=True)
class FolderListing:
    """Readable image files of a folder.

    Attributes:
      paths: file paths, sorted by class then path.
      labels: class index per path, or -1 for an unlabeled folder.
      class_names: sorted class subfolder names, or None for an unlabeled folder.
      skipped: unreadable files left out (empty under `strict`, which raises instead).
    """

    paths: tuple[str, ...]
    labels: tuple[int, ...]
    class_names: tuple[str, ...] | None
    skipped: tuple[str, ...]


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if _is_image(p))


def decode_file(path: tf.Tensor) -> tf.Tensor:
    """Reads and decodes one PNG/JPEG/BMP/GIF file to uint8 `[H, W, C]` (first GIF frame)."""
    return tf.io.decode_image(
        tf.io.read_file(path), channels=0, dtype=tf.uint8, expand_animations=False
    )


def _decodes(path: str) -> tf.Tensor:
    image = decode_file(path)
    # An image must have pixels and 1..4 channels to be usable.
    tf.debugging.assert_positive(tf.size(image))
    tf.debugging.assert_less_equal(tf.shape(image)[-1], 4)
    return path


def find_unreadable(paths: list[str]) -> list[str]:
    """Returns the paths that do not decode to a usable image, checked in parallel in `tf.data`."""
    if not paths:
        return []
    key = hashlib.sha256()
    for path in paths:
        stat = os.stat(path)
        key.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    cache_file = cache_dir() / "validated" / f"{key.hexdigest()}.json"
    try:
        return json.loads(cache_file.read_text())["unreadable"]
    except (OSError, ValueError, KeyError):
        pass
    good = (
        tf.data.Dataset.from_tensor_slices(paths)
        .map(_decodes, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
    )
    readable = {p.decode() for p in good.as_numpy_iterator()}
    unreadable = [p for p in paths if p not in readable]
    try:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(json.dumps({"unreadable": unreadable}))
        tmp.replace(cache_file)
    except OSError:
        pass  # A read-only cache only costs a re-validation next time.
    return unreadable


def list_folder(folder: str, *, strict: bool = False) -> FolderListing:
    """Lists a folder of images: class subfolders make it labeled, loose images unlabeled.

    Args:
      folder: directory path.
      strict: raise on unreadable files instead of skipping them.

    Raises:
      DataError: missing or empty folder, an empty class folder, or (strict) unreadable files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"data folder '{folder}' does not exist or is not a directory")
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if subdirs:
        class_names = tuple(p.name for p in subdirs)
        paths, labels = [], []
        for index, sub in enumerate(subdirs):
            files = _images_below(sub)
            if not files:
                raise DataError(
                    f"class folder '{sub}' has no {'/'.join(IMAGE_EXTENSIONS)} images: "
                    "add images or remove the folder"
                )
            paths += [str(p) for p in files]
            labels += [index] * len(files)
    else:
        class_names = None
        paths = [str(p) for p in sorted(p for p in root.iterdir() if _is_image(p))]
        labels = [-1] * len(paths)
    if not paths:
        raise DataError(
            f"data folder '{folder}' has no images ({', '.join(IMAGE_EXTENSIONS)}): put images in "
            "it, or one subfolder of images per class"
        )
    unreadable = set(find_unreadable(paths))
    if unreadable and strict:
        shown = "\n  ".join(sorted(unreadable)[:20])
        raise DataError(
            f"{len(unreadable)} unreadable image file(s) in '{folder}' (--strict):\n  {shown}\n"
            "fix or delete them, or drop --strict to skip them"
        )
    kept = [(p, y) for p, y in zip(paths, labels) if p not in unreadable]
    if not kept:
        raise DataError(f"no readable images in '{folder}' ({len(unreadable)} unreadable files)")
    if class_names is not None:
        for index, name in enumerate(class_names):
            if not any(y == index for _, y in kept):
                raise DataError(f"class folder '{root / name}' has no readable images")
    return FolderListing(
        paths=tuple(p for p, _ in kept),
        labels=tuple(y for _, y in kept),
        class_names=class_names,
        skipped=tuple(sorted(unreadable)),
    )
