"""Package attributes imported on first use (PEP 562), so importing a package stays cheap:
TensorFlow loads only when a name that needs it is used, after a CLI has quieted its logs."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_module(package: str, names: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """`(__getattr__, __dir__)` for `package`, whose public `names` live in the given modules.

    Args:
      package: the package's `__name__` (for the AttributeError message).
      names: public name -> module that defines it.
    """
    def __getattr__(name: str) -> Any:
        if name not in names:
            raise AttributeError(f"module '{package}' has no attribute '{name}'")
        return getattr(importlib.import_module(names[name]), name)

    def __dir__() -> list[str]:
        return sorted(names)

    return __getattr__, __dir__
