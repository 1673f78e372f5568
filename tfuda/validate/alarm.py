"""The collapse alarm: target predictions that pile onto few classes, read without labels.

Thresholds chosen from 15 finished runs on the built-in pair (`python bench/collapse.py`; the
table is in docs/benchmarks.md): every SHOT run that fell to 8-11% accuracy had the entropy of
its mean target prediction at 0.65-0.75 x log K, every working run (AdaMatch, TENT, the oracle;
0.38-0.98 accuracy) 0.89-1.0; one class took at most 3.4x its source share in a run that was not
collapsed. The alarm fires when the entropy of the mean prediction falls below 0.8 x that of the
expected class shares, or when a class takes more than 4x its expected share.

Expected shares: the source's class proportions, and in a run from an existing model, the larger
of those and the target's estimated from that model (`tfuda.validate.sample.TargetValidation`),
so that a target whose proportions differ from the source's (label shift) does not raise the
alarm for a model that follows them.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from tfuda.validate.entropy import entropies

MIN_SPREAD = 0.8
"""Alarm when H(mean prediction) < MIN_SPREAD x H(expected shares)."""
MAX_SHARE_RATIO = 4.0
"""Alarm when a class's share of the predictions exceeds MAX_SHARE_RATIO x its expected share."""


def concentration(probs: np.ndarray, expected: np.ndarray | None = None) -> tuple[float, float, list[int]]:
    """`(H(mean p) / H(expected), largest predicted-share / expected-share ratio, classes above
    MAX_SHARE_RATIO)`.

    Args:
      probs: float `[N, K]` target predictions.
      expected: `[K]` expected class shares (uniform when None); the entropy is that of
        `expected` normalised to sum to 1.
    """
    probs = np.asarray(probs, np.float64)
    classes = probs.shape[1]
    expected = np.full(classes, 1.0 / classes) if expected is None else np.asarray(expected, np.float64)
    reference = float(entropies((expected / expected.sum())[None])[0])
    spread = float(entropies(probs.mean(axis=0, keepdims=True))[0]) / max(reference, 1e-12)
    shares = np.bincount(probs.argmax(axis=1), minlength=classes) / len(probs)
    ratios = shares / np.clip(expected, 1e-12, None)
    return spread, float(ratios.max()), [int(k) for k in np.flatnonzero(ratios > MAX_SHARE_RATIO)]


def collapse_alarm(probs: np.ndarray, expected: np.ndarray | None, class_names: list[str]) -> str | None:
    """A one-line description of the collapse, or None when the predictions are spread enough
    (`expected`: as in `concentration`)."""
    spread, ratio, crowded = concentration(probs, expected)
    if spread >= MIN_SPREAD and not crowded:
        return None
    shares = np.bincount(np.asarray(probs).argmax(axis=1), minlength=len(class_names)) / len(probs)
    named = ", ".join(f"'{class_names[k]}' {shares[k]:.0%}" for k in (crowded or [int(shares.argmax())]))
    return (f"target predictions collapse onto {named} of the target sample (entropy of the mean prediction "
            f"{spread:.2f} x that of the expected class shares; alarm below {MIN_SPREAD} or above "
            f"{MAX_SHARE_RATIO:g}x a class's expected share)")


def model_alarmed(metrics: dict[str, Any]) -> bool:
    """Whether a run's model (the selected step's, else the last one's) raised the collapse alarm,
    from its `metrics.json` dict."""
    model_step = (metrics.get("selection") or {}).get("step", metrics.get("steps"))
    return any(alarm["step"] == model_step for alarm in metrics.get("alarms") or [])
