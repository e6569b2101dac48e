"""The notebooks run top to bottom (their code cells, in order, as one script)."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, client, monkeypatch, tmp_path):
    matplotlib.use("Agg")
    monkeypatch.setenv("VOLUMETRIC_CLUSTER", client.scheduler.address)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    cells = json.loads(path.read_text())["cells"]
    code = "\n\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
    namespace: dict = {"__name__": "__notebook__"}
    exec(compile(code, str(path), "exec"), namespace)
    assert namespace["info"]["complete"] is True
