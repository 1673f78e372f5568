import keras
import numpy as np

from tfuda.models import build_model


def test_instance_normalised_input_ignores_colour_cast_brightness_and_contrast(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    # Per channel: contrast x0.5..x0.9 and a shift, as a colour cast on a darker image.
    recoloured = images * np.float32([0.5, 0.7, 0.9]) + np.float32([20.0, 60.0, 5.0])
    normalised, scaled = build_model("cnn-small-in", 10, 16), build_model("cnn-small", 10, 16)
    np.testing.assert_allclose(normalised(recoloured), normalised(images), atol=1e-4)
    assert np.abs(np.asarray(scaled(recoloured)) - np.asarray(scaled(images))).max() > 1e-2
    # A flat channel stays finite.
    flat = np.full((1, 16, 16, 3), 128.0, np.float32)
    assert np.isfinite(np.asarray(normalised(flat))).all()
    normalised.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    np.testing.assert_allclose(loaded(images), normalised(images), atol=1e-6)
