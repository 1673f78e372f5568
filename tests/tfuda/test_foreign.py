"""`tfuda.as_classifier`: any Keras classifier in tfuda's form, three ways to name the embedding."""

import keras
import numpy as np
import pytest

from pipelines.errors import UserError
from tfuda.models.common import EMBEDDING, LOGITS, embedding_size_of, num_classes_of
from tfuda.models.foreign import as_classifier

L = keras.layers
IMAGES = np.random.default_rng(0).uniform(0, 255, (3, 12, 12, 3)).astype(np.float32)


def sequential(softmax: bool = True) -> keras.Model:
    return keras.Sequential([
        keras.Input((12, 12, 3)), L.Rescaling(1 / 255, name="scale"), L.Conv2D(4, 3, activation="relu", name="conv"),
        L.GlobalAveragePooling2D(name="pool"), L.Dense(6, activation="relu", name="fc"), L.Dropout(0.2),
        L.Dense(3), *([L.Softmax()] if softmax else [])])


@pytest.mark.parametrize("embedding, width", [(None, 6), ("fc", 6), ("pool", 4)])
def test_the_embedding_is_where_it_is_named_and_outputs_are_unchanged(embedding, width):
    model = sequential()
    converted = as_classifier(model, embedding)
    assert {EMBEDDING, LOGITS} <= {layer.name for layer in converted.layers}
    assert embedding_size_of(converted) == width and num_classes_of(converted) == 3
    probs = keras.ops.softmax(converted(IMAGES, training=False))
    np.testing.assert_allclose(probs, model(IMAGES, training=False), atol=1e-5)
    assert converted.get_layer("conv") is model.get_layer("conv")  # shared, so training changes the model


def test_an_unbuilt_sequential_takes_image_size():
    model = keras.Sequential([L.Conv2D(4, 3), L.Flatten(), L.Dense(2)])
    assert as_classifier(model, image_size=10).input_shape == (None, 10, 10, 3)


@pytest.mark.parametrize("head", [L.Dense(3), L.Dense(3, activation="softmax"),
                                  keras.Sequential([L.Dense(5, activation="relu"), L.Dense(3)])],
                         ids=["dense", "dense-softmax", "sequential"])
def test_a_backbone_head_pair(head):
    backbone = keras.Sequential([keras.Input((12, 12, 3)), L.Conv2D(4, 3), L.GlobalAveragePooling2D()])
    converted = as_classifier((backbone, head))
    assert converted.output_shape == (None, 3) and embedding_size_of(converted) == 4
    assert converted.get_layer(LOGITS).trainable


def test_a_tfuda_model_is_returned_as_it_is():
    from tfuda.models import build_model

    model = build_model("cnn-small", 4, 16)
    assert as_classifier(model) is model


@pytest.mark.parametrize("make, message", [
    (lambda: as_classifier(sequential(), "nope"), "embedding='nope' is not a layer of the model; its layers are "
                                                   "scale, conv, pool, fc"),
    (lambda: as_classifier(keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(3, 3), L.GlobalAveragePooling2D()])),
     "cannot find the classifier head"),
    (lambda: as_classifier(keras.Sequential([keras.Input((8, 8, 3)), L.Flatten(), L.Dense(3, activation="relu")])),
     "has activation relu"),
    (lambda: as_classifier(keras.Sequential([L.Dense(3)])), r"square RGB images \[batch, S, S, 3\]"),
    (lambda: as_classifier(keras.Sequential([keras.Input((8, 6, 3)), L.Flatten(), L.Dense(3)])), "square RGB"),
    (lambda: as_classifier((keras.Sequential([keras.Input((8, 8, 3)), L.Conv2D(3, 3)]), L.Dense(2))),
     r"backbone must output features \[batch, D\]"),
    (lambda: as_classifier((keras.Sequential([L.Flatten()]), L.Dense(2))), "no input shape: give image_size"),
    (lambda: as_classifier((keras.Sequential([keras.Input((8, 8, 3)), L.Flatten()]),
                            keras.Sequential([L.Dense(2), L.Softmax()]))), "head ends with a softmax"),
    (lambda: as_classifier("model.keras"), "expected a keras.Model or a"),
], ids=["unknown-layer", "no-dense", "relu-head", "no-input", "not-square", "4d-features", "no-size",
        "softmax-head", "not-a-model"])
def test_models_without_an_identifiable_embedding_or_head_are_refused(make, message):
    with pytest.raises(UserError, match=message):
        make()


def test_a_head_that_is_not_a_chain_is_refused():
    inputs = keras.Input((8, 8, 3))
    features = L.GlobalAveragePooling2D(name="features")(inputs)
    side = L.Dense(2, name="side")(L.Flatten()(inputs))
    hidden = L.Dense(4, name="hidden")(features)
    outputs = L.Dense(3)(L.Concatenate()([hidden, side]))
    model = keras.Model(inputs, outputs)
    with pytest.raises(UserError, match="do not form a chain|does not compute what the model computes"):
        as_classifier(model, "features")
