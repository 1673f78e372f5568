"""What a run ran on, recorded in its `metrics.json` (`environment`): a table pooled from runs made
on different machines or commits can then say which (a seed gives different numbers on different
CPUs, and a run's wall time means little without its CPU)."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def cpu_model() -> str:
    """The CPU's model name as `lscpu` shows it, and the core count, e.g. `"AMD EPYC 9B14, 2 cores"`."""
    name = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            name = next((line.split(":", 1)[1].strip() for line in f if line.startswith("model name")), name)
    except OSError:
        pass
    if name == "unknown CPU" and platform.processor():
        name = platform.processor()
    return f"{name}, {os.cpu_count()} cores"


def source_commit(directory: Path = PACKAGE_DIR) -> str | None:
    """The git commit of the checkout tfuda runs from (`+dirty` when tracked files differ from
    it); None when tfuda is not run from a git checkout or git is missing."""
    def git(*args: str) -> str:
        return subprocess.run(["git", "-C", str(directory), *args], capture_output=True, text=True, timeout=10,
                              check=True).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, str | None]:
    """`{tfuda, commit, tensorflow, keras, python, cpu}`: versions, `source_commit` and `cpu_model`."""
    import keras
    import tensorflow as tf

    from tfuda import __version__

    return {"tfuda": __version__, "commit": source_commit(), "tensorflow": tf.__version__,
            "keras": keras.__version__, "python": platform.python_version(), "cpu": cpu_model()}
