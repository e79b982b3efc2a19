"""Executes launch/fdp_colab.ipynb top to bottom on CPU with the tiny config (install cell skipped)."""
from __future__ import annotations

import json
import os

import nbformat
from nbclient import NotebookClient

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_colab_notebook_runs_with_tiny_config(tmp_path, monkeypatch):
    # The kernel inherits the session's JAX compilation cache (tests/conftest.py), which holds the tiny
    # steps when tests/test_fdp_loso.py ran first.
    monkeypatch.setenv("FDP_SKIP_INSTALL", "1")
    monkeypatch.setenv("FDP_NOTEBOOK_CONFIG", "fdp_tiny")
    monkeypatch.setenv("FDP_NOTEBOOK_WORKDIR", str(tmp_path / "workdir"))
    monkeypatch.setenv("JAX_PLATFORMS", "cpu")
    monkeypatch.setenv("PYTHONPATH", REPO_ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
    notebook = nbformat.read(os.path.join(REPO_ROOT, "launch", "fdp_colab.ipynb"), as_version=4)
    NotebookClient(notebook, timeout=600, kernel_name="python3",
                   resources={"metadata": {"path": REPO_ROOT}}).execute()
    text = "\n".join(out.get("text", "") for cell in notebook.cells if cell.cell_type == "code"
                     for out in cell.get("outputs", []))
    assert "skipping the install" in text
    assert "mesh {'data': 1}" in text
    results = json.loads((tmp_path / "workdir" / "results.json").read_text())
    assert len(results["pooled"]["per_fold"]) == 3
    images = [out for cell in notebook.cells for out in cell.get("outputs", [])
              if "image/png" in out.get("data", {})]
    assert len(images) >= 2, "the confusion matrix and DI grid must be displayed"
