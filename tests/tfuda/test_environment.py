"""A run records what it ran on: versions, the git commit of the checkout, the CPU."""

import re
import shutil
import subprocess

import keras
import pytest
import tensorflow as tf

from tfuda.environment import cpu_model, environment, source_commit


def git(directory, *args):
    subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True)


def test_the_commit_of_a_checkout_and_whether_it_is_dirty(tmp_path):
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    assert source_commit(tmp_path) is None  # not a checkout
    git(tmp_path, "init", "-q")
    (tmp_path / "a.py").write_text("x = 1\n")
    git(tmp_path, "add", "a.py")
    git(tmp_path, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m", "one")
    commit = source_commit(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    (tmp_path / "b.py").write_text("untracked\n")
    assert source_commit(tmp_path) == commit
    (tmp_path / "a.py").write_text("x = 2\n")
    assert source_commit(tmp_path) == commit + "+dirty"


def test_the_environment_names_versions_and_cpu():
    env = environment()
    assert env["tensorflow"] == tf.__version__ and env["keras"] == keras.__version__
    assert env["cpu"] == cpu_model() and re.search(r", \d+ cores$", env["cpu"])
    assert env["commit"] is None or re.fullmatch(r"[0-9a-f]{40}(\+dirty)?", env["commit"])
