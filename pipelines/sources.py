"""Source specs -> `tf.data.Dataset` of `(image uint8 [H, W, C], label int64)` plus metadata.

Specs:
  * `PATH` (a directory): class subfolders -> labeled, classes = sorted subfolder names;
    loose images -> unlabeled (label -1). PNG/JPEG/BMP/GIF, any size and channel count.
  * `npz:PATH`: arrays `x` uint8 `[N, H, W]` or `[N, H, W, C]`, optional `y` int `[N]` and
    `class_names` str `[K]`; loaded with `allow_pickle=False`.
  * `tfds:NAME[:SPLIT]`: an already prepared TensorFlow Datasets data set (default split `train`).
  * `digits[:train|test]`, `digits-m[:train|test]`: the built-in offline demo pair.

Open a spec with `open_source`; `Source.dataset()` builds the pipeline, shuffling and skipping
at the level of indices/paths (before decoding), so a resumed run can skip what it has seen
without decoding it.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import sys
from typing import Sequence

import numpy as np
import tensorflow as tf

from pipelines import builtin, folders
from pipelines.errors import DataError
from pipelines.limits import MAX_IMAGE_PIXELS, MEMORY_BUDGET
from pipelines.transforms import preprocess

DATASET_SCHEME = "dataset:"
"""The spec prefix of a user's `tf.data.Dataset` (`pipelines.from_dataset`): recorded, not reopenable."""
SPEC_HELP = (
    "use a folder path, npz:PATH, tfds:NAME[:SPLIT], or one of "
    + ", ".join(f"{name}[:train|test]" for name in builtin.BUILTINS)
)


@dataclasses.dataclass(frozen=True)
class SourceInfo:
    """What a source holds.

    Attributes:
      spec: the spec it was opened from.
      class_names: class names in label order; None when the source has no labels.
      num_examples: number of examples (None if the source cannot tell).
      image_shape: `(H, W, C)`, with None for sizes that vary between images.
      held_out: spec of a labeled held-out split of the same domain, where one exists
        (`digits-m:train` -> `digits-m:test`), used as the default evaluation set.
      skipped: unreadable files that were left out.
    """

    spec: str
    class_names: tuple[str, ...] | None
    num_examples: int | None
    image_shape: tuple[int | None, int | None, int | None]
    held_out: str | None = None
    skipped: tuple[str, ...] = ()

    @property
    def labeled(self) -> bool:
        return self.class_names is not None

    @property
    def num_classes(self) -> int | None:
        return None if self.class_names is None else len(self.class_names)

    @property
    def fixed_shape(self) -> bool:
        """True when every image has the same static shape (so images can be batched raw)."""
        return all(d is not None for d in self.image_shape)


class Source:
    """An opened data source. Build pipelines with `dataset()`; read metadata from `info`."""

    def __init__(self, info: SourceInfo):
        self.info = info
        self._preprocessed: dict[int, Source] = {}

    def preprocessed(self, image_size: int) -> "Source | None":
        """The images preprocessed for a model of `image_size` (uint8 `[S, S, 3]`, `preprocess`),
        read once and kept in memory, or None when they would take more than `MEMORY_BUDGET`
        bytes or the number of images is unknown.

        A training feed reads its sources over and over: decoding files and resizing them once
        instead of every epoch is what this saves. Same order under the same seed as `dataset()`
        for sources shuffled by index (folders, arrays).
        """
        count = self.info.num_examples
        if count is None or count * image_size * image_size * 3 > MEMORY_BUDGET:
            return None
        if image_size not in self._preprocessed:
            ds = self.dataset()
            prep = lambda x, y: (preprocess(x, image_size), y)  # noqa: E731
            ds = (ds.batch(256).map(prep, num_parallel_calls=tf.data.AUTOTUNE) if self.info.fixed_shape
                  else ds.map(prep, num_parallel_calls=tf.data.AUTOTUNE).batch(256))
            images, labels = zip(*ds.prefetch(2).as_numpy_iterator())
            info = dataclasses.replace(self.info, image_shape=(image_size, image_size, 3))
            self._preprocessed[image_size] = ArraySource(info, np.concatenate(images), np.concatenate(labels))
        return self._preprocessed[image_size]

    def dataset(
        self, *, shuffle_seed: int | None = None, repeat: bool = False, skip: int = 0
    ) -> tf.data.Dataset:
        """Elements `(image uint8 [H, W, C], label int64 [])`; label is -1 when unlabeled.

        Args:
          shuffle_seed: shuffle (reshuffled each epoch, deterministic under the seed); None keeps
            the source order.
          repeat: repeat forever.
          skip: elements to drop first (after shuffle/repeat), e.g. those a resumed run has seen.
        """
        raise NotImplementedError

    def labels(self) -> np.ndarray:
        """int64 `[N]` labels in source order (-1 where unlabeled)."""
        return np.fromiter(self.dataset().map(lambda x, y: y).as_numpy_iterator(), np.int64)

    def subset(self, indices: Sequence[int], spec: str) -> "Source":
        """The examples at `indices` (source order), as a new source named `spec`."""
        raise NotImplementedError


def _index_dataset(n: int, shuffle_seed: int | None, repeat: bool, skip: int) -> tf.data.Dataset:
    indices = tf.data.Dataset.range(n)
    if shuffle_seed is not None:
        indices = indices.shuffle(n, seed=shuffle_seed, reshuffle_each_iteration=True)
    if repeat:
        indices = indices.repeat()
    return indices.skip(skip) if skip else indices


class ArraySource(Source):
    """In-memory arrays (built-ins and npz)."""

    def __init__(self, info: SourceInfo, images: np.ndarray, labels: np.ndarray):
        super().__init__(info)
        self._images = images
        self._labels = labels

    def dataset(self, *, shuffle_seed=None, repeat=False, skip=0):
        images = tf.constant(self._images)
        labels = tf.constant(self._labels, tf.int64)
        indices = _index_dataset(len(self._images), shuffle_seed, repeat, skip)
        return indices.map(lambda i: (tf.gather(images, i), tf.gather(labels, i)))

    def labels(self) -> np.ndarray:
        return self._labels.astype(np.int64)

    def arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """`(images [N, H, W, C], int64 labels [N])` as held, in source order."""
        return self._images, self.labels()

    def subset(self, indices, spec):
        indices = np.asarray(indices, np.int64)
        info = dataclasses.replace(self.info, spec=spec, num_examples=len(indices), held_out=None)
        return ArraySource(info, self._images[indices], self._labels[indices])


class FolderSource(Source):
    """A folder of image files, decoded in parallel inside `tf.data`."""

    def __init__(self, info: SourceInfo, paths: Sequence[str], labels: Sequence[int]):
        super().__init__(info)
        self._paths = list(paths)
        self._labels = list(labels)

    def dataset(self, *, shuffle_seed=None, repeat=False, skip=0):
        paths = tf.constant(self._paths)
        labels = tf.constant(self._labels, tf.int64)
        indices = _index_dataset(len(self._paths), shuffle_seed, repeat, skip)
        return indices.map(
            lambda i: (folders.decode_file(tf.gather(paths, i)), tf.gather(labels, i)),
            num_parallel_calls=tf.data.AUTOTUNE,
        )

    def labels(self) -> np.ndarray:
        return np.asarray(self._labels, np.int64)

    def subset(self, indices, spec):
        info = dataclasses.replace(self.info, spec=spec, num_examples=len(indices), held_out=None, skipped=())
        return FolderSource(info, [self._paths[i] for i in indices], [self._labels[i] for i in indices])


class DatasetSource(Source):
    """A `tf.data.Dataset` of `(image, label)` elements: a prepared TFDS split (decoded by TFDS)
    or a user's dataset (`pipelines.from_dataset`).

    When its images have one shape and all of them fit in `MEMORY_BUDGET` bytes, the first use
    reads it once into memory; from then on it is an `ArraySource`: shuffled by index over the
    whole set (a class-sorted dataset still gives mixed batches), subsets and labels and a
    resume's skip without decoding anything again. Otherwise it streams, shuffled with a buffer
    of `SHUFFLE_BUFFER` elements, and a dataset larger than the buffer gets a warning: if it is
    sorted by class, its batches will be class-skewed.
    """

    SHUFFLE_BUFFER = 10_000

    def __init__(self, info: SourceInfo, dataset: tf.data.Dataset, labels: np.ndarray | None = None):
        """`labels`: int64 `[N]`, when already known (saves a pass over the data)."""
        super().__init__(info)
        self._dataset = dataset
        self._known_labels = labels
        self._warned = False

    def fits_in_memory(self) -> bool:
        """True when the images have one shape, their number is known and they fit `MEMORY_BUDGET`."""
        if not self.info.fixed_shape or self.info.num_examples is None:
            return False
        return self.info.num_examples * int(np.prod(self.info.image_shape)) <= MEMORY_BUDGET

    @functools.cached_property
    def _in_memory(self) -> ArraySource | None:
        """The whole dataset as arrays, read once (None when it does not `fits_in_memory`)."""
        if not self.fits_in_memory():
            return None
        images, labels = [], []
        for x, y in self._dataset.map(lambda x, y: (x, tf.cast(y, tf.int64))).batch(1024).as_numpy_iterator():
            images.append(x)
            labels.append(y)
        return ArraySource(self.info, np.concatenate(images), np.concatenate(labels))

    def dataset(self, *, shuffle_seed=None, repeat=False, skip=0):
        if self._in_memory is not None:
            return self._in_memory.dataset(shuffle_seed=shuffle_seed, repeat=repeat, skip=skip)
        ds = self._dataset.map(lambda x, y: (x, tf.cast(y, tf.int64)))
        if shuffle_seed is not None:
            self._warn_partial_shuffle()
            ds = ds.shuffle(self.SHUFFLE_BUFFER, seed=shuffle_seed, reshuffle_each_iteration=True)
        if repeat:
            ds = ds.repeat()
        return ds.skip(skip) if skip else ds

    def _warn_partial_shuffle(self) -> None:
        count = self.info.num_examples
        if self._warned or (count is not None and count <= self.SHUFFLE_BUFFER):
            return
        self._warned = True
        size = f"{count} images" if count is not None else "an unknown number of images"
        why = ("images of varying sizes" if not self.info.fixed_shape else
               f"over {MEMORY_BUDGET / 1024**3:.0f} GiB" if count is not None else "no known size")
        print(f"warning: '{self.info.spec}' has {size} ({why}), too many to keep in memory, so it is shuffled "
              f"with a buffer of {self.SHUFFLE_BUFFER}: if it is sorted by class, batches will be class-skewed. "
              "Shuffle it once beforehand, or give it as an image folder (shuffled by index)", file=sys.stderr)

    def labels(self) -> np.ndarray:
        if self._known_labels is not None:
            return self._known_labels
        return self._in_memory.labels() if self._in_memory is not None else super().labels()

    def subset(self, indices, spec):
        if self._in_memory is not None:
            return self._in_memory.subset(indices, spec)
        indices = np.asarray(indices, np.int64)
        keep = tf.constant(indices)
        chosen = self._dataset.enumerate().filter(lambda i, _: tf.reduce_any(tf.equal(i, keep))).map(lambda i, xy: xy)
        info = dataclasses.replace(self.info, spec=spec, num_examples=len(indices), held_out=None)
        labels = None if self._known_labels is None else self._known_labels[np.sort(indices)]
        return DatasetSource(info, chosen, labels)


def _split_spec(spec: str) -> tuple[str, str | None]:
    name, _, split = spec.partition(":")
    return name, (split or None)


def _open_builtin(spec: str) -> Source:
    name, split = _split_spec(spec)
    split = split or "train"
    if split not in builtin.SPLITS:
        raise DataError(f"unknown split '{split}' in '{spec}': {name} has splits {builtin.SPLITS}")
    images, labels = builtin.load(name, split)
    info = SourceInfo(
        spec=spec,
        class_names=builtin.CLASS_NAMES,
        num_examples=len(images),
        image_shape=tuple(images.shape[1:]),
        held_out=f"{name}:test" if split == "train" else None,
    )
    return ArraySource(info, images, labels)


def _open_npz(spec: str) -> Source:
    path = spec[len("npz:"):]
    if not os.path.isfile(path):
        raise DataError(f"npz file '{path}' does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except ValueError as err:  # object arrays need pickle, which is refused
        raise DataError(f"npz file '{path}' cannot be read safely ({err}); save plain arrays") from None
    except (OSError, EOFError) as err:
        raise DataError(f"'{path}' is not a readable .npz file ({err})") from None
    if "x" not in arrays:
        raise DataError(f"npz file '{path}' has no array 'x' (has: {sorted(arrays)})")
    images = arrays["x"]
    if images.dtype != np.uint8 or images.ndim not in (3, 4):
        raise DataError(
            f"npz file '{path}': 'x' must be uint8 [N, H, W] or [N, H, W, C], got "
            f"{images.dtype} {list(images.shape)}"
        )
    if images.ndim == 3:
        images = images[..., None]
    if images.shape[-1] not in (1, 2, 3, 4) or min(images.shape[:3]) < 1:
        raise DataError(f"npz file '{path}': 'x' has shape {list(images.shape)}; need C in 1..4")
    if "y" in arrays:
        labels = arrays["y"]
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise DataError(
                f"npz file '{path}': 'y' must be integers of shape [{len(images)}], got "
                f"{labels.dtype} {list(labels.shape)}"
            )
        if labels.min() < 0:
            raise DataError(f"npz file '{path}': 'y' has negative labels")
        if "class_names" in arrays:
            class_names = tuple(str(c) for c in arrays["class_names"])
            if labels.max() >= len(class_names):
                raise DataError(f"npz file '{path}': a label in 'y' is >= len(class_names)")
        else:
            class_names = tuple(str(i) for i in range(int(labels.max()) + 1))
    else:
        labels = np.full(len(images), -1, np.int64)
        class_names = None
    info = SourceInfo(spec, class_names, len(images), tuple(images.shape[1:]))
    return ArraySource(info, images, labels.astype(np.int64))


def _open_folder(spec: str, strict: bool, max_pixels: int) -> Source:
    listing = folders.list_folder(spec, strict=strict, max_pixels=max_pixels)
    info = SourceInfo(
        spec=spec,
        class_names=listing.class_names,
        num_examples=len(listing.paths),
        image_shape=(None, None, None),
        skipped=listing.skipped,
    )
    return FolderSource(info, listing.paths, listing.labels)


def _open_tfds(spec: str, data_dir: str | None, download: bool) -> Source:
    import tensorflow_datasets as tfds

    rest = spec[len("tfds:"):]
    name, split = _split_spec(rest)
    split = split or "train"
    if not name:
        raise DataError(f"'{spec}': name a data set, e.g. tfds:mnist or tfds:mnist:test")
    data_dir = data_dir or os.environ.get("TFDS_DATA_DIR")
    try:
        dataset, info = tfds.load(
            name, split=split, as_supervised=True, with_info=True, download=download,
            data_dir=data_dir,
        )
    except tfds.core.registered.DatasetNotFoundError:
        raise DataError(f"'{spec}': TFDS has no data set named '{name}'") from None
    except Exception as err:  # TFDS raises many types for "not prepared here"
        where = data_dir or "~/tensorflow_datasets"
        raise DataError(
            f"'{spec}': TFDS data set '{name}' split '{split}' is not prepared in {where} "
            f"({str(err).splitlines()[0] if str(err) else type(err).__name__}). Prepare it with "
            f"`tfds build {name} --data_dir {where}` where there is internet, set TFDS_DATA_DIR "
            "or --tfds-data-dir to where it is, or pass --tfds-download"
        ) from None
    label = info.features["label"] if "label" in info.features else None
    class_names = tuple(label.names) if label is not None and hasattr(label, "names") else None
    try:
        num_examples = info.splits[split].num_examples or None
    except (KeyError, ValueError, TypeError):
        num_examples = None  # mock data and split slices may not tell
    image_shape = tuple(dataset.element_spec[0].shape)
    if len(image_shape) != 3:
        raise DataError(f"'{spec}': expected images [H, W, C], got shape {list(image_shape)}")
    return DatasetSource(SourceInfo(spec, class_names, num_examples, image_shape), dataset)


def open_source(
    spec: str, *, strict: bool = False, max_image_pixels: int = MAX_IMAGE_PIXELS,
    tfds_data_dir: str | None = None,
    tfds_download: bool = False,
) -> Source:
    """Opens a source spec (see the module docstring).

    Args:
      spec: the spec string.
      strict: fail on unreadable image files instead of skipping them with a warning.
      max_image_pixels: refuse folder images larger than this (width x height).
      tfds_data_dir: TFDS data dir (default `$TFDS_DATA_DIR`, then TFDS' own default).
      tfds_download: let TFDS download and prepare a missing data set.

    Raises:
      DataError: with a message naming the spec/path and how to fix it.
    """
    if not spec:
        raise DataError(f"empty source spec: {SPEC_HELP}")
    if spec.startswith(DATASET_SCHEME):
        raise DataError(f"'{spec}' was a tf.data.Dataset given to the Python API; it cannot be reopened from a run "
                        "directory: pass the data again (tfuda.evaluate, export.export_model)")
    if spec.startswith("npz:"):
        return _open_npz(spec)
    if spec.startswith("tfds:"):
        return _open_tfds(spec, tfds_data_dir, tfds_download)
    if _split_spec(spec)[0] in builtin.BUILTINS:
        return _open_builtin(spec)
    if os.path.isdir(spec):
        return _open_folder(spec, strict, max_image_pixels)
    if os.path.exists(spec):
        raise DataError(f"'{spec}' is a file, not a folder of images: {SPEC_HELP}")
    scheme = spec.split(":", 1)[0] if ":" in spec else None
    if scheme:
        raise DataError(f"unknown source scheme '{scheme}:' in '{spec}': {SPEC_HELP}")
    raise DataError(f"data folder '{spec}' does not exist: {SPEC_HELP}")


def canonical_spec(spec: str) -> str:
    """A spec's data, named one way: default splits made explicit, paths made absolute and real.

    `digits-m` and `digits-m:train`, or `data/x` and `./data/x/`, name the same data.
    """
    if spec.startswith("npz:"):
        return "npz:" + os.path.realpath(spec[len("npz:"):])
    if spec.startswith("tfds:"):
        name, split = _split_spec(spec[len("tfds:"):])
        return f"tfds:{name}:{split or 'train'}"
    name, split = _split_spec(spec)
    if name in builtin.BUILTINS:
        return f"{name}:{split or 'train'}"
    return os.path.realpath(spec)


def check_same_classes(train: SourceInfo, other: SourceInfo, flag: str) -> None:
    """Raises DataError if a labeled `other` does not have the classes of labeled `train`."""
    if other.class_names is None or train.class_names is None:
        return
    if tuple(other.class_names) != tuple(train.class_names):
        missing = sorted(set(train.class_names) - set(other.class_names))
        extra = sorted(set(other.class_names) - set(train.class_names))
        raise DataError(
            f"{flag} '{other.spec}' has classes that differ from those of '{train.spec}' "
            f"(missing: {missing or 'none'}, extra: {extra or 'none'}"
            f"{', same names in another order' if not missing and not extra else ''}): "
            "give both the same class subfolders"
        )
