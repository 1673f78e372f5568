"""Artifact verification: float artifacts must match the Keras probabilities, not only the top-1 class."""

import numpy as np
import pytest

from export.verify import MAX_PROB_DIFF, check_artifact, why_failed


@pytest.fixture
def reference():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(40, 5)) * 3
    return (np.exp(logits) / np.exp(logits).sum(1, keepdims=True)).astype(np.float32)


def flattened(probs):
    """The same top-1 class everywhere, probabilities pulled halfway to uniform."""
    return (0.5 * probs + 0.5 / probs.shape[1]).astype(np.float32)


def check(tmp_path, reference, runner, precision):
    path = tmp_path / "model.bin"
    path.write_bytes(b"x")
    images = np.zeros((len(reference), 4, 4, 3), np.uint8)
    return check_artifact(str(path), "tflite", precision, runner, images, None, reference, 0.99)


@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_a_float_artifact_with_other_probabilities_fails_although_top1_agrees(tmp_path, reference, precision):
    result = check(tmp_path, reference, lambda x: flattened(reference)[:len(x)] if len(x) > 1 else reference[:1],
                   precision)
    assert result.agreement == 1.0
    assert not result.passed and result.max_abs_prob_diff > MAX_PROB_DIFF[precision]
    assert "max|dp|" in why_failed(result)


def test_rounding_differences_pass(tmp_path, reference):
    noisy = reference + np.float32(2e-6)
    result = check(tmp_path, reference, lambda x: noisy[:len(x)], "float32")
    assert result.passed and result.max_prob_diff_allowed == MAX_PROB_DIFF["float32"]


def test_int8_is_judged_by_agreement_only(tmp_path, reference):
    result = check(tmp_path, reference, lambda x: flattened(reference)[:len(x)], "int8")
    assert result.passed and result.max_prob_diff_allowed is None


def test_int8_agreement_forgives_a_tie_its_rounding_decides_but_not_another_answer(tmp_path):
    from export.verify import INT8_RESOLUTION

    # Keras: class 0 by 0.002 on the first image (a tie at int8's 1/256 resolution), by 0.4 on the second.
    reference = np.array([[0.350, 0.348, 0.302], [0.7, 0.3, 0.0]], np.float32)
    flipped = np.array([[0.34, 0.35, 0.31], [0.3, 0.7, 0.0]], np.float32)
    tie_only = np.array([[0.34, 0.35, 0.31], [0.7, 0.3, 0.0]], np.float32)
    assert 0.002 < INT8_RESOLUTION
    int8 = check(tmp_path, reference, lambda x: tie_only[:len(x)], "int8")
    assert int8.agreement == 1.0
    assert check(tmp_path, reference, lambda x: flipped[:len(x)], "int8").agreement == 0.5
    # A float artifact computes the same function: there the tie counts as a disagreement.
    assert check(tmp_path, reference, lambda x: tie_only[:len(x)], "float16").agreement == 0.5
