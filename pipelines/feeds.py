"""Training feeds: per step, a labeled source batch and an unlabeled target batch, with views.

A feed element is a dict:

    {"seed": int64 [2],                       # this step's augmentation seed
     "source": {"labels": int64 [B], <views>},
     "target": {"labels": int64 [U], <views>}}   # U = uratio * B; labels -1 where unknown

where `<views>` are float32 `[N, S, S, 3]` tensors named by the method (`weak`, `strong`, ...).
With `on_device=True` the feed stops at uint8 `images` `[N, S, S, 3]` and the train step calls
`apply_views` itself (the same function), so augmentation runs on the accelerator.

Everything is deterministic under `seed`: the data order (shuffled per epoch) and the
augmentation (seeded by step index). Each `make_feed` call starts the same sequence; a second
iterator over the *same* dataset object reshuffles, as tf.data does with
`reshuffle_each_iteration`, so build a new feed to replay one. `start_step` gives exactly the batches an uninterrupted
run would see from that step on, skipping at the index level without decoding.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import tensorflow as tf

from pipelines.augment import Augment, batch_size
from pipelines.sources import Source
from pipelines.transforms import preprocess

AUTOTUNE = tf.data.AUTOTUNE


def preprocessed_batches(
    source: Source, batch_size: int, image_size: int, *, shuffle_seed: int | None = None,
    repeat: bool = False, skip: int = 0, drop_remainder: bool = False,
) -> tf.data.Dataset:
    """Batches of `(uint8 [B, S, S, 3], int64 [B])` preprocessed as for training.

    A repeated stream (a training feed) reads the source's preprocessed images from memory when
    they fit (`Source.preprocessed`); otherwise fixed-shape sources are batched first and
    preprocessed as a batch, and sources whose image sizes vary (folders) are preprocessed per
    image, in parallel, then batched.
    """
    in_memory = source.preprocessed(image_size) if repeat else None
    if in_memory is not None:
        return in_memory.dataset(shuffle_seed=shuffle_seed, repeat=repeat, skip=skip).batch(
            batch_size, drop_remainder=drop_remainder)
    ds = source.dataset(shuffle_seed=shuffle_seed, repeat=repeat, skip=skip)
    prep = lambda x, y: (preprocess(x, image_size), y)  # noqa: E731
    if source.info.fixed_shape:
        ds = ds.batch(batch_size, drop_remainder=drop_remainder).map(prep, num_parallel_calls=AUTOTUNE)
    else:
        ds = ds.map(prep, num_parallel_calls=AUTOTUNE).batch(batch_size, drop_remainder=drop_remainder)
    return ds


def first_images(source: Source, count: int, image_size: int, *,
                 shuffle_seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The first `count` images of `source` (in source order, or of a seeded shuffle),
    preprocessed: `(uint8 [N, S, S, 3], int64 labels [N])`, N <= count."""
    images, labels = [], []
    for x, y in preprocessed_batches(source, 256, image_size, shuffle_seed=shuffle_seed).take(-(-count // 256)):
        images.append(x.numpy())
        labels.append(y.numpy())
    return np.concatenate(images)[:count], np.concatenate(labels)[:count]


def training_progress(step: tf.Tensor, total_steps: int) -> tf.Tensor:
    """float32 min(step / total_steps, 1): a method's `progress`; the train step and the views
    of a phased feed (`ViewPhases`) compute it with this one function, so they agree on a phase."""
    return tf.minimum(tf.cast(step, tf.float32) / float(total_steps), 1.0)


def first_step_at(progress: float, total_steps: int) -> int:
    """The first step whose `training_progress` is at least `progress`, in the same float32
    arithmetic (ceil(progress * T) in float64 can be one step late: 0.3 * 10 = 3.0000000000000004),
    so a callback acting at a phase's start and the train step agree on that step."""
    total, goal = np.float32(total_steps), np.float32(progress)
    step = max(0, math.ceil(progress * total_steps) - 1)
    while np.float32(step) / total < goal:
        step += 1
    return step


@dataclasses.dataclass(frozen=True)
class ViewPhases:
    """Views that only one phase of a two-phase method uses, so the other phase skips making them.

    Attributes:
      switch: the progress (`training_progress`) at which the late phase starts.
      total_steps: the run's steps.
      early: `(part, view)` pairs made only while progress < `switch` (zeros after).
      late: `(part, view)` pairs made only from `switch` on (zeros before).
    """

    switch: float
    total_steps: int
    early: tuple[tuple[str, str], ...] = ()
    late: tuple[tuple[str, str], ...] = ()

    def needed(self, part: str, view: str, step: tf.Tensor) -> tf.Tensor | None:
        """bool scalar: whether `step` uses the view; None when every step does."""
        early = training_progress(step, self.total_steps) < self.switch
        if (part, view) in self.early:
            return early
        if (part, view) in self.late:
            return tf.logical_not(early)
        return None


@dataclasses.dataclass(frozen=True)
class FeedSpec:
    """How a method wants its data.

    Attributes:
      global_batch_size: labeled images per step over all replicas (B; with N replicas each
        trains on B / N of them, see `tfuda.engine.distribute.split_for_replicas`).
      uratio: unlabeled target images per step = uratio * B.
      image_size: model input size S.
      source_views, target_views: view names (see `Augment.views`); an empty target tuple
        makes a source-only feed.
      augment: the augmentation policies.
      seed: fixes data order and augmentation.
      on_device: leave augmentation to the train step (`apply_views`).
      phases: views only one phase of the method uses (None: every view every step).
    """

    global_batch_size: int
    uratio: int
    image_size: int
    source_views: tuple[str, ...]
    target_views: tuple[str, ...]
    augment: Augment = Augment()
    seed: int = 0
    on_device: bool = False
    phases: ViewPhases | None = None


def _part_seed(seed: tf.Tensor, part: int) -> tf.Tensor:
    return tf.random.experimental.stateless_fold_in(seed, part, alg=tf.random.Algorithm.PHILOX)


def apply_views(batch: dict, spec: FeedSpec, replica: tuple = (0, 1)) -> dict:
    """Replaces each part's uint8 `images` by the views the method asked for.

    Runs inside `Dataset.map` (data placement) or inside the train step (device placement).

    Args:
      batch: a feed element whose parts hold uint8 `images`.
      spec: the feed spec (views, augmentation).
      replica: `(index, count)`: the batch is replica `index`'s row-slice of a global batch
        split over `count` replicas (see `tfuda.engine.distribute.split_for_replicas`). Each
        image is then augmented exactly as in the global batch, so N replicas see the views
        one replica would see.
    """
    index, count = replica
    out = {"seed": batch["seed"]}
    for part_index, (part, names) in enumerate((("source", spec.source_views), ("target", spec.target_views))):
        if part not in batch:
            continue
        images = batch[part]["images"]
        rows = None
        if count > 1:
            local = batch_size(images)
            rows = (index * local, count * local)
        seed = _part_seed(batch["seed"], part_index)
        views = {}
        for name in names:  # each view has its own sub-seed: made alone, it is the same view
            make = lambda name=name: spec.augment.views(images, [name], seed, rows)[name]  # noqa: E731
            needed = spec.phases.needed(part, name, batch["seed"][1]) if spec.phases is not None else None
            views[name] = make() if needed is None else tf.cond(
                needed, make, lambda: tf.zeros(tf.shape(images), tf.float32))
        out[part] = {"labels": batch[part]["labels"], **views}
    return out


def target_labeled_share(batch_size: int, num_source: int | None, num_target_labeled: int | None) -> int:
    """Images per labeled batch drawn from SSDA's labeled target set: proportional to its size, >= 1."""
    if not num_source or not num_target_labeled:
        return max(1, batch_size // 8)
    return min(batch_size - 1, max(1, round(batch_size * num_target_labeled / (num_source + num_target_labeled))))


def _labeled_batches(source: Source, target_labeled: Source | None, spec: FeedSpec,
                     start_step: int) -> tf.data.Dataset:
    """The labeled part: B source images per step, or (B - E) source + E `target_labeled` images (SSDA)."""
    def batches(src: Source, size: int, seed: int) -> tf.data.Dataset:
        return preprocessed_batches(src, size, spec.image_size, shuffle_seed=seed, repeat=True,
                                    skip=start_step * size, drop_remainder=True)

    if target_labeled is None:
        return batches(source, spec.global_batch_size, spec.seed)
    share = target_labeled_share(spec.global_batch_size, source.info.num_examples, target_labeled.info.num_examples)
    return tf.data.Dataset.zip((batches(source, spec.global_batch_size - share, spec.seed),
                                batches(target_labeled, share, spec.seed + 2))).map(
        lambda a, b: (tf.concat([a[0], b[0]], 0), tf.concat([a[1], b[1]], 0)))


def make_feed(
    source: Source | None, target: Source | None, spec: FeedSpec, *, start_step: int = 0,
    target_labeled: Source | None = None,
) -> tf.data.Dataset:
    """The infinite, shuffled, prefetched training feed (see module docstring).

    Args:
      source: labeled source data; None (and `spec.source_views == ()`) for a source-free feed.
      target: unlabeled target data (labels, if any, are passed through for monitoring only);
        None or `spec.target_views == ()` for a source-only feed.
      spec: batch sizes, views, augmentation, seed.
      start_step: first step index (resume); the feed then equals an uninterrupted one from there.
      target_labeled: SSDA's few labeled target images, mixed into each labeled batch in
        proportion to their number (at least one per batch).
    """
    parts = {}
    if source is not None and spec.source_views:
        parts["source"] = _labeled_batches(source, target_labeled, spec, start_step)
    if target is not None and spec.target_views:
        unlabeled = spec.uratio * spec.global_batch_size
        parts["target"] = preprocessed_batches(
            target, unlabeled, spec.image_size, shuffle_seed=spec.seed + 1, repeat=True,
            skip=start_step * unlabeled, drop_remainder=True,
        )
    steps = tf.data.Dataset.range(start_step, 2**62)
    seed = tf.constant(spec.seed, tf.int64)

    def assemble(step, *batches):
        element = {"seed": tf.stack([seed, step])}
        for name, (images, labels) in zip(parts, batches):
            element[name] = {"images": images, "labels": labels}
        return element

    plain = tf.autograph.experimental.do_not_convert  # Python control flow only: no AutoGraph pass to pay for
    feed = tf.data.Dataset.zip((steps, *parts.values())).map(plain(assemble))
    if not spec.on_device:
        feed = feed.map(plain(lambda b: apply_views(b, spec)), num_parallel_calls=AUTOTUNE)
    return feed.prefetch(AUTOTUNE)
