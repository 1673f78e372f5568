"""The documentation site builds strictly (a broken link, anchor or reference fails), its method
pages carry the hyper-parameters of the code, and the README stays a page a user reads."""

import html
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=600,
                          env={**os.environ, "NO_MKDOCS_2_WARNING": "1", "TF_CPP_MIN_LOG_LEVEL": "3"})
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def test_the_site_builds_strictly_with_every_page(site):
    for page in ("index", "getting-started", "data", "training", "validation", "sweep", "source-free", "api",
                 "export", "scale-out", "troubleshooting", "benchmarks", "architecture"):
        assert (site / page / "index.html").is_file() or (site / f"{page}.html").is_file() or page == "index"
    assert (site / "index.html").is_file()


def test_method_pages_list_the_hyperparameters_of_the_code(site):
    from tfuda.methods import METHODS

    for name, cls in METHODS.items():
        page = (site / "methods" / name / "index.html").read_text()
        assert "hyperparameters:" not in page  # the marker was replaced
        for parameter, spec in cls.hyperparameters().items():
            default = html.escape(repr(spec.default), quote=False)
            assert f"<td><code>{parameter}</code></td>" in page and f"<td><code>{default}</code></td>" in page, (
                name, parameter)


def test_the_api_reference_is_generated_from_the_docstrings(site):
    page = (site / "api" / "index.html").read_text()
    assert "tfuda.api.adapt" in page and "Adapts <code>model</code> from the labeled" in page


def test_the_readme_is_short_and_its_quick_start_is_two_commands():
    readme = (ROOT / "README.md").read_text()
    assert len(readme.splitlines()) <= 250
    ci = (ROOT / ".ci" / "run").read_text()
    test_command = 'python3 -m venv .venv && . .venv/bin/activate && pip install -e ".[cpu,test]" && python -m pytest'
    assert test_command in readme and test_command.split("&& ", 2)[2] in ci
