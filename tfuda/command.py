"""`tfuda`: one command, with the subcommands `train`, `export`, `sweep`, `predict` and `report`.

    tfuda train --out runs/demo && tfuda export --run runs/demo --out exports

Each subcommand is the module's own command line (`tfuda train` is `python -m tfuda.train`, and
so on); `tfuda SUBCOMMAND --help` lists its flags with their defaults and an example.
"""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

COMMANDS = {
    "train": ("tfuda.train", "adapt a classifier from a labeled source to an unlabeled target"),
    "export": ("export.savedmodel", "export a run: SavedModel (TF Serving), TFLite, ONNX, each verified"),
    "sweep": ("tfuda.sweep", "train a grid of runs and pick one without target labels"),
    "predict": ("tfuda.predict", "classify image files with a run's model"),
    "report": ("tfuda.report", "(re)make a run's HTML report"),
}
"""Subcommand -> (module whose `main(argv, prog)` runs it, one-line summary). The modules are
imported by name when run: `tfuda` itself does not depend on `export`."""


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("tfuda")
    except PackageNotFoundError:
        return "unknown (not installed)"


def usage() -> str:
    width = max(map(len, COMMANDS))
    rows = "\n".join(f"  {name:<{width}}  {summary}" for name, (_, summary) in COMMANDS.items())
    return (f"usage: tfuda {{{','.join(COMMANDS)}}} ... | tfuda --version\n\n"
            f"Adapt an image classifier to a new domain without its labels, and ship it.\n\n"
            f"commands:\n{rows}\n\n"
            "example:\n  tfuda train --out runs/demo && tfuda export --run runs/demo --out exports\n\n"
            "tfuda COMMAND --help shows the command's flags, their defaults and an example.")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the `tfuda` console script; returns the subcommand's exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    if args[0] == "--version":
        print(f"tfuda {version()}")
        return 0
    if args[0] not in COMMANDS:
        print(f"error: unknown command '{args[0]}': give one of {', '.join(COMMANDS)} (tfuda --help)",
              file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[args[0]][0])
    return module.main(args[1:], prog=f"tfuda {args[0]}")


if __name__ == "__main__":
    sys.exit(main())
