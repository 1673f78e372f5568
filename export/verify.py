"""Runs every exported artifact in its own runtime and compares it with the Keras model.

Report schema (`EXPORT/reports/NAME/<version>.json`):

    {"version": int, "name": str, "run": str, "eval_set": str, "num_images": int,
     "keras": {"accuracy": float | null, "latency_ms_p50": float},
     "artifacts": [{"path": str, "format": "savedmodel" | "tflite" | "onnx",
                    "precision": "float32" | "float16" | "int8", "bytes": int,
                    "accuracy": float | null, "agreement": float, "max_abs_prob_diff": float,
                    "latency_ms_p50": float, "min_agreement": float,
                    "max_prob_diff_allowed": float | null, "passed": bool}],
     "passed": bool}

`accuracy` is top-1 on the evaluation set (null when it has no labels), `agreement` the
fraction of images whose top-1 class equals the Keras model's, `latency_ms_p50` the median
single-image CPU latency over `LATENCY_RUNS` calls after a warm-up. For int8, a top-1 class the
Keras model scores within `INT8_RESOLUTION` (1/256, the step of an int8 softmax output) of its
own top-1 also agrees: a tie that the output's rounding decides, not a different answer. (On
near-uncertain models every int8 disagreement was such a tie: Keras gaps of at most 0.0052 on a
2-step model whose strict agreement was 0.93-0.97.)

An artifact passes when its agreement is at least `min_agreement` and, for a float artifact,
every probability is within `MAX_PROB_DIFF[precision]` of the Keras model's. Top-1 agreement
alone would pass a float artifact whose probabilities are off (a wrong resize or scaling often
keeps the argmax), and a float artifact computes the same function as the Keras model: float32
only differs by the rounding of other kernels (measured: max|dp| about 5e-7 for TFLite and ONNX),
float16 by its weights' 11-bit mantissa (relative error 2^-11 ~ 5e-4 per weight; measured 4e-4).
The limits leave 200x and 50x headroom over those and stay far below the 0.1-1 that a
preprocessing mismatch gives. int8 is an approximation by design: judged by agreement only.
"""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path
from typing import Callable

import numpy as np

from tfuda.inference import predict_batches

LATENCY_RUNS = 50
PREDICT_BATCH = 64
"""Images per call when an artifact (and the Keras model) predicts the evaluation set."""
MAX_PROB_DIFF = {"float32": 1e-4, "float16": 2e-2}
"""Largest allowed |p_artifact - p_keras| per float precision (see the module docstring)."""
INT8_RESOLUTION = 1.0 / 256
"""Keras probability gap within which an int8 artifact's top-1 class counts as agreeing."""


def agreement(probs: np.ndarray, reference: np.ndarray, tie: float = 0.0) -> float:
    """The fraction of images whose top-1 class under `probs` `[N, K]` is the top-1 of `reference`
    `[N, K]`, or one `reference` scores within `tie` of its top-1."""
    rows = np.arange(len(reference))
    chosen = reference[rows, probs.argmax(axis=1)]
    return float((chosen >= reference.max(axis=1) - tie).mean())
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
    max_prob_diff_allowed: float | None
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


def accuracy(probs: np.ndarray, labels: np.ndarray | None) -> float | None:
    if labels is None:
        return None
    return float((probs.argmax(axis=1) == labels).mean())


def check_artifact(path: str, fmt: str, precision: str, runner: Runner, images: np.ndarray,
                   labels: np.ndarray | None, reference: np.ndarray, min_agreement: float) -> ArtifactCheck:
    """Runs one artifact on `images` and compares its probabilities with `reference` (passed:
    agreement >= `min_agreement` and, for a float precision, max|dp| <= `MAX_PROB_DIFF`).

    Raises:
      ValueError: the artifact's outputs are not finite or have the wrong shape.
    """
    probs = predict_batches(runner, images, PREDICT_BATCH)
    if probs.shape != reference.shape:
        raise ValueError(f"{path}: output shape {probs.shape} != Keras {reference.shape}")
    if not np.isfinite(probs).all():
        raise ValueError(f"{path}: outputs are not finite (NaN/inf); the artifact is broken")
    agreed = agreement(probs, reference, INT8_RESOLUTION if precision == "int8" else 0.0)
    diff = float(np.abs(probs - reference).max())
    allowed = MAX_PROB_DIFF.get(precision)
    size = os.path.getsize(path) if os.path.isfile(path) else sum(
        f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    return ArtifactCheck(
        path=path, format=fmt, precision=precision, bytes=int(size),
        accuracy=accuracy(probs, labels), agreement=agreed,
        max_abs_prob_diff=diff, latency_ms_p50=latency_ms(runner, images[:1]), min_agreement=min_agreement,
        max_prob_diff_allowed=allowed, passed=agreed >= min_agreement and (allowed is None or diff <= allowed))


def why_failed(check: ArtifactCheck) -> str:
    """What a failed check missed: `agreement 0.9500 < 0.99`, `max|dp| 0.2000 > 0.0001`."""
    reasons = []
    if check.agreement < check.min_agreement:
        reasons.append(f"agreement {check.agreement:.4f} < {check.min_agreement}")
    if check.max_prob_diff_allowed is not None and check.max_abs_prob_diff > check.max_prob_diff_allowed:
        reasons.append(f"max|dp| {check.max_abs_prob_diff:.4f} > {check.max_prob_diff_allowed}")
    return ", ".join(reasons)


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
