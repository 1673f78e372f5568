"""Any Keras classifier in tfuda's form: a layer named `embedding` (the features the methods
align, cluster or contrast) followed by a head named `logits` that outputs logits.

Three ways to say where the embedding is:

* nothing: the model's **last `Dense` layer** is the head (it may be followed only by
  `Softmax`/`Activation` layers); its input is the embedding;
* `embedding="layer_name"`: the output of that layer is the embedding; the layers after it
  (a chain, as in a `Sequential` model) are the head;
* a `(backbone, head)` pair: backbone maps images to features `[B, D]`, head maps them to logits.

Models take float32 images `[B, S, S, 3]` with values 0..255 (put any scaling inside the model,
e.g. a `Rescaling` layer). The layers are shared with the given model, so training changes them
in place; the last `Dense` layer is copied as a linear layer named `logits` (a softmax there
is dropped: tfuda's losses and exports apply it themselves). The rebuilt model is checked to
compute what the given one computes.
"""

from __future__ import annotations

from typing import Sequence

import keras
import numpy as np

from pipelines.errors import UserError
from tfuda.models.common import EMBEDDING, LOGITS, image_input

ACTIVATIONS = (keras.layers.Softmax, keras.layers.Activation)
TOLERANCE = 1e-4
"""Largest output difference between a model and its rebuilt form (float32 round-off)."""


def _is_softmax(layer: keras.layers.Layer) -> bool:
    activation = getattr(layer, "activation", None)
    return isinstance(layer, keras.layers.Softmax) or activation is keras.activations.softmax


def _linear_copy(dense: keras.layers.Dense, name: str, origin: str) -> keras.layers.Dense:
    """A Dense layer computing `dense` without its activation (weights copied once built)."""
    if dense.activation not in (keras.activations.linear, keras.activations.softmax):
        raise UserError(f"{origin}: the head '{dense.name}' has activation {dense.activation.__name__}; it must output "
                        "logits (no activation) or probabilities (softmax)")
    return keras.layers.Dense(dense.units, use_bias=dense.use_bias, name=name, dtype="float32")


def _input_size(model: keras.Model, image_size: int | None, origin: str) -> int:
    """The square input side of `model`, building an unbuilt `Sequential` at `image_size`."""
    if not getattr(model, "inputs", None) and isinstance(model, keras.Sequential) and image_size:
        model.build((None, image_size, image_size, 3))
    shape = model.inputs[0].shape if getattr(model, "inputs", None) else None
    if shape is None or len(shape) != 4 or shape[-1] != 3 or shape[1] is None or shape[1] != shape[2]:
        raise UserError(f"{origin}: the model must take square RGB images [batch, S, S, 3] (it takes "
                        f"{None if shape is None else list(shape)}); give a functional or Sequential model "
                        "with an input shape (or image_size), or a (backbone, head) pair")
    return int(shape[1])


def _head_layers(model: keras.Model, embedding: str | None, origin: str
                 ) -> tuple[list, keras.layers.Dense, bool]:
    """`(layers after the embedding up to the last Dense, that Dense, whether the model outputs
    probabilities)`, checked to be a chain."""
    layers = [layer for layer in model.layers if not isinstance(layer, keras.layers.InputLayer)]
    if embedding is None:
        dense = [i for i, layer in enumerate(layers) if isinstance(layer, keras.layers.Dense)]
        start = dense[-1] if dense else len(layers)
    else:
        names = [layer.name for layer in layers]
        if embedding not in names:
            raise UserError(f"{origin}: embedding='{embedding}' is not a layer of the model; its layers are "
                            f"{', '.join(names)}")
        start = names.index(embedding) + 1
    tail = layers[start:]
    end = len(tail)
    while end and isinstance(tail[end - 1], ACTIVATIONS):
        end -= 1
    trailing, tail = tail[end:], tail[:end]
    if not tail or not isinstance(tail[-1], keras.layers.Dense) or not all(
            _is_softmax(layer) or layer.activation is keras.activations.linear for layer in trailing):
        raise UserError(f"{origin}: cannot find the classifier head: the last Dense layer must be the output (or be "
                        "followed only by Softmax/Activation layers); name the embedding layer or give a "
                        "(backbone, head) pair")
    previous = layers[start - 1].output if embedding is not None else tail[0].input
    for layer in tail:
        if layer.input is not previous:
            raise UserError(f"{origin}: the layers after embedding='{embedding}' do not form a chain (layer "
                            f"'{layer.name}' takes other inputs); give a (backbone, head) pair instead")
        previous = layer.output
    return tail[:-1], tail[-1], any(_is_softmax(layer) for layer in [tail[-1], *trailing])


def _check_same(original: keras.Model, rebuilt: keras.Model, probabilities: bool, origin: str) -> None:
    """Raises UserError unless `rebuilt` (logits) computes `original`'s outputs on random images."""
    size = int(rebuilt.input_shape[1])
    images = np.random.default_rng(0).uniform(0, 255, (2, size, size, 3)).astype(np.float32)
    expected = np.asarray(original(images, training=False), np.float32)
    logits = np.asarray(rebuilt(images, training=False), np.float32)
    got = np.asarray(keras.ops.softmax(logits), np.float32) if probabilities else logits
    if expected.shape != got.shape or not np.allclose(expected, got, atol=TOLERANCE, rtol=TOLERANCE):
        raise UserError(f"{origin}: the model rebuilt around its head does not compute what the model computes "
                        "(layers after the head, or inputs that skip it?); give a (backbone, head) pair")


def _from_model(model: keras.Model, embedding: str | None, image_size: int | None, origin: str) -> keras.Model:
    names = {layer.name for layer in model.layers}
    if embedding is None and EMBEDDING in names and LOGITS in names:
        return model
    _input_size(model, image_size, origin)
    before, dense, probabilities = _head_layers(model, embedding, origin)
    logits_layer = _linear_copy(dense, LOGITS if not before else f"{dense.name}_logits", origin)
    features = keras.layers.Identity(name=EMBEDDING)(before[0].input if before else dense.input)
    if before:  # the head is a small Sequential model named `logits`
        logits = keras.Sequential([keras.Input(features.shape[1:]), *before, logits_layer], name=LOGITS)(features)
    else:
        logits = logits_layer(features)
    logits_layer.set_weights(dense.get_weights())
    rebuilt = keras.Model(model.inputs[0], logits, name=f"{model.name}_classifier")
    _check_same(model, rebuilt, probabilities, origin)
    return rebuilt


def _from_parts(backbone: keras.layers.Layer, head: keras.layers.Layer, image_size: int | None,
                origin: str) -> keras.Model:
    if not isinstance(backbone, keras.layers.Layer) or not isinstance(head, keras.layers.Layer):
        raise UserError(f"{origin}: a (backbone, head) pair must be two Keras layers or models, got "
                        f"({type(backbone).__name__}, {type(head).__name__})")
    shape = getattr(backbone, "inputs", None) and backbone.inputs[0].shape
    size = image_size or (int(shape[1]) if shape and len(shape) == 4 and shape[1] else None)
    if size is None:
        raise UserError(f"{origin}: the backbone has no input shape: give image_size")
    images = image_input(size)
    features = backbone(images)
    if len(features.shape) != 2:
        raise UserError(f"{origin}: the backbone must output features [batch, D], it outputs {list(features.shape)}: "
                        "end it with a pooling or Flatten layer")
    embedding = keras.layers.Identity(name=EMBEDDING)(features)
    if isinstance(head, keras.layers.Dense):
        logits_layer = _linear_copy(head, LOGITS, origin)
        logits = logits_layer(embedding)
        if head.built:
            logits_layer.set_weights(head.get_weights())
    else:
        last = head.layers[-1] if getattr(head, "layers", None) else head
        if _is_softmax(last):
            raise UserError(f"{origin}: the head ends with a softmax; give a head that outputs logits")
        logits = keras.Sequential([keras.Input(features.shape[1:]), head], name=LOGITS)(embedding)
    return keras.Model(images, logits, name="classifier")


def as_classifier(model: keras.Model | Sequence[keras.layers.Layer], embedding: str | None = None, *,
                  image_size: int | None = None, origin: str = "model") -> keras.Model:
    """`model` in tfuda's form (see the module docstring); a tfuda model is returned as it is.

    Args:
      model: a functional or Sequential `keras.Model` (images float32 `[B, S, S, 3]`, 0..255 ->
        logits or probabilities), or a `(backbone, head)` pair of layers/models.
      embedding: the name of the layer whose output is the embedding (default: the input of the
        last Dense layer); not with a pair.
      image_size: S, for a model or backbone that has no input shape yet.
      origin: how errors name the model (e.g. `--init 'model.keras'`).

    Returns:
      a functional `keras.Model` images -> logits `[B, K]` with layers `embedding` and `logits`.

    Raises:
      UserError (a ValueError): no square RGB input, no head to be found, a head with another
        activation, or a rebuilt model that does not compute what `model` computes.
    """
    if isinstance(model, (tuple, list)):
        if len(model) != 2 or embedding is not None:
            raise UserError(f"{origin}: give a (backbone, head) pair, or a model and the name of its embedding layer")
        return _from_parts(model[0], model[1], image_size, origin)
    if not isinstance(model, keras.Model):
        raise UserError(f"{origin}: expected a keras.Model or a (backbone, head) pair, got {type(model).__name__}")
    return _from_model(model, embedding, image_size, origin)
