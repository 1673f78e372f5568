"""TF Serving's REST predict format, answered by a loaded signature (for tests and local checks).

TF Serving's `POST /v1/models/NAME:predict` takes either
  * row format `{"instances": [<image>, ...]}` -> `{"predictions": [{<output>: ...}, ...]}`, or
  * columnar format `{"inputs": {"images": [...]}}` or `{"inputs": [...]}` ->
    `{"outputs": {<output>: [...]}}`,
optionally with `"signature_name"`. This module applies the same rules to a signature loaded
with `tf.saved_model.load`, so the request/response contract is testable without the server.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import tensorflow as tf

from export.serving import INPUT_KEY


def predict_rest(loaded: Any, body: dict) -> dict:
    """Answers a TF Serving REST predict request body with `loaded`'s signature.

    Args:
      loaded: the result of `tf.saved_model.load(version_dir)`.
      body: the decoded JSON request.

    Returns:
      The JSON-serialisable response TF Serving would send.
    """
    signature = loaded.signatures[body.get("signature_name", "serving_default")]
    spec = signature.structured_input_signature[1][INPUT_KEY]
    if "instances" in body:
        images = body["instances"]
        if images and isinstance(images[0], dict):
            images = [instance[INPUT_KEY] for instance in images]
        row_format = True
    elif "inputs" in body:
        inputs = body["inputs"]
        images = inputs[INPUT_KEY] if isinstance(inputs, dict) else inputs
        row_format = False
    else:
        raise ValueError('request body needs "instances" or "inputs"')
    tensor = tf.constant(np.asarray(images, dtype=spec.dtype.as_numpy_dtype))
    outputs = {key: value.numpy().tolist() for key, value in signature(**{INPUT_KEY: tensor}).items()}
    if row_format:
        count = len(next(iter(outputs.values())))
        return {"predictions": [{key: value[i] for key, value in outputs.items()} for i in range(count)]}
    return {"outputs": outputs}
