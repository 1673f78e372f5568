"""mkdocs hook: method pages get their hyper-parameter tables from the method classes, so the
docs cannot drift from the code. A page writes `<!-- hyperparameters: NAME -->` where the table
of method NAME goes (name, type, default, meaning from the class docstring's `Args:`)."""

from __future__ import annotations

import inspect
import re

MARKER = re.compile(r"<!-- hyperparameters: ([a-z-]+) -->")


def _arg_docs(cls) -> dict[str, str]:
    """`{name: description}` from the `Args:` section of a class docstring (Google style)."""
    doc = inspect.getdoc(cls) or ""
    section = doc.split("Args:", 1)[1] if "Args:" in doc else ""
    described: dict[str, str] = {}
    name = None
    for line in section.splitlines():
        match = re.match(r"^  (\w+): (.*)$", line)
        if match:
            name, text = match.groups()
            described[name] = text
        elif name and line.startswith("    "):
            described[name] += " " + line.strip()
        elif line.strip():
            break
    return described


def table(method: str) -> str:
    from tfuda.methods import METHODS

    cls = METHODS[method]
    described = _arg_docs(cls)
    rows = ["| `--method-arg` | type | default | meaning |", "|---|---|---|---|"]
    for name, parameter in cls.hyperparameters().items():
        kind = parameter.annotation if isinstance(parameter.annotation, str) else parameter.annotation.__name__
        rows.append(f"| `{name}` | {kind} | `{parameter.default!r}` | {described.get(name, '')} |")
    if len(rows) == 2:
        rows.append("| (none) | | | |")
    rows += ["", f"Defaults of the run: learning rate `{cls.default_lr}`, momentum `{cls.default_momentum}`, "
             f"unlabeled ratio `{cls.default_uratio}`; views: source {list(cls.source_views) or 'none'}, "
             f"target {list(cls.target_views) or 'none'}."]
    return "\n".join(rows)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return MARKER.sub(lambda match: table(match.group(1)), markdown)
