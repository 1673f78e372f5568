"""The offline demo pair: `digits` (source) and `digits-m` (target), built from installed packages.

`digits` is scikit-learn's 1,797 8x8 handwritten digits, split once (stratified, fixed seed that
does not follow `--seed`) into `train` (~80%) and `test` (~20%). `digits-m` follows the MNIST-M
recipe (Ganin & Lempitsky 2015): each digit, upscaled to 32x32, is blended with a random crop of
a colour photograph (scikit-image's sample images) as |digit - patch| per channel. `digits-m:train`
is built from the train digits and `digits-m:test` from the test digits, so a target test image
never shares its digit with any training image of either domain.

Both are built in memory in well under a second; nothing is downloaded or written to disk.
"""

from __future__ import annotations

import functools

import numpy as np

SPLIT_SEED = 20_211_122
"""Fixed: the train/test split and the composites never change with `--seed`."""

TEST_FRACTION = 0.2
DIGITS_M_SIZE = 32
_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
           "immunohistochemistry", "retina", "colorwheel")

CLASS_NAMES = tuple(str(i) for i in range(10))
SPLITS = ("train", "test")


@functools.lru_cache(maxsize=None)
def _digits() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [N, 8, 8, 1]
    labels = data.target.astype(np.int64)
    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


@functools.lru_cache(maxsize=None)
def _photos() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(getattr(skimage.data, name)()[..., :3] for name in _PHOTOS)


def _upscale(images: np.ndarray, size: int) -> np.ndarray:
    """Bilinear upscaling of `[N, h, w, 1]` uint8 digits to `[N, size, size, 1]` float32."""
    from skimage.transform import resize

    out = resize(images.astype(np.float32), (len(images), size, size, 1), order=1,
                 preserve_range=True, anti_aliasing=False)
    return out


@functools.lru_cache(maxsize=None)
def _digits_m(split: str) -> tuple[np.ndarray, np.ndarray]:
    digits, labels = _digits()[split]
    rng = np.random.default_rng([SPLIT_SEED, SPLITS.index(split)])
    photos = _photos()
    size = DIGITS_M_SIZE
    upscaled = _upscale(digits, size)
    out = np.empty((len(digits), size, size, 3), np.uint8)
    photo_ids = rng.integers(0, len(photos), len(digits))
    for i, (digit, photo_id) in enumerate(zip(upscaled, photo_ids)):
        photo = photos[photo_id]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        patch = photo[top:top + size, left:left + size].astype(np.float32)
        out[i] = np.abs(patch - digit).astype(np.uint8)
    return out, labels


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(images uint8 [N, H, W, C], labels int64 [N])` of a built-in data set.

    Args:
      name: `digits` ([N, 8, 8, 1]) or `digits-m` ([N, 32, 32, 3]).
      split: `train` or `test`.
    """
    if name == "digits":
        return _digits()[split]
    return _digits_m(split)


BUILTINS = ("digits", "digits-m")
