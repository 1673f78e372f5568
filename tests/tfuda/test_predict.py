import csv

import numpy as np
from PIL import Image

from pipelines.builtin import load
from tests.pipelines.images import write_truncated
from tfuda.predict import main


def test_predict_files_and_folders_with_csv(tiny_run, tmp_path, capsys):
    images, _ = load("digits-m", "test")
    folder = tmp_path / "imgs"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(images[i]).save(folder / f"{i}.png")
    Image.fromarray(images[3][..., 0]).resize((50, 20)).save(tmp_path / "gray.jpg")  # other size, gray
    write_truncated(folder / "bad.png")
    out_csv = tmp_path / "p.csv"
    assert main(["--run", str(tiny_run), str(folder), str(tmp_path / "gray.jpg"), "--csv", str(out_csv)]) == 0
    captured = capsys.readouterr()
    lines = captured.out.strip().splitlines()
    assert len(lines) == 4 and "bad.png" in captured.err
    rows = list(csv.DictReader(out_csv.open()))
    assert [r["path"] for r in rows] == [l.split("\t")[0] for l in lines]
    assert all(r["class"] in [str(i) for i in range(10)] and 0 < float(r["probability"]) <= 1 for r in rows)


def test_predict_agrees_with_the_model(tiny_run, tmp_path, capsys):
    import keras

    images, _ = load("digits-m", "test")
    Image.fromarray(images[0]).save(tmp_path / "a.png")
    assert main(["--run", str(tiny_run), str(tmp_path / "a.png")]) == 0
    _, name, prob = capsys.readouterr().out.strip().split("\t")
    model = keras.saving.load_model(tiny_run / "model.keras", compile=False)
    probs = keras.ops.softmax(model(images[:1].astype("float32"))).numpy()[0]
    assert name == str(int(probs.argmax())) and float(prob) == np.round(probs.max(), 4)


def test_predict_errors(tmp_path, capsys):
    assert main(["--run", str(tmp_path), str(tmp_path)]) == 2
    assert "has no model.keras" in capsys.readouterr().err


def test_an_evaluation_set_is_preprocessed_once_and_predicted_as_streamed(monkeypatch):
    import tfuda.inference as inference
    from pipelines.sources import open_source
    from tfuda.models import build_model

    model = build_model("cnn-small", 10, 16)
    source = open_source("digits-m:test")
    kept_probs, kept_labels = inference.predict_source(model, source, 16, batch_size=100)
    # Later calls read the kept images: no tf.data pipeline is built again.
    monkeypatch.setattr(inference, "preprocessed_batches", lambda *a, **k: (_ for _ in ()).throw(AssertionError()))
    again, _ = inference.predict_source(model, source, 16, batch_size=100)
    np.testing.assert_array_equal(again, kept_probs)
    monkeypatch.undo()
    # The same numbers as the streamed pipeline a set too large for memory takes.
    monkeypatch.setattr(type(source), "preprocessed", lambda self, size: None)
    streamed_probs, streamed_labels = inference.predict_source(model, source, 16, batch_size=100)
    np.testing.assert_array_equal(kept_labels, streamed_labels)
    np.testing.assert_allclose(kept_probs, streamed_probs, atol=1e-6)
    assert kept_probs.shape == (len(kept_labels), 10)
