"""Export a small trained model to every format, reload each in its runtime, compare with Keras."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from export.rest import predict_rest
from export.savedmodel import main
from pipelines.builtin import load
from pipelines.transforms import preprocess
from tests.report_html import check_images_and_html
from tfuda.report import IMAGES, write_report


@pytest.fixture(scope="module")
def keras_model(trained_run):
    return keras.saving.load_model(trained_run / "model.keras", compile=False)


@pytest.fixture(scope="module")
def test_images():
    images, labels = load("digits-m", "test")
    return images[:64], labels[:64]


def keras_probs(model, images):
    return tf.nn.softmax(model(tf.cast(preprocess(images, 32), tf.float32))).numpy()


def test_layout_and_report(exported):
    out, report = exported
    version = out / "serving" / "tfuda" / "1"
    assert (version / "saved_model.pb").is_file() and (version / "variables").is_dir()
    assert (version / "assets" / "class_names.txt").read_text().split() == [str(i) for i in range(10)]
    for precision in ("float32", "float16", "int8"):
        assert (out / "tflite" / "tfuda" / "1" / f"model.{precision}.tflite").is_file()
    assert (out / "onnx" / "tfuda" / "1" / "model.onnx").is_file()
    assert not list(out.glob(".staging*"))
    assert report["passed"] and report["version"] == 1 and report["num_images"] == 200
    kinds = {(a["format"], a["precision"]) for a in report["artifacts"]}
    assert kinds == {("savedmodel", "float32"), ("tflite", "float32"), ("tflite", "float16"),
                     ("tflite", "int8"), ("onnx", "float32")}
    for a in report["artifacts"]:
        assert set(a) >= {"path", "format", "precision", "bytes", "accuracy", "agreement",
                          "max_abs_prob_diff", "latency_ms_p50"}
        assert a["bytes"] > 100_000 and a["latency_ms_p50"] > 0
        assert a["agreement"] >= (0.97 if a["precision"] == "int8" else 0.99)
        assert Path(a["path"]).exists() and Path(a["path"]).is_relative_to(out)
    sizes = {a["precision"]: a["bytes"] for a in report["artifacts"] if a["format"] == "tflite"}
    assert sizes["int8"] < 0.35 * sizes["float32"] and sizes["float16"] < 0.6 * sizes["float32"]


def test_savedmodel_any_size_uint8_including_grayscale(exported, keras_model, test_images):
    out, _ = exported
    loaded = tf.saved_model.load(str(out / "serving" / "tfuda" / "1"))
    serve = loaded.signatures["serving_default"]
    images, _ = test_images
    big = tf.image.resize(images[:4], [57, 41]).numpy().round().astype(np.uint8)
    gray = images[:4, :, :, :1]
    for batch in (images[:8], big, gray):
        result = serve(images=tf.constant(batch))
        assert set(result) == {"probabilities", "classes", "logits"}
        assert result["classes"].dtype == tf.int64
        np.testing.assert_allclose(result["probabilities"], keras_probs(keras_model, batch), atol=1e-5)
    pre = loaded.signatures["serving_preprocessed"]
    floats = tf.cast(preprocess(images[:4], 32), tf.float32)
    np.testing.assert_allclose(pre(images=floats)["logits"], keras_model(floats), atol=1e-4)
    names = [n.decode() for n in loaded.class_names()["class_names"].numpy()]
    assert names == [str(i) for i in range(10)]


def test_saved_model_cli_shows_the_signatures(exported):
    out, _ = exported
    shown = subprocess.run(
        [sys.executable, "-m", "tensorflow.python.tools.saved_model_cli", "show", "--dir",
         str(out / "serving" / "tfuda" / "1"), "--tag_set", "serve", "--signature_def", "serving_default"],
        capture_output=True, text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr
    text = shown.stdout
    assert "inputs['images']" in text and "DT_UINT8" in text and "(-1, -1, -1, -1)" in text
    assert "outputs['probabilities']" in text and "outputs['classes']" in text and "DT_INT64" in text


def test_rest_request_round_trip(exported, keras_model, test_images):
    out, _ = exported
    loaded = tf.saved_model.load(str(out / "serving" / "tfuda" / "1"))
    images, _ = test_images
    rows = json.loads(json.dumps(predict_rest(loaded, {"instances": images[:3].tolist()})))
    assert len(rows["predictions"]) == 3
    assert set(rows["predictions"][0]) == {"probabilities", "classes", "logits"}
    expected = keras_probs(keras_model, images[:3])
    assert [p["classes"] for p in rows["predictions"]] == expected.argmax(1).tolist()
    columns = predict_rest(loaded, {"inputs": {"images": images[:2].tolist()}})
    assert np.asarray(columns["outputs"]["probabilities"]).shape == (2, 10)
    floats = tf.cast(preprocess(images[:2], 32), tf.float32).numpy().tolist()
    pre = predict_rest(loaded, {"signature_name": "serving_preprocessed", "inputs": floats})
    np.testing.assert_allclose(pre["outputs"]["probabilities"], expected[:2], atol=1e-5)


@pytest.mark.parametrize("body, fragment", [
    ({"instances": [[[[0.5, 0.5, 0.5]]]]}, "whole numbers 0..255"),
    ({"instances": [[[[300, 0, 0]]]]}, "whole numbers 0..255"),
    ({"signature_name": "nope", "instances": [[[[0, 0, 0]]]]}, "unknown signature_name 'nope'"),
    ({"signature_name": "serving_preprocessed", "inputs": np.zeros((1, 8, 8, 3)).tolist()}, "axis 1"),
    ({"instances": [[[0, 0, 0]]]}, "got shape [1, 1, 3]"),
    ({"instances": [[[[0, 0, 0]]], [[[0, 0]]]]}, "one shape"),
    ({"images": []}, '"instances" or "inputs"'),
])
def test_rest_refuses_what_the_signature_cannot_take(exported, body, fragment):
    from export.rest import RequestError

    out, _ = exported
    loaded = tf.saved_model.load(str(out / "serving" / "tfuda" / "1"))
    with pytest.raises(RequestError) as err:
        predict_rest(loaded, body)
    assert fragment in str(err.value)


def test_tflite_files_run_in_litert(exported, keras_model, test_images):
    from ai_edge_litert.interpreter import Interpreter

    out, _ = exported
    folder = out / "tflite" / "tfuda" / "1"
    images, _ = test_images
    prepared = preprocess(images, 32).numpy()
    expected = keras_probs(keras_model, images)
    metadata = json.loads((folder / "metadata.json").read_text())
    assert metadata["class_names"] == [str(i) for i in range(10)]
    assert metadata["input"]["dtype"] == "uint8" and metadata["input"]["shape"] == [-1, 32, 32, 3]
    for precision, tolerance in (("float32", 1e-4), ("float16", 0.02), ("int8", 0.2)):
        runner = Interpreter(model_path=str(folder / f"model.{precision}.tflite")).get_signature_runner()
        probs = runner(images=prepared)["probabilities"]
        assert np.isfinite(probs).all()
        assert np.abs(probs - expected).max() < tolerance, precision
        assert (probs.argmax(1) == expected.argmax(1)).mean() >= 0.9


def test_onnx_runs_in_onnxruntime(exported, keras_model, test_images):
    import onnx
    import onnxruntime

    out, _ = exported
    path = out / "onnx" / "tfuda" / "1" / "model.onnx"
    assert max(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx")) >= 17
    session = onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    images, _ = test_images
    inputs = session.get_inputs()
    assert inputs[0].type == "tensor(uint8)" and inputs[0].shape[1:] == [32, 32, 3]
    names = [o.name for o in session.get_outputs()]
    probs = session.run(None, {inputs[0].name: preprocess(images, 32).numpy()})[
        next(i for i, n in enumerate(names) if "probabilities" in n)]
    np.testing.assert_allclose(probs, keras_probs(keras_model, images), atol=1e-4)


def test_versions_increment_and_are_never_replaced(exported, trained_run, capsys):
    out, _ = exported
    first = (out / "serving" / "tfuda" / "1" / "saved_model.pb").read_bytes()
    assert main(["--run", str(trained_run), "--out", str(out), "--formats", "savedmodel",
                 "--max-eval-images", "64", "--no-report"]) == 0
    assert (out / "serving" / "tfuda" / "2" / "saved_model.pb").is_file()
    assert (out / "reports" / "tfuda" / "2.json").is_file()
    assert (out / "serving" / "tfuda" / "1" / "saved_model.pb").read_bytes() == first
    capsys.readouterr()
    assert main(["--run", str(trained_run), "--out", str(out), "--version", "1", "--formats", "savedmodel"]) == 2
    assert "already exists" in capsys.readouterr().err


def test_failure_mid_export_publishes_nothing(trained_run, tmp_path, monkeypatch):
    from export import onnx_model as onnx_export

    out = tmp_path / "exp"
    assert main(["--run", str(trained_run), "--out", str(out), "--formats", "savedmodel",
                 "--max-eval-images", "64", "--no-report"]) == 0
    before = sorted(p.relative_to(out) for p in out.rglob("*"))

    def crash(*args, **kwargs):
        raise RuntimeError("simulated crash during ONNX conversion")

    monkeypatch.setattr(onnx_export, "convert", crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        main(["--run", str(trained_run), "--out", str(out), "--formats", "savedmodel,tflite,onnx",
              "--quantize", "float32", "--max-eval-images", "64"])
    assert sorted(p.relative_to(out) for p in out.rglob("*")) == before


def test_failed_verification_is_not_published(trained_run, tmp_path, capsys):
    out = tmp_path / "exp"
    code = main(["--run", str(trained_run), "--out", str(out), "--formats", "savedmodel",
                 "--max-eval-images", "64", "--min-agreement", "1.01"])
    assert code == 1
    assert "not published" in capsys.readouterr().err
    assert not (out / "serving" / "tfuda" / "1").exists()
    assert json.loads((out / "reports" / "tfuda" / "1.failed.json").read_text())["passed"] is False


@pytest.mark.parametrize("make_args, message", [
    (lambda tmp, run: ["--run", str(tmp / "nope"), "--out", str(tmp / "e")], "is not a directory"),
    (lambda tmp, run: ["--run", str(tmp), "--out", str(tmp / "e")], "has no model.keras"),
    (lambda tmp, run: ["--run", str(run), "--out", str((tmp / "f").write_text("x") and tmp / "f" / "e")],
     "cannot write the export directory"),
    (lambda tmp, run: ["--run", str(run), "--out", str(tmp / "e"), "--formats", "pdf"], "unknown value(s) pdf"),
])
def test_bad_input_errors(trained_run, tmp_path, capsys, make_args, message):
    assert main(make_args(tmp_path, trained_run)) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_the_run_report_shows_the_export_beside_a_baseline(exported, trained_run, tiny_run, tmp_path):
    out, _ = exported
    run = shutil.copytree(tiny_run, tmp_path / "tiny")  # the shared run's own report stays as training wrote it
    index = write_report(str(run), baseline=str(trained_run), embedding="pca", max_points=50,
                         export_report=str(out / "reports" / "tfuda" / "1.json"))
    html = check_images_and_html(index.parent, IMAGES)
    assert "No --baseline run given" not in html and "No export yet" not in html
    assert "tflite int8" in html and "onnx float32" in html
    with Image.open(index.parent / "embedding.png") as two_rows:
        assert two_rows.size[1] > 500  # baseline row above the adapted row
