"""Image folders: listing (labeled by class subfolder, or unlabeled), and a validation pre-pass.

`tf.data`'s `ignore_errors` drops unreadable images without naming them. So before training,
every file's header is read for its size (an image over `--max-image-pixels` is refused before
anything decodes it), and every file is decoded once in a parallel `tf.data` pass whose
survivors are collected; the files that did not survive are the unreadable ones, reported by
path. The result is cached per folder under the user cache dir, keyed by every file's path,
size and modification time, so an unchanged folder is validated once.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import sys
from pathlib import Path

import tensorflow as tf

from pipelines.atomic import write_json_atomic
from pipelines.errors import DataError
from pipelines.limits import MAX_IMAGE_PIXELS

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


def images_below(folder: Path, recursive: bool = True) -> list[Path]:
    """The image files in `folder` (and its subfolders), sorted by path; hidden files left out."""
    return sorted(p for p in (folder.rglob("*") if recursive else folder.iterdir()) if _is_image(p))


def image_files(inputs: list[str]) -> list[str]:
    """Expands image files and folders (searched recursively) into image paths, in the given order.

    Raises:
      DataError: an input that is neither a file nor a folder, or a folder without images.
    """
    paths: list[str] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = images_below(path)
            if not found:
                raise DataError(f"folder '{item}' has no {'/'.join(IMAGE_EXTENSIONS)} images")
            paths += [str(p) for p in found]
        elif path.is_file():
            paths.append(str(path))
        else:
            raise DataError(f"'{item}' is neither an image file nor a folder")
    return paths


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


LARGEST_KEPT = 20
"""How many of a folder's largest images (by pixels) the validation cache remembers."""


def header_pixels(path: str) -> int | None:
    """Width x height from the file's header, without decoding it (None if the header is unreadable)."""
    from PIL import Image

    bomb_check, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None  # the cap here is ours
    try:
        with Image.open(path) as image:
            width, height = image.size
    except Exception:  # PIL raises many types; the decode pass reports the file as unreadable
        return None
    finally:
        Image.MAX_IMAGE_PIXELS = bomb_check
    return width * height


def scan(paths: list[str], max_pixels: int) -> dict:
    """`{"unreadable": [paths], "largest": [[pixels, path], ...]}` of `paths`, cached per folder.

    The headers give every image's size (no decoding); the images of at most `max_pixels` are
    decoded once in parallel in `tf.data`, and those that do not survive are the unreadable ones.
    The cache is keyed by `max_pixels` and every file's path, size and modification time.
    """
    if not paths:
        return {"unreadable": [], "largest": []}
    key = hashlib.sha256(f"{max_pixels}\n".encode())
    for path in paths:
        stat = os.stat(path)
        key.update(f"{os.path.abspath(path)}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    cache_file = cache_dir() / "validated" / f"{key.hexdigest()}.json"
    try:
        cached = json.loads(cache_file.read_text())
        return {"unreadable": cached["unreadable"], "largest": cached["largest"]}
    except (OSError, ValueError, KeyError):
        pass
    pixels = {path: header_pixels(path) for path in paths}
    largest = sorted(([n, p] for p, n in pixels.items() if n is not None), reverse=True)[:LARGEST_KEPT]
    decodable = [p for p in paths if (pixels[p] or 0) <= max_pixels]
    good = (
        tf.data.Dataset.from_tensor_slices(decodable)
        .map(_decodes, num_parallel_calls=tf.data.AUTOTUNE)
        .ignore_errors()
    ) if decodable else None
    readable_set = {p.decode() for p in good.as_numpy_iterator()} if good is not None else set()
    result = {"unreadable": [p for p in decodable if p not in readable_set], "largest": largest}
    try:
        write_json_atomic(cache_file, result)
    except OSError:
        pass  # A read-only cache only costs a re-validation next time.
    return result


def check_sizes(largest: list, max_pixels: int, where: str) -> None:
    """Raises DataError when an image in `largest` (`[[pixels, path], ...]`) is over `max_pixels`."""
    over = [(n, p) for n, p in largest if n > max_pixels]
    if not over:
        return
    more = " (and maybe more)" if len(over) == len(largest) == LARGEST_KEPT else ""
    shown = "\n  ".join(f"{p} ({n / 1e6:.0f} megapixels)" for n, p in over[:5])
    raise DataError(f"{len(over)} image(s){more} in {where} exceed --max-image-pixels {max_pixels} "
                    f"({max_pixels / 1e6:.0f} megapixels), which would take gigabytes to decode:\n  {shown}\n"
                    "shrink or remove them, or raise --max-image-pixels")


def readable(paths: list[str], *, strict: bool, where: str,
             max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[list[str], list[str]]:
    """Splits `paths` into `(readable, unreadable)`, warning about the unreadable ones on stderr.

    Raises:
      DataError: an image larger than `max_pixels`; under `strict`, any unreadable file (the
        error lists them).
    """
    found = scan(paths, max_pixels)
    check_sizes(found["largest"], max_pixels, where)
    unreadable = set(found["unreadable"])
    shown = "\n  ".join(sorted(unreadable)[:20])
    more = f"\n  ... and {len(unreadable) - 20} more" if len(unreadable) > 20 else ""
    if unreadable and strict:
        raise DataError(f"{len(unreadable)} unreadable image file(s) in {where} (--strict):\n  {shown}{more}\n"
                        "fix or delete them, or drop --strict to skip them")
    if unreadable:
        print(f"warning: skipped {len(unreadable)} unreadable image file(s) in {where} "
              f"(use --strict to fail instead):\n  {shown}{more}", file=sys.stderr)
    return [p for p in paths if p not in unreadable], sorted(unreadable)


def _class_folders(root: Path) -> tuple[tuple[str, ...], list[str], list[int]]:
    """Class names, paths and labels of a folder with one subfolder of images per class."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    paths, labels = [], []
    for index, sub in enumerate(subdirs):
        files = images_below(sub)
        if not files:
            raise DataError(f"class folder '{sub}' has no {'/'.join(IMAGE_EXTENSIONS)} images: "
                            "add images or remove the folder")
        paths += [str(p) for p in files]
        labels += [index] * len(files)
    return tuple(p.name for p in subdirs), paths, labels


def list_folder(folder: str, *, strict: bool = False, max_pixels: int = MAX_IMAGE_PIXELS) -> FolderListing:
    """Lists a folder of images: class subfolders make it labeled, loose images unlabeled.

    Images lying beside class subfolders belong to no class: they are left out with a warning.

    Args:
      folder: directory path.
      strict: raise on unreadable files instead of skipping them (with a warning).
      max_pixels: refuse images larger than this (width x height, read from the file headers).

    Raises:
      DataError: missing or empty folder, an empty class folder, an image over `max_pixels`,
        or (strict) unreadable files.
    """
    root = Path(folder)
    if not root.is_dir():
        raise DataError(f"data folder '{folder}' does not exist or is not a directory")
    if any(p.is_dir() and not p.name.startswith(".") for p in root.iterdir()):
        class_names, paths, labels = _class_folders(root)
        loose = images_below(root, recursive=False)
        if loose:
            shown = ", ".join(p.name for p in loose[:5]) + (", ..." if len(loose) > 5 else "")
            print(f"warning: {len(loose)} image(s) in '{folder}' lie beside its class subfolders and belong to "
                  f"no class; they are left out ({shown}): move them into a class subfolder", file=sys.stderr)
    else:
        class_names, paths = None, [str(p) for p in images_below(root, recursive=False)]
        labels = [-1] * len(paths)
    if not paths:
        raise DataError(
            f"data folder '{folder}' has no images ({', '.join(IMAGE_EXTENSIONS)}): put images in "
            "it, or one subfolder of images per class"
        )
    kept, skipped = readable(paths, strict=strict, where=f"'{folder}'", max_pixels=max_pixels)
    if not kept:
        raise DataError(f"no readable images in '{folder}' ({len(skipped)} unreadable files)")
    label_of = dict(zip(paths, labels))
    if class_names is not None:
        present = {label_of[p] for p in kept}
        for index, name in enumerate(class_names):
            if index not in present:
                raise DataError(f"class folder '{root / name}' has no readable images")
    return FolderListing(paths=tuple(kept), labels=tuple(label_of[p] for p in kept),
                         class_names=class_names, skipped=tuple(skipped))
