"""Bad input never crashes deep inside TensorFlow: 17 cases, each a clear message or a documented skip.

Skipped with a warning naming the file (or an error under --strict): 1 truncated PNG, 2 truncated
JPEG, 3 zero-byte file, 4 text file with an image extension. Decoded normally: 5 16-bit PNG,
6 1x1 image, 7 4000x3000 image, 8 CMYK JPEG, 9 gray+alpha PNG. Refused with one `error:` line:
10 --strict with unreadable files, 11 class subfolders that differ from the eval set's,
12 an empty class subfolder, 13 npz with wrong shapes, 14 npz with a wrong dtype, 15 npz with an
object array (never unpickled), 16 --out below a regular file, 17 a failing write of the run
directory (disk full). The run dir without a model and the export dir below a regular file are
in tests/export/test_export.py; an interrupted checkpoint write is at the end of this file.
"""

import errno
import json

import numpy as np
import pytest

from tests.pipelines.images import labeled_folder, write_image, write_png_header, write_truncated
from tfuda.train import main

FAST = ["--steps", "1", "--batch-size", "4", "--eval-every", "100", "--checkpoint-every", "100", "--no-report"]


@pytest.fixture(scope="module")
def messy_folder(tmp_path_factory):
    root = labeled_folder(tmp_path_factory.mktemp("messy") / "data", per_class=3)
    bad = {
        "truncated.png": write_truncated(root / "cat" / "truncated.png"),
        "empty.png": root / "cat" / "empty.png",
        "notes.png": root / "dog" / "notes.png",
    }
    bad["empty.png"].write_bytes(b"")
    bad["notes.png"].write_text("not an image, just text\n" * 20)
    jpeg = write_image(root / "dog" / "truncated.jpg", size=(64, 64), seed=3)
    jpeg.write_bytes(jpeg.read_bytes()[:200])
    bad["truncated.jpg"] = jpeg
    write_image(root / "cat" / "deep.png", "I;16", size=(20, 10))
    write_image(root / "cat" / "dot.png", size=(1, 1))
    write_image(root / "dog" / "huge.jpg", size=(4000, 3000))
    write_image(root / "dog" / "cmyk.jpg", "CMYK")
    write_image(root / "dog" / "gray_alpha.png", "LA")
    return root, bad


def test_unreadable_files_are_skipped_by_name_and_the_rest_trains(messy_folder, tmp_path, capsys):
    root, bad = messy_folder
    out = tmp_path / "run"
    assert main([*FAST, "--source", str(root), "--target", str(root), "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"skipped {len(bad)} unreadable image file(s)" in err
    for path in bad.values():
        assert str(path) in err
    assert json.loads((out / "metrics.json").read_text())["status"] == "completed"


def test_unusual_but_valid_images_decode(messy_folder):
    import tensorflow as tf

    from pipelines.feeds import preprocessed_batches
    from pipelines.sources import open_source

    root, bad = messy_folder
    source = open_source(str(root))
    assert source.info.num_examples == 6 + 5
    for images, _ in preprocessed_batches(source, 4, 16):
        assert images.shape[1:] == (16, 16, 3) and images.dtype == tf.uint8


def test_strict_refuses_and_names_the_files(messy_folder, tmp_path, capsys):
    root, bad = messy_folder
    assert main([*FAST, "--strict", "--source", str(root), "--target", str(root), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert "--strict" in err and all(str(p) in err for p in bad.values()) and "Traceback" not in err


def _single_line_error(capsys, *fragments):
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("error: ")
    for fragment in fragments:
        assert fragment in err
    return err


def test_class_mismatch_with_eval_set(tmp_path, capsys):
    source = labeled_folder(tmp_path / "s", classes=("cat", "dog"))
    other = labeled_folder(tmp_path / "e", classes=("cat", "fox"))
    assert main([*FAST, "--source", str(source), "--target", str(source), "--eval-target", str(other),
                 "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, "--eval-target", "missing: ['dog']", "extra: ['fox']")


def test_empty_class_subfolder(tmp_path, capsys):
    source = labeled_folder(tmp_path / "s")
    (source / "zebra").mkdir()
    assert main([*FAST, "--source", str(source), "--target", str(source), "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, "zebra", "has no")


@pytest.mark.parametrize("arrays, fragment", [
    ({"x": np.zeros((4, 8), np.uint8), "y": np.zeros(4, np.int64)}, "must be uint8 [N, H, W]"),
    ({"x": np.zeros((4, 8, 8), np.float64), "y": np.zeros(4, np.int64)}, "must be uint8"),
    ({"x": np.array([{"a": 1}] * 4, dtype=object)}, "cannot be read safely"),
])
def test_bad_npz_sources(tmp_path, capsys, arrays, fragment):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    assert main([*FAST, "--source", f"npz:{path}", "--target", "digits-m", "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, str(path), fragment)


@pytest.mark.parametrize("line, fragment", [
    ("ema_decay: '0.99'", "--ema-decay must be a number, got '0.99'"),
    ("flip: 'false'", "--flip must be true or false, got 'false'"),
    ("seed: '3'", "--seed must be an integer, got '3'"),
    ("seed: -1", "--seed must be a non-negative integer"),
])
def test_config_values_of_the_wrong_type(tmp_path, capsys, line, fragment):
    config = tmp_path / "run.yaml"
    config.write_text(line + "\n")
    assert main([*FAST, "--config", str(config), "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, fragment)
    assert not (tmp_path / "r").exists()


def test_a_huge_image_is_refused_from_its_header_before_decoding(tmp_path, capsys):
    source = labeled_folder(tmp_path / "s")
    huge = write_png_header(source / "cat" / "huge.png", 30_000, 30_000)
    assert main([*FAST, "--source", str(source), "--target", str(source), "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, str(huge), "900 megapixels", "--max-image-pixels")
    assert not (tmp_path / "r" / "model.keras").exists()


def test_max_image_pixels_sets_the_cap(tmp_path, capsys):
    source = labeled_folder(tmp_path / "s")
    write_image(source / "dog" / "big.png", size=(200, 100))
    assert main([*FAST, "--max-image-pixels", "10000", "--source", str(source), "--target", str(source),
                 "--out", str(tmp_path / "r")]) == 2
    _single_line_error(capsys, "big.png", "exceed --max-image-pixels 10000")


def test_loose_images_beside_class_folders_are_named_in_a_warning(tmp_path, capsys):
    from pipelines.folders import list_folder

    source = labeled_folder(tmp_path / "s")
    write_image(source / "stray.png")
    listing = list_folder(str(source))
    warning = capsys.readouterr().err
    assert "stray.png" in warning and "beside its class subfolders" in warning
    assert not any(p.endswith("stray.png") for p in listing.paths)


def test_out_below_a_regular_file(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert main([*FAST, "--out", str(blocker / "run")]) == 2
    _single_line_error(capsys, "cannot write the run directory", str(blocker / "run"))


def test_disk_full_while_writing_the_run_directory(tmp_path, capsys, monkeypatch):
    import tfuda.train

    def disk_full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(tfuda.train, "write_json_atomic", disk_full)
    assert main([*FAST, "--out", str(tmp_path / "run")]) == 2
    _single_line_error(capsys, "No space left on device")


def test_interrupted_checkpoint_write_keeps_the_last_good_one(tmp_path, monkeypatch):
    import tensorflow as tf

    from tfuda.engine.checkpoints import Checkpoints
    from tfuda.engine.trainer import TrainingModel, make_optimizer
    from tfuda.methods import SourceOnly
    from tfuda.models import build_model

    adapter = TrainingModel(build_model("cnn-small", 10, 8), SourceOnly(), total_steps=10)
    adapter.compile(optimizer=make_optimizer(0.1))
    checkpoints = Checkpoints(adapter, str(tmp_path / "ckpt"))
    checkpoints.save(1, 1.0)
    good = checkpoints.latest
    original = tf.train.Checkpoint._write  # what CheckpointManager.save calls

    def crash_mid_write(self, file_prefix, *args, **kwargs):
        # Write the data files without the manager's completion callback, cut the data short,
        # and die: the state of a process killed half-way through a save.
        original(self, file_prefix, options=tf.train.CheckpointOptions())
        for data in tmp_path.glob("ckpt/ckpt-2.data-*"):
            data.write_bytes(data.read_bytes()[: data.stat().st_size // 2])
        raise OSError(errno.EIO, "simulated crash in the middle of a checkpoint write")

    monkeypatch.setattr(tf.train.Checkpoint, "_write", crash_mid_write)
    with pytest.raises(OSError):
        checkpoints.save(2, 2.0)
    monkeypatch.undo()
    assert list(tmp_path.glob("ckpt/ckpt-2.data-*"))  # the broken files exist...
    assert tf.train.latest_checkpoint(str(tmp_path / "ckpt")) == good  # ...but are never picked
    fresh = Checkpoints(adapter, str(tmp_path / "ckpt"))
    assert fresh.restore_latest() == int(adapter.optimizer.iterations.numpy())
    assert float(fresh.wall_time.numpy()) == 1.0
