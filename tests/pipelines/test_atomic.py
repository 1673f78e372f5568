"""Atomic writes: the umask's mode (readable by a serving process), nothing half-written, flushed."""

import os
import stat

import pytest

from pipelines import atomic


@pytest.fixture
def umask_022():
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


def test_written_files_get_the_umask_mode(tmp_path, umask_022):
    atomic.write_json_atomic(tmp_path / "a.json", {"x": 1})
    atomic.write_text_atomic(tmp_path / "b.txt", "hi")
    (tmp_path / "src").write_bytes(b"data")
    atomic.copy_atomic(tmp_path / "src", tmp_path / "c.bin")
    for name in ("a.json", "b.txt", "c.bin"):
        assert mode(tmp_path / name) == 0o644, name
    assert (tmp_path / "c.bin").read_bytes() == b"data"


def test_a_stricter_umask_is_kept(tmp_path):
    old = os.umask(0o077)
    try:
        atomic.write_text_atomic(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.txt") == 0o600


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "metrics.json"
    atomic.write_json_atomic(target, {"old": True})

    def fail(tmp):
        tmp.write_text("half")
        raise OSError("disk full")

    with pytest.raises(OSError):
        atomic.replace_with(target, fail)
    assert target.read_text() == '{\n  "old": true\n}\n'
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_data_and_directory_are_flushed(tmp_path, monkeypatch):
    synced = []
    real = os.fsync

    def fsync(fd):
        synced.append(os.path.realpath(f"/proc/self/fd/{fd}"))
        return real(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    atomic.write_text_atomic(tmp_path / "a.txt", "x")
    assert str(tmp_path.resolve()) in synced
    assert any(os.path.basename(p).startswith(".a.txt.") for p in synced)


def test_run_files_are_readable_like_the_model_beside_them(tiny_run):
    model_mode = mode(tiny_run / "model.keras")
    for name in ("metrics.json", "config.json", "class_names.json"):
        assert mode(tiny_run / name) == model_mode, name
