"""The examples in `examples/` run as users run them: the script as a process, the notebook on a
headless Jupyter kernel (nbclient), each with a small step count."""

import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def test_the_script_adapts_a_users_sequential_and_exports_it(tmp_path):
    done = subprocess.run([sys.executable, str(EXAMPLES / "adapt_sequential.py"), "--steps", "30",
                           "--out", str(tmp_path / "exports")], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "target accuracy: untrained" in done.stdout and f"exported to {tmp_path / 'exports'}: verified" in done.stdout
    for tree in ("serving", "tflite", "onnx"):
        assert (tmp_path / "exports" / tree / "tfuda" / "1").is_dir()


def test_the_notebook_runs_on_a_headless_kernel(tmp_path, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    monkeypatch.setenv("TFUDA_EXAMPLE_STEPS", "30")
    monkeypatch.setenv("TFUDA_EXAMPLE_DIR", str(tmp_path))
    notebook = nbformat.read(EXAMPLES / "quickstart.ipynb", as_version=4)
    assert all(not cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code"), \
        "commit the notebook without outputs"
    # The kernel inherits this process's environment, so it sees the variables set above.
    NotebookClient(notebook, timeout=900, kernel_name="python3",
                   resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    text = "".join(output.get("text", "") for output in outputs)
    assert "target accuracy" in text and "published version 1" in text
    assert sum("image/png" in output.get("data", {}) for output in outputs) >= 4  # the report's plots, inline
    assert (tmp_path / "exports" / "serving" / "tfuda" / "1").is_dir()
