"""Shared command-line plumbing: user errors become one line and exit status 2; quiet output.

TensorFlow, its converters and LiteRT write start-up and progress chatter straight to the
process's standard error (file descriptor 2, from C++), where no Python logging setting reaches
it. `quiet_output` therefore passes fd 2 through a filter process that drops the lines known to
be noise (listed below, each a line a user cannot act on) and keeps everything else — tfuda's
own warnings and errors, any real warning or error from TensorFlow, and the last words of a
process that aborts. `--verbose` turns it off.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import re
import sys
import subprocess
from typing import Callable, Iterator, Sequence

from pipelines.errors import UserError

NOISE = re.compile("|".join((
    r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$",
    r"^I\d{4} [\d:.]+ +\d+ \S+:\d+\] ",  # TensorFlow's C++ INFO lines
    r"^To enable the following instructions: .*rebuild TensorFlow with the appropriate compiler flags\.$",
    r"^E\d{4} .*\] oneDNN supports DT_HALF only on platforms with AVX-512\. Falling back",
    r"^fully_quantize: \d+, inference_type: \d+, input_inference_type: ",  # the TFLite converter
    r"^INFO: Created TensorFlow Lite XNNPACK delegate for CPU\.$",  # LiteRT
)))
NOISE_BLOCKS = {
    # Keras' ExportArchive with a lookup table (the class names): a known-harmless serializer warning.
    re.compile(r"^WARNING:tensorflow:Issue encountered when serializing table_initializer\.$"): 2,
}
"""Lines that start a block of noise -> how many lines after them belong to it."""


def is_verbose(argv: Sequence[str] | None) -> bool:
    """True when the command line asks for `--verbose` (read before TensorFlow is imported)."""
    return "--verbose" in (sys.argv[1:] if argv is None else argv)


def filter_lines(read: int, write: int) -> None:
    """Copies lines from file descriptor `read` to `write`, leaving out the known noise, until EOF."""
    skip = 0
    with os.fdopen(read, "rb") as pipe, os.fdopen(write, "wb", buffering=0) as out:
        for raw in pipe:
            line = raw.decode("utf-8", "replace").rstrip("\n")
            if skip:
                skip -= 1
                continue
            block = next((n for start, n in NOISE_BLOCKS.items() if start.search(line)), None)
            if block is not None:
                skip = block
            elif not NOISE.search(line):
                out.write(raw)


FILTER_PROGRAM = ("import signal, sys; signal.signal(signal.SIGINT, signal.SIG_IGN); sys.path.insert(0, {root!r}); "
                  "from tfuda.cli import filter_lines; filter_lines(0, 1)")
"""The filter process: it ignores Ctrl-C (which reaches the whole process group) and runs until
the command's last copy of the pipe closes, so it copies what a dying command wrote last."""


class _StderrFilter:
    """Routes file descriptor 2 through a pipe to a filter *process* (`filter_lines`).

    A separate process, not a thread: when TensorFlow's C++ code fails a `CHECK` or aborts, it
    writes its fatal message to fd 2 and kills the process at once; a thread in that process
    would die before copying the message, while the filter process reads the pipe to its end.
    """

    def __enter__(self) -> "_StderrFilter":
        sys.stderr.flush()
        self.original = os.dup(2)
        read, write = os.pipe()
        root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        self.process = subprocess.Popen([sys.executable, "-c", FILTER_PROGRAM.format(root=root)],
                                        stdin=read, stdout=self.original, close_fds=True)
        os.close(read)
        os.dup2(write, 2)
        os.close(write)
        return self

    def __exit__(self, *exc) -> None:
        sys.stderr.flush()
        os.dup2(self.original, 2)  # closes the pipe's last write end: the filter reads to its end and exits
        os.close(self.original)
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()


@contextlib.contextmanager
def quiet_output(argv: Sequence[str] | None = None) -> Iterator[None]:
    """Hides TensorFlow's chatter on stderr for the duration, unless `--verbose` is in `argv`."""
    if is_verbose(argv):
        yield
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    with _StderrFilter():
        yield


def command(main: Callable[..., int]) -> Callable[..., int]:
    """Decorates a CLI's `main(argv=None, prog=...)`: its whole run, parsing included, under
    `quiet_output` (`prog`: the name `--help` shows, e.g. `tfuda train`)."""
    @functools.wraps(main)
    def wrapped(argv: Sequence[str] | None = None, **kwargs) -> int:
        with quiet_output(argv):
            return main(argv, **kwargs)

    return wrapped


class HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """`--help` keeps the description's and the example's line breaks and shows every default."""


def example(*lines: str) -> str:
    """A `--help` epilog: the example command lines."""
    return "example:\n" + "\n".join(f"  {line}" for line in lines)


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


VERBOSE_HELP = "show TensorFlow's own log lines (hidden by default; warnings and errors always show)"
