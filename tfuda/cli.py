"""Shared command-line plumbing: user errors become one line and exit status 2."""

from __future__ import annotations

import os
import sys
from typing import Callable

from pipelines.errors import UserError


def quiet_tensorflow() -> None:
    """Hides TensorFlow's C++ start-up chatter unless the user set TF_CPP_MIN_LOG_LEVEL."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def run_command(body: Callable[[], int]) -> int:
    """Runs a command body; `UserError` -> `error: message` on stderr and exit status 2."""
    try:
        return body()
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
