"""Shared fixtures. TensorFlow is imported once per session; commands run in-process via main(argv)."""

from __future__ import annotations

import fcntl
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

MAX_WORKERS = 4
"""`-n auto` (setup.cfg): one test process per core, at most this many (each holds TensorFlow)."""


def pytest_xdist_auto_num_workers(config) -> int:
    return max(1, min(MAX_WORKERS, len(os.sched_getaffinity(0))))


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Keeps the folder-validation cache out of the user's home."""
    os.environ["TFUDA_CACHE_DIR"] = str(tmp_path_factory.mktemp("cache"))


TINY_RUN_ARGS = ["--steps", "6", "--batch-size", "8", "--eval-every", "3",
                 "--checkpoint-every", "3", "--seed", "1"]


def built_once(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """`build(path)` once per test session, also across the xdist workers (which share the
    parent of their base temp directory): the first worker builds under a lock, the others
    wait for it and reuse the result. Tests must not change what it built."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    path, done = root / "shared" / name, root / "shared" / f"{name}.done"
    path.parent.mkdir(exist_ok=True)
    with open(root / "shared" / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(path, ignore_errors=True)
            build(path)
            done.touch()
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory):
    """A finished 6-step AdaMatch run on digits -> digits-m, shared by training/export tests."""
    from tfuda.train import main

    return built_once(tmp_path_factory, "tiny", lambda out: _check(main([*TINY_RUN_ARGS, "--out", str(out)])))


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A small but confident model: source-only on labeled digits-m for 80 steps (export tests)."""
    from tfuda.train import main

    return built_once(tmp_path_factory, "trained", lambda out: _check(main(
        ["--method", "source-only", "--source", "digits-m", "--target", "digits-m", "--steps", "80",
         "--batch-size", "32", "--eval-every", "80", "--checkpoint-every", "80", "--no-report", "--out", str(out)])))


def _check(code: int) -> None:
    assert code == 0, f"building a shared run exited {code}"


@pytest.fixture(scope="session")
def exported(trained_run, tmp_path_factory):
    """`trained_run` exported to every format: (export dir, report dict)."""
    import json

    from export.savedmodel import main

    out = tmp_path_factory.mktemp("exports") / "exp"
    assert main(["--run", str(trained_run), "--out", str(out),
                 "--quantize", "float32,float16,int8", "--max-eval-images", "200", "--no-report"]) == 0
    return out, json.loads((out / "reports" / "tfuda" / "1.json").read_text())
