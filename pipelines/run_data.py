"""A run's data: every data set a run's config names, opened one way for train, report and export.

The config is a mapping with the keys of `tfuda.config.Config` (`config.json` of a run directory,
or `Config.to_dict()`); this module reads only the data keys: `source`, `target`, `eval_target`,
`eval_source`, `setting`, `labeled_per_class`, `target_labeled`, `seed`, and the opening
options `strict`, `max_image_pixels`, `tfds_data_dir`, `tfds_download`. Each set is opened on first use, once, and
checked where it is opened (labels present, the source's class names, no evaluation set that
is also trained on), so every command sees the same data with the same errors.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Mapping, Sequence

from pipelines.errors import DataError
from pipelines.limits import MAX_IMAGE_PIXELS
from pipelines.sources import Source, SourceInfo, canonical_spec, check_same_classes, open_source
from pipelines.splits import carve_per_class


@dataclasses.dataclass(frozen=True)
class OpenOptions:
    """How specs are opened: see `open_source`."""

    strict: bool = False
    max_image_pixels: int = MAX_IMAGE_PIXELS
    tfds_data_dir: str | None = None
    tfds_download: bool = False

    @classmethod
    def of(cls, config: Mapping[str, Any]) -> "OpenOptions":
        return cls(strict=bool(config.get("strict", False)),
                   max_image_pixels=int(config.get("max_image_pixels") or MAX_IMAGE_PIXELS),
                   tfds_data_dir=config.get("tfds_data_dir"), tfds_download=bool(config.get("tfds_download", False)))

    def open(self, spec: str, flag: str | None = None) -> Source:
        """Opens `spec`; a DataError names `flag` (the flag that gave the spec) first."""
        try:
            return open_source(spec, strict=self.strict, max_image_pixels=self.max_image_pixels,
                               tfds_data_dir=self.tfds_data_dir, tfds_download=self.tfds_download)
        except DataError as err:
            if flag is None:
                raise
            raise DataError(f"{flag}: {err}") from None


def check_classes(opened: Source, class_names: Sequence[str], classes_from: str, flag: str) -> Source:
    """`opened`, if labeled with exactly `class_names` (or unlabeled); else a DataError that
    starts with `flag` and names the reference `classes_from`."""
    check_same_classes(SourceInfo(classes_from, tuple(class_names), None, (None,) * 3), opened.info, flag)
    return opened


def check_evaluation_set(opened: Source, class_names: Sequence[str], classes_from: str, flag: str) -> Source:
    """`opened`, if it is labeled, with `class_names` (see `check_classes`); else a DataError."""
    if not opened.info.labeled:
        raise DataError(f"{flag} '{opened.info.spec}' has no labels; an evaluation set must be labeled")
    return check_classes(opened, class_names, classes_from, flag)


@dataclasses.dataclass(frozen=True)
class TrainingData:
    """Every opened data set of one training run (see `RunData` for what each holds).

    `class_names`: the classes, in label order, of every labeled set and of the model's outputs.
    """

    class_names: tuple[str, ...]
    source: Source | None
    target: Source | None
    target_labeled: Source | None = None
    eval_target: Source | None = None
    eval_source: Source | None = None


class RunData:
    """The data sets of one run's config, each opened and checked on first use.

    Attributes (each a `Source`, or None where the config names none):
      labeled_source: all of `--source` (labeled); None for a source-free run (`source` unset).
      source: the labeled training images: `labeled_source`, or K per class of it under SSL.
      target: the unlabeled target images (their labels, if any, only feed monitors).
      target_labeled: SSDA's K labeled target images per class, carved from `--target-labeled`.
      eval_target, eval_source: labeled evaluation sets; by default the held-out split of the
        target / source spec, where it has one (`digits-m` -> `digits-m:test`).
    """

    def __init__(self, config: Mapping[str, Any], class_names: Sequence[str] | None = None,
                 classes_from: str = "the --init model", opened: Mapping[str, Source] | None = None):
        """`class_names`: the classes every labeled set must have (default: the source's), named
        `classes_from` in error messages. `opened`: sources already opened, by config key
        (`source`, `target`, `eval_target`, `eval_source`; the Python API's datasets), checked
        like the ones opened here from their specs."""
        self.config = config
        self.options = OpenOptions.of(config)
        self._opened = dict(opened or {})
        self._class_names = None if class_names is None else tuple(class_names)
        self._classes_from = classes_from

    @property
    def class_names(self) -> tuple[str, ...]:
        if self._class_names is None and self.labeled_source is None:
            raise DataError("a source-free run needs its class names: train from a tfuda run, or give --class-names")
        return self._class_names or self.labeled_source.info.class_names

    @functools.cached_property
    def labeled_source(self) -> Source | None:
        if self.source_free:
            return None
        source = self._open("source", "--source")
        if not source.info.labeled:
            raise DataError(f"--source '{self.config['source']}' has no labels: give class subfolders, an npz "
                            "with 'y', or a labeled TFDS/built-in spec")
        return source

    @functools.cached_property
    def source(self) -> Source | None:
        if self.labeled_source is not None and self.config.get("setting") == "ssl":
            return carve_per_class(self.labeled_source, self.config["labeled_per_class"], self.config["seed"],
                                   "--source")
        return self.labeled_source

    @functools.cached_property
    def target(self) -> Source | None:
        if not self.config.get("target"):
            return None
        return self._same_classes(self._open("target", "--target"), "--target")

    @functools.cached_property
    def target_labeled(self) -> Source | None:
        if self.config.get("setting") != "ssda":
            return None
        spec = self.config["target_labeled"]
        carved = carve_per_class(self.options.open(spec, "--target-labeled"), self.config["labeled_per_class"],
                                 self.config["seed"], "--target-labeled")
        return self._same_classes(carved, "--target-labeled")

    @functools.cached_property
    def eval_target(self) -> Source | None:
        default = self.target.info.held_out if self.target is not None else None
        evaluation = self._eval_set("eval_target", default)
        spec = self.config.get("target_labeled")
        if (evaluation is not None and self.config.get("setting") == "ssda"
                and canonical_spec(spec) == canonical_spec(evaluation.info.spec)):
            raise DataError(f"--target-labeled '{spec}' is the target evaluation set '{evaluation.info.spec}': "
                            "its labels would be trained on and then reported as accuracy. Carve the labeled "
                            "target images from other data, or give --eval-target a held-out set")
        return evaluation

    @functools.cached_property
    def eval_source(self) -> Source | None:
        default = None if self.source_free else self.labeled_source.info.held_out
        return self._eval_set("eval_source", default)

    @property
    def source_free(self) -> bool:
        """True when the config names no source data (a source-free run; its classes are given)."""
        return not self.config.get("source")

    def open_all(self, needs_target: bool) -> TrainingData:
        """Opens and checks every set training uses (all errors before the first step)."""
        for name in ("source", "target_labeled", "eval_target", "eval_source"):
            getattr(self, name)
        if needs_target and self.target is None:
            raise DataError("--target is required: the unlabeled images of the domain to adapt to")
        if self._class_names is not None and self.labeled_source is not None:
            self._same_classes(self.labeled_source, "--source")
        return TrainingData(self.class_names, self.source, self.target, self.target_labeled, self.eval_target,
                            self.eval_source)

    @property
    def _reference(self) -> str:
        """What the class names are named after in errors: the --init model, or the source spec."""
        return self._classes_from if self._class_names is not None else self.config["source"]

    def _same_classes(self, opened: Source, flag: str) -> Source:
        return check_classes(opened, self.class_names, self._reference, flag)

    def _open(self, key: str, flag: str) -> Source:
        """The source of config `key`: given opened, or opened from its spec."""
        return self._opened[key] if key in self._opened else self.options.open(self.config[key], flag)

    def _eval_set(self, key: str, default: str | None) -> Source | None:
        """The evaluation set of config `key` (`eval_target`/`eval_source`), else the spec `default`."""
        flag = "--" + key.replace("_", "-")
        if key in self._opened or self.config.get(key):
            opened = self._open(key, flag)
        elif default is not None:
            opened = self.options.open(default, flag)
        else:
            return None
        return check_evaluation_set(opened, self.class_names, self._reference, flag)
