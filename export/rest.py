"""TF Serving's REST predict format, answered by a loaded signature (for tests and local checks).

TF Serving's `POST /v1/models/NAME:predict` takes either
  * row format `{"instances": [<image>, ...]}` -> `{"predictions": [{<output>: ...}, ...]}`, or
  * columnar format `{"inputs": {"images": [...]}}` or `{"inputs": [...]}` ->
    `{"outputs": {<output>: [...]}}`,
optionally with `"signature_name"`. This module applies the same rules to a signature loaded
with `tf.saved_model.load`, so the request/response contract is testable without the server.
A request the signature cannot take is a `RequestError` (TF Serving's HTTP 400) that says why:
an unknown signature, pixels that are not whole numbers in 0..255 for a uint8 input (never
truncated), the wrong rank, size or channels, or an image over `MAX_IMAGE_PIXELS`.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from export.serving import INPUT_KEY
from pipelines.errors import UserError
from pipelines.limits import MAX_IMAGE_PIXELS


class RequestError(UserError):
    """A predict request the signature cannot answer (TF Serving answers HTTP 400)."""


def _images(body: Any) -> tuple[Any, bool]:
    """`(images, row format)` of a request body."""
    if not isinstance(body, dict) or not ("instances" in body or "inputs" in body):
        raise RequestError('request body must be a JSON object with "instances" or "inputs"')
    if "instances" in body:
        images = body["instances"]
        if isinstance(images, list) and images and isinstance(images[0], dict):
            if any(INPUT_KEY not in instance for instance in images):
                raise RequestError(f'every instance object needs the key "{INPUT_KEY}"')
            images = [instance[INPUT_KEY] for instance in images]
        return images, True
    inputs = body["inputs"]
    if isinstance(inputs, dict):
        if INPUT_KEY not in inputs:
            raise RequestError(f'"inputs" needs the key "{INPUT_KEY}", got {sorted(inputs)}')
        inputs = inputs[INPUT_KEY]
    return inputs, False


def _tensor(images: Any, spec: tf.TensorSpec) -> tf.Tensor:
    """`images` as a tensor of `spec`, or a RequestError saying what does not fit."""
    try:
        array = np.asarray(images, dtype=np.float64)
    except (ValueError, TypeError):
        raise RequestError(f'"{INPUT_KEY}" must be a nested list of numbers of one shape '
                           "(every image the same height, width and channels)") from None
    shape = spec.shape.as_list()
    if array.ndim != len(shape) or array.shape[0] == 0:
        raise RequestError(f'"{INPUT_KEY}" must be a non-empty batch of shape {_shape_text(shape)}, '
                           f"got shape {list(array.shape)}")
    for axis, (want, got) in enumerate(zip(shape, array.shape)):
        if want is not None and want != got:
            raise RequestError(f'"{INPUT_KEY}" must have shape {_shape_text(shape)}, got {list(array.shape)} '
                               f"(axis {axis})")
    if array.ndim == 4 and not 1 <= array.shape[-1] <= 4:
        raise RequestError(f"images need 1 to 4 channels, got {array.shape[-1]}")
    if array.ndim == 4 and array.shape[1] * array.shape[2] > MAX_IMAGE_PIXELS:
        raise RequestError(f"images of {array.shape[2]}x{array.shape[1]} are over {MAX_IMAGE_PIXELS} pixels")
    if not np.isfinite(array).all():
        raise RequestError("pixel values must be finite numbers")
    if spec.dtype == tf.uint8:
        if array.min() < 0 or array.max() > 255 or not np.array_equal(array, np.round(array)):
            raise RequestError("this signature takes uint8 pixels, whole numbers 0..255; for float32 images 0..255 "
                               'already preprocessed, use "signature_name": "serving_preprocessed"')
    return tf.constant(array.astype(spec.dtype.as_numpy_dtype))


def _shape_text(shape: list) -> str:
    return "[" + ", ".join("N" if i == 0 else ("any" if d is None else str(d)) for i, d in enumerate(shape)) + "]"


def predict_rest(loaded: Any, body: dict) -> dict:
    """Answers a TF Serving REST predict request body with `loaded`'s signature.

    Args:
      loaded: the result of `tf.saved_model.load(version_dir)`.
      body: the decoded JSON request.

    Returns:
      The JSON-serialisable response TF Serving would send.

    Raises:
      RequestError: a request the signature cannot take (see the module docstring).
    """
    name = body.get("signature_name", "serving_default") if isinstance(body, dict) else None
    if name not in loaded.signatures:
        raise RequestError(f"unknown signature_name {name!r}: this model has {sorted(loaded.signatures)}")
    signature = loaded.signatures[name]
    if INPUT_KEY not in signature.structured_input_signature[1]:
        raise RequestError(f"signature {name!r} takes no images")
    images, row_format = _images(body)
    tensor = _tensor(images, signature.structured_input_signature[1][INPUT_KEY])
    outputs = {key: value.numpy().tolist() for key, value in signature(**{INPUT_KEY: tensor}).items()}
    if row_format:
        count = len(next(iter(outputs.values())))
        return {"predictions": [{key: value[i] for key, value in outputs.items()} for i in range(count)]}
    return {"outputs": outputs}
