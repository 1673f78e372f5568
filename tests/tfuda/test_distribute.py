"""tf.distribute and faults: 2 replicas == 1 replica, 2 workers on localhost, SIGKILL + resume.

Each test starts its own processes (logical devices and TF_CONFIG must be set before TensorFlow
initialises); they are marked `slow` and run in CI all the same (`-m "not slow"` skips them).
"""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import tensorflow as tf

from tfuda.train import main

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 600


def _env(**extra):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TF_CPP_MIN_LOG_LEVEL": "2", **extra}
    env.pop("TF_CONFIG", None)
    env.update(extra)
    return env


def _two_replicas(mode, out):
    done = subprocess.run([sys.executable, str(ROOT / "tests" / "scripts" / "two_replicas.py"), mode, str(out)],
                          capture_output=True, text=True, timeout=TIMEOUT, env=_env())
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(next(l for l in done.stdout.splitlines() if l.startswith("RESULTS "))[8:]), done.stdout


def test_two_replicas_update_like_one_replica_with_the_global_batch(tmp_path):
    results, _ = _two_replicas("step", tmp_path)
    assert results["replicas"] == 2
    assert results["max_weight_diff"] < 1e-5 and results["loss_diff"] < 1e-5


def test_adamatch_statistics_are_per_replica(tmp_path):
    results, _ = _two_replicas("stats", tmp_path)
    # The 2-replica logs equal the mean of each half-batch's own threshold, alignment and mask.
    assert results["max_diff_vs_per_replica"] < 1e-5
    assert 0.0 <= results["mask_rate_two_replicas"] <= 1.0
    # Running alignment statistics: each replica's own update, then their average is kept.
    assert results["running_seen_per_replica"] == [[0.25, 0.75], [0.75, 0.25]]
    assert results["running_source_mean"] == [0.5, 0.5] and results["running_target_last"] == [0.5, 0.5]


def test_on_device_views_on_two_replicas_equal_the_one_replica_views(tmp_path):
    # Each image gets the augmentation draws it gets in the global batch (draws made for the
    # global batch, sliced per replica), so N replicas train on what one replica would see.
    results, _ = _two_replicas("views", tmp_path)
    assert results["max_view_diff"] == 0.0
    assert not results["replica_views_identical"]
    # The method's own draws (AdaMatch's interpolation) come from a seed of each replica's own.
    first, second = results["replica_seeds"]
    assert first != second


def test_adamatch_on_two_replicas(tmp_path):
    results, stdout = _two_replicas("adamatch", tmp_path / "run")
    assert results["exit"] == 0 and "over 2 replicas" in stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 3
    assert metrics["config"]["strategy"] == "mirrored" and 0 <= metrics["target_accuracy"] <= 1


def test_non_finite_loss_on_two_replicas_keeps_the_last_good_checkpoint(tmp_path):
    results, _ = _two_replicas("nan", tmp_path / "run")
    assert results["exit"] == 1
    failed = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert failed["status"] == "failed" and failed["steps"] == 3
    assert tf.train.latest_checkpoint(str(tmp_path / "run" / "checkpoints")).endswith("ckpt-2")


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _start_workers(args_of):
    """Starts 2 `multiworker` training processes on 127.0.0.1; `args_of(index)` gives the flags."""
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    processes = []
    for index in range(2):
        config = json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
        processes.append(subprocess.Popen(
            [sys.executable, "-m", "tfuda.train", "--strategy", "multiworker", *args_of(index)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(TF_CONFIG=config)))
    return processes


def _finish(processes):
    try:
        outputs = [p.communicate(timeout=TIMEOUT) for p in processes]
    finally:
        for p in processes:
            p.kill()
    for p, (out, err) in zip(processes, outputs):
        assert p.returncode == 0, err[-3000:]
    return outputs


def test_two_workers_on_localhost(tmp_path):
    outputs = _finish(_start_workers(lambda index: [
        "--steps", "3", "--batch-size", "4", "--eval-every", "3", "--checkpoint-every", "3", "--no-report",
        "--out", str(tmp_path / f"out{index}")]))
    metrics = json.loads((tmp_path / "out0" / "metrics.json").read_text())
    assert metrics["steps"] == 3 and metrics["config"]["strategy"] == "multiworker"
    assert "over 2 replicas" in outputs[0][0]
    assert not (tmp_path / "out1").exists()  # the non-chief wrote only to a scratch directory


def _run_path(stdout):
    """The run directory a training process printed in its first line (`... | run PATH`)."""
    return Path(stdout.splitlines()[0].rsplit("| run ", 1)[1])


def test_two_workers_killed_then_resumed_on_a_shared_out(tmp_path):
    # README: every worker gets the same --out on a shared file system. Only the chief writes it;
    # the other worker resumes from the chief's checkpoint and never writes or deletes it.
    out = tmp_path / "shared"
    args = ["--method", "source-only", "--steps", "40", "--batch-size", "4", "--checkpoint-every", "5",
            "--eval-every", "1000", "--no-report", "--out", str(out)]  # the method does not matter here
    processes = _start_workers(lambda index: args)
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline and not tf.train.latest_checkpoint(str(out / "checkpoints")):
            assert all(p.poll() is None for p in processes), "training ended before it could be killed"
            time.sleep(0.1)
    finally:
        for p in processes:
            p.send_signal(signal.SIGKILL)
            p.wait(timeout=60)
    killed_at = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    assert killed_at < 40 and not (out / "model.keras").exists()
    outputs = _finish(_start_workers(lambda index: ["--resume", *args]))
    assert f"steps {killed_at}->40" in outputs[0][0] and f"steps {killed_at}->40" in outputs[1][0]
    scratch = _run_path(outputs[1][0])
    assert scratch != out and not scratch.exists()  # the other worker removed only its own directory
    for name in ("config.json", "class_names.json", "metrics.json", "model.keras", "checkpoints", "logs"):
        assert (out / name).exists(), name
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == 40 and metrics["task"] == "worker 0"
    assert tf.train.latest_checkpoint(str(out / "checkpoints")).endswith("ckpt-40")


def test_sigkill_mid_run_then_resume_loses_nothing(tmp_path, capsys):
    out = tmp_path / "run"
    steps = 200  # source-only steps are quick: enough of them that the kill comes mid-run
    args = ["--method", "source-only", "--steps", str(steps), "--batch-size", "8", "--checkpoint-every", "5",
            "--eval-every", "1000", "--no-report", "--out", str(out)]
    process = subprocess.Popen([sys.executable, "-m", "tfuda.train", *args], env=_env(),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + TIMEOUT
    try:
        while time.time() < deadline:
            latest = tf.train.latest_checkpoint(str(out / "checkpoints"))
            if latest and int(latest.rsplit("-", 1)[1]) >= 10:
                break
            assert process.poll() is None, "training ended before it could be killed"
            time.sleep(0.2)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        process.kill()
    killed_at = int(tf.train.latest_checkpoint(str(out / "checkpoints")).rsplit("-", 1)[1])
    assert 10 <= killed_at < steps and not (out / "model.keras").exists()
    capsys.readouterr()
    assert main(["--resume", "--out", str(out), "--no-report"]) == 0
    assert f"steps {killed_at}->{steps}" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "completed" and metrics["steps"] == steps
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(out / "checkpoints")))
    assert reader.get_tensor("optimizer/_iterations/.ATTRIBUTES/VARIABLE_VALUE") == steps
    assert (out / "model.keras").is_file()
