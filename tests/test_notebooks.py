"""The notebooks: stored with their figures, and they run top to bottom in a fresh kernel.

Each notebook runs at its small size (``VOLUMETRIC_NOTEBOOK_SIZE=small``) in a
new Jupyter kernel through ``notebooks/execute.py`` on the tests' cluster;
the files are read, never written. The stored copies are checked for what a
reader on a code host sees: every code cell run in order, no errors, figures.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import nbformat
import pytest

HERE = Path(__file__).parent.parent / "notebooks"
NOTEBOOKS = sorted(HERE.glob("*.ipynb"))
# the figures (image/png outputs) each notebook shows
FIGURES = {"01_quickstart.ipynb": 4, "02_em_mitochondria.ipynb": 3, "03_worm_alignment.ipynb": 2}


def _runner():
    spec = importlib.util.spec_from_file_location("notebook_runner", HERE / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


runner = _runner()


def _errors(notebook) -> list[str]:
    return [f"{o.get('ename')}: {o.get('evalue')}" for cell in notebook.cells
            if cell.cell_type == "code" for o in cell.get("outputs", [])
            if o.get("output_type") == "error"]


def test_every_notebook_is_listed():
    assert [p.name for p in NOTEBOOKS] == sorted(FIGURES)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_stored_notebook_shows_its_figures(path):
    notebook = nbformat.read(path, as_version=4)
    nbformat.validate(notebook)
    counts = [cell.execution_count for cell in notebook.cells if cell.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), "run every cell once, top to bottom"
    assert _errors(notebook) == []
    assert runner.image_outputs(notebook) == FIGURES[path.name]
    text = "".join(str(cell.get("outputs", "")) for cell in notebook.cells)
    assert "/tmp/" not in text and "VOLUMETRIC_NOTEBOOK_SIZE" not in text


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs_at_small_size(path, client, monkeypatch, tmp_path):
    monkeypatch.setenv("VOLUMETRIC_NOTEBOOK_SIZE", "small")
    monkeypatch.setenv("VOLUMETRIC_CLUSTER", client.scheduler.address)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    before = path.read_bytes()
    notebook = runner.execute(path)
    assert _errors(notebook) == []
    assert runner.image_outputs(notebook) == FIGURES[path.name]
    assert path.read_bytes() == before
