"""The export directory: versioned trees per format, and atomic publishing.

    EXPORT/serving/NAME/<version>/   SavedModel for TF Serving (model_base_path = EXPORT/serving/NAME)
    EXPORT/tflite/NAME/<version>/    model.<precision>.tflite + metadata.json
    EXPORT/onnx/NAME/<version>/      model.onnx (+ metadata.json)
    EXPORT/reports/NAME/<version>.json

A new version is one more than the highest integer version in any of these trees, so TF Serving
picks it up and no earlier artifact is replaced. Each version is built in a hidden temporary
sibling and renamed into place only when the whole export succeeded.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from pipelines.atomic import fsync_dir
from pipelines.errors import UserError

TREES = ("serving", "tflite", "onnx")


class ExportLayout:
    """Paths of one model name inside an export directory."""

    def __init__(self, root: str | os.PathLike, name: str):
        self.root = Path(root)
        self.name = name
        if not name or "/" in name or name.startswith("."):
            raise UserError(f"--name '{name}' must be a plain folder name")

    def tree(self, kind: str) -> Path:
        return self.root / kind / self.name

    def version_dir(self, kind: str, version: int) -> Path:
        return self.tree(kind) / str(version)

    def report_file(self, version: int) -> Path:
        return self.root / "reports" / self.name / f"{version}.json"

    def existing_versions(self) -> set[int]:
        versions = set()
        for kind in TREES:
            tree = self.tree(kind)
            if tree.is_dir():
                versions |= {int(p.name) for p in tree.iterdir() if p.name.isdigit()}
        reports = self.root / "reports" / self.name
        if reports.is_dir():
            versions |= {int(p.stem) for p in reports.glob("*.json") if p.stem.isdigit()}
        return versions

    def resolve_version(self, requested: str, overwrite: bool) -> int:
        """`auto` -> highest existing + 1; an explicit N must be new unless `overwrite`."""
        existing = self.existing_versions()
        if requested == "auto":
            return max(existing, default=0) + 1
        if not requested.isdigit() or int(requested) < 1:
            raise UserError(f"--version must be a positive integer or 'auto', got '{requested}'")
        version = int(requested)
        if version in existing and not overwrite:
            raise UserError(
                f"version {version} of '{self.name}' already exists in '{self.root}': use --version auto, "
                "another number, or --overwrite")
        return version

    def check_writable(self) -> None:
        """Fails early, with the path, when the export directory cannot be created or written."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryFile(dir=self.root):
                pass
        except OSError as err:
            raise UserError(f"cannot write the export directory '{self.root}': {err.strerror or err}") from None


class Staging:
    """A hidden temporary directory inside the export root, published by renames on success.

    Usage: stage = Staging(layout); write into `stage.path(kind)`; `stage.publish(version)`
    moves every staged tree into place; leaving the `with` block without publishing removes it.
    """

    def __init__(self, layout: ExportLayout):
        self.layout = layout
        self.dir = Path(tempfile.mkdtemp(prefix=f".staging-{layout.name}-", dir=layout.root))

    def path(self, kind: str) -> Path:
        path = self.dir / kind
        path.mkdir(parents=True, exist_ok=True)
        return path

    def publish(self, version: int, kinds: list[str], overwrite: bool) -> dict[str, Path]:
        """Renames staged `kinds` into their version folders; returns their final paths.

        An existing version (`overwrite`) is first renamed aside into the staging directory, the
        new one renamed in (the old one back if that fails), and only then the old one deleted
        with the staging directory: a crash at any point leaves a complete version in place, or
        aside in the staging directory, never none.
        """
        published = {}
        for kind in kinds:
            final = self.layout.version_dir(kind, version)
            final.parent.mkdir(parents=True, exist_ok=True)
            aside = None
            if final.exists():
                if not overwrite:
                    raise UserError(f"'{final}' appeared during the export; not replacing it")
                aside = self.dir / f"replaced-{kind}"
                os.replace(final, aside)
            try:
                os.replace(self.dir / kind, final)
            except BaseException:
                if aside is not None:
                    os.replace(aside, final)
                raise
            fsync_dir(final.parent)
            published[kind] = final
        return published

    def __enter__(self) -> "Staging":
        return self

    def __exit__(self, *exc) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
