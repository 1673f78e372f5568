"""Runs every exported artifact in its own runtime and compares it with the Keras model.

Report schema (`EXPORT/reports/NAME/<version>.json`):

    {"version": int, "name": str, "run": str, "eval_set": str, "num_images": int,
     "keras": {"accuracy": float | null, "latency_ms_p50": float},
     "artifacts": [{"path": str, "format": "savedmodel" | "tflite" | "onnx",
                    "precision": "float32" | "float16" | "int8", "bytes": int,
                    "accuracy": float | null, "agreement": float, "max_abs_prob_diff": float,
                    "latency_ms_p50": float, "min_agreement": float, "passed": bool}],
     "passed": bool}

`accuracy` is top-1 on the evaluation set (null when it has no labels), `agreement` the
fraction of images whose top-1 class equals the Keras model's, `latency_ms_p50` the median
single-image CPU latency over `LATENCY_RUNS` calls after a warm-up.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

LATENCY_RUNS = 50
Runner = Callable[[np.ndarray], np.ndarray]
"""uint8 `[B, S, S, 3]` preprocessed images -> float32 probabilities `[B, K]`."""


@dataclasses.dataclass
class ArtifactCheck:
    path: str
    format: str
    precision: str
    bytes: int
    accuracy: float | None
    agreement: float
    max_abs_prob_diff: float
    latency_ms_p50: float
    min_agreement: float
    passed: bool


def latency_ms(runner: Runner, image: np.ndarray, runs: int = LATENCY_RUNS) -> float:
    """Median wall time in ms of `runner` on one image `[1, S, S, 3]`, after 3 warm-up calls."""
    for _ in range(3):
        runner(image)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        runner(image)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1000)


def predict_all(runner: Runner, images: np.ndarray, batch: int = 64) -> np.ndarray:
    return np.concatenate([np.asarray(runner(images[i:i + batch]), np.float32)
                           for i in range(0, len(images), batch)])


def accuracy(probs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float((probs.argmax(axis=1) == labels).mean())


def check_artifact(path: str, fmt: str, precision: str, runner: Runner, images: np.ndarray,
                   labels: np.ndarray | None, reference: np.ndarray, min_agreement: float) -> ArtifactCheck:
    """Runs one artifact on `images` and compares its probabilities with `reference`.

    Raises:
      ValueError: the artifact's outputs are not finite or have the wrong shape.
    """
    probs = predict_all(runner, images)
    if probs.shape != reference.shape:
        raise ValueError(f"{path}: output shape {probs.shape} != Keras {reference.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{path}: outputs are not finite (NaN/inf); the artifact is broken")
    agreement = float((probs.argmax(axis=1) == reference.argmax(axis=1)).mean())
    size = os.path.getsize(path) if os.path.isfile(path) else sum(
        f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return ArtifactCheck(
        path=path, format=fmt, precision=precision, bytes=int(size),
        accuracy=accuracy(probs, labels), agreement=agreement,
        max_abs_prob_diff=float(np.abs(probs - reference).max()),
        latency_ms_p50=latency_ms(runner, images[:1]), min_agreement=min_agreement,
        passed=agreement >= min_agreement)


def format_table(report: dict) -> str:
    """A plain-text table of a report, one row per artifact plus the Keras reference."""
    header = f"{'artifact':<34} {'size':>10} {'accuracy':>9} {'agree':>7} {'max|dp|':>9} {'p50 ms':>8}  ok"
    keras = report["keras"]
    acc = lambda a: "n/a" if a is None else f"{a:.4f}"  # noqa: E731
    rows = [header, "-" * len(header),
            f"{'keras (reference)':<34} {'':>10} {acc(keras['accuracy']):>9} {'':>7} {'':>9} "
            f"{keras['latency_ms_p50']:>8.2f}"]
    for a in report["artifacts"]:
        label = f"{a['format']} {a['precision']}"
        rows.append(f"{label:<34} {a['bytes'] / 1024:>8.0f}Ki {acc(a['accuracy']):>9} {a['agreement']:>7.4f} "
                    f"{a['max_abs_prob_diff']:>9.5f} {a['latency_ms_p50']:>8.2f}  {'yes' if a['passed'] else 'NO'}")
    return "\n".join(rows)
