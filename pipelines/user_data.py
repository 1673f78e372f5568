"""A user's own `tf.data.Dataset` (or arrays) as a `Source`: the Python API's way in.

Accepted elements: `(image, label)`, `{"image": ..., "label": ...}` or `image` alone (unlabeled);
images `[H, W]` or `[H, W, C]` with C in 1..4, any size (sizes may vary between elements), uint8
or float with values 0..255; labels integer class indices. A batched dataset (`[B, H, W, C]`
images, or `[B, H, W]` with W > 4) is unbatched. Everything is checked before training starts: the element structure,
the label range, and whether float images look scaled to 0..1 (a warning, since tfuda's models
take 0..255).
"""

from __future__ import annotations

import warnings
from typing import Sequence

import numpy as np
import tensorflow as tf

from pipelines.errors import DataError
from pipelines.sources import DATASET_SCHEME, DatasetSource, Source, SourceInfo
from pipelines.transforms import to_uint8

RANGE_CHECK_IMAGES = 64
"""Images of the first elements whose pixel range is checked for 0..1 scaling."""


def _names(class_names: Sequence[str] | int | None, argument: str) -> tuple[str, ...] | None:
    if class_names is None:
        return None
    if isinstance(class_names, (int, np.integer)) and not isinstance(class_names, bool):
        if class_names < 1:
            raise DataError(f"{argument}: class_names={class_names}; give the number of classes (>= 1) or their names")
        return tuple(str(i) for i in range(int(class_names)))
    if isinstance(class_names, str) or not all(isinstance(n, str) for n in class_names) or not class_names:
        raise DataError(f"{argument}: class_names must be a non-empty list of strings (in label order) or a "
                        f"number of classes, got {class_names!r}")
    if len(set(class_names)) != len(class_names):
        raise DataError(f"{argument}: class_names has duplicates: {list(class_names)}")
    return tuple(class_names)


def _split_element(spec, argument: str):
    """`(image spec, label spec or None, function element -> (image, label or None))`."""
    if isinstance(spec, tf.TensorSpec):
        return spec, None, lambda x: (x, None)
    if isinstance(spec, dict) and set(spec) == {"image", "label"}:
        return spec["image"], spec["label"], lambda d: (d["image"], d["label"])
    if isinstance(spec, dict) and set(spec) == {"image"}:
        return spec["image"], None, lambda d: (d["image"], None)
    if isinstance(spec, tuple) and len(spec) == 2 and all(isinstance(s, tf.TensorSpec) for s in spec):
        return spec[0], spec[1], lambda x, y: (x, y)
    raise DataError(f"{argument}: elements must be (image, label), {{'image', 'label'}} or image alone; this "
                    f"dataset has elements {spec}")


def from_dataset(dataset: tf.data.Dataset, class_names: Sequence[str] | int | None = None, *,
                 name: str = "dataset", argument: str = "dataset") -> Source:
    """A `Source` over a `tf.data.Dataset` (see the module docstring for the element formats).

    Reads the dataset once, to count it and check its labels; iterating it must give the same
    elements each time (no unseeded random ops), since training shuffles and repeats it.

    Args:
      dataset: the images, labeled or not.
      class_names: class names in label order, or the number of classes; required when the
        elements have labels, and then every label must be in `[0, len(class_names))`.
      name: what the data is called in logs and reports; its spec is `dataset:NAME` (recorded
        in a run's config, not reopenable).
      argument: the argument name errors start with, e.g. `source`.

    Returns:
      a `Source` of `(uint8 [H, W, C], int64 label)` elements, label -1 when unlabeled.

    Raises:
      DataError (a ValueError): wrong element structure, dtype or rank; labels without class
        names or out of range; an empty dataset.
    """
    if not isinstance(dataset, tf.data.Dataset):
        raise DataError(f"{argument}: expected a tf.data.Dataset, got {type(dataset).__name__} "
                        "(wrap arrays with tf.data.Dataset.from_tensor_slices)")
    image_spec, label_spec, split = _split_element(dataset.element_spec, argument)
    rank, channels = image_spec.shape.rank, image_spec.shape[-1] if image_spec.shape.rank else None
    if rank == 4 or (rank == 3 and channels is not None and channels > 4):  # batches of [H, W, C] or [H, W]
        dataset = dataset.unbatch()
        image_spec = tf.TensorSpec(image_spec.shape[1:], image_spec.dtype)
        if label_spec is not None:
            label_spec = tf.TensorSpec(label_spec.shape[1:], label_spec.dtype)
    if image_spec.shape.rank not in (2, 3) or (image_spec.shape.rank == 3 and image_spec.shape[-1] not in (None, 1, 2, 3, 4)):
        raise DataError(f"{argument}: images must be [H, W] or [H, W, C] with C in 1..4 (or batches of them), "
                        f"got shape {image_spec.shape}")
    if not (image_spec.dtype.is_integer or image_spec.dtype.is_floating):
        raise DataError(f"{argument}: images must be uint8 or float (values 0..255), got {image_spec.dtype.name}")
    if label_spec is not None and (label_spec.shape.rank != 0 or not label_spec.dtype.is_integer):
        raise DataError(f"{argument}: labels must be integer class indices (scalar per image), got "
                        f"{label_spec.dtype.name} of shape {label_spec.shape} (one-hot labels: take argmax)")
    names = _names(class_names, argument)
    if label_spec is not None and names is None:
        raise DataError(f"{argument}: the dataset has labels: give class_names (names in label order, or their number)")

    def normalise(*element):
        image, label = split(*element)
        if image.shape.rank == 2:
            image = image[..., None]
        if image.dtype != tf.uint8:
            image = to_uint8(tf.cast(image, tf.float32))
        label = tf.constant(-1, tf.int64) if label is None else tf.cast(label, tf.int64)
        return image, label

    images = dataset.map(normalise, num_parallel_calls=tf.data.AUTOTUNE)
    labels, peak = _scan(dataset.map(lambda *e: (split(*e)[0], split(*e)[1] if label_spec is not None else -1)))
    if not len(labels):
        raise DataError(f"{argument}: the dataset is empty")
    if names is not None and label_spec is not None and (labels.min() < 0 or labels.max() >= len(names)):
        raise DataError(f"{argument}: labels must be in [0, {len(names)}) for {len(names)} class names; found "
                        f"{int(labels.min())}..{int(labels.max())}")
    if image_spec.dtype.is_floating and peak <= 1.0:
        warnings.warn(f"{argument}: float images with values in 0..{peak:g} look scaled to 0..1; tfuda expects "
                      "0..255 (multiply by 255), or its models see almost black images", UserWarning, stacklevel=2)
    shape = tuple(image_spec.shape) if image_spec.shape.rank == 3 else (*image_spec.shape, 1)
    info = SourceInfo(DATASET_SCHEME + name, names if label_spec is not None else None, len(labels), shape)
    return DatasetSource(info, images, labels if label_spec is not None else np.full(len(labels), -1, np.int64))


def _scan(pairs: tf.data.Dataset) -> tuple[np.ndarray, float]:
    """One pass: every label (int64 `[N]`) and the largest pixel value of the first images."""
    labels, peak = [], 0.0
    for i, (image, label) in enumerate(pairs.as_numpy_iterator()):
        labels.append(label)
        if i < RANGE_CHECK_IMAGES:
            peak = max(peak, float(np.max(image)) if np.size(image) else 0.0)
    return np.asarray(labels, np.int64), peak

