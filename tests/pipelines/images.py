"""Helpers that write small image folders for tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image


def write_image(path: Path, mode: str = "RGB", size=(12, 9), fmt: str | None = None, seed: int = 0) -> Path:
    """Writes a random image in PIL `mode` (RGB, RGBA, L, P, CMYK, I;16) to `path`."""
    rng = np.random.default_rng(seed)
    w, h = size
    if mode == "I;16":
        image = Image.fromarray(rng.integers(0, 65535, (h, w), dtype=np.uint16))
    else:
        image = Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, format=fmt)
    return path


def write_truncated(path: Path, seed: int = 0) -> Path:
    """A PNG cut off half-way: the header parses, the pixels do not."""
    write_image(path, size=(40, 40), seed=seed)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_png_header(path: Path, width: int, height: int) -> Path:
    """A PNG whose header claims `width` x `height` pixels (RGB), with no pixel data: a huge
    image's first bytes, without the disk or memory a real one would take."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)))
    return path


def labeled_folder(root: Path, classes=("cat", "dog"), per_class: int = 3) -> Path:
    """Class subfolders with RGB PNG, grayscale JPEG and RGBA PNG images of mixed sizes."""
    for c, name in enumerate(classes):
        for i in range(per_class):
            mode, ext = [("RGB", "png"), ("L", "jpg"), ("RGBA", "png")][i % 3]
            write_image(root / name / f"{i}.{ext}", mode, size=(10 + i, 8 + 2 * c), seed=10 * c + i)
    return root
