"""The wheel a user installs: built from the sources, installed with its core dependencies only.

One test, about a minute: the sources are copied (so the build writes nothing
into the checkout), ``python -m build`` makes the sdist and from it the
wheel, a fresh virtual environment installs the wheel with the core
dependencies from the package index this machine reaches (no extras), and
the installed ``vol`` converts a ``.npy`` and describes the result. Neither
torch, matplotlib nor imageio-ffmpeg may be installed by that.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).parent.parent
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "volumetric", "cli")
OPTIONAL = ("torch", "matplotlib", "tqdm", "imageio_ffmpeg")


def _run(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    done = subprocess.run(args, capture_output=True, text=True, timeout=600, **kwargs)
    assert done.returncode == 0, f"{args[:3]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


@pytest.mark.install
def test_core_wheel_installs_and_runs_without_torch(tmp_path):
    source = tmp_path / "source"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, source / name)
    # from tmp_path: `-m build` would find a checkout's build/ folder before the package
    _run([sys.executable, "-m", "build", "--outdir", str(tmp_path / "dist"), str(source)],
         cwd=tmp_path)
    wheel, = (tmp_path / "dist").glob("volumetric-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
    assert "volumetric/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    python, vol = venv / "bin" / "python", venv / "bin" / "vol"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    _run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check", str(wheel)],
         env=env)

    probe = ("import importlib.util, json; print(json.dumps("
             f"{{m: importlib.util.find_spec(m) is not None for m in {OPTIONAL!r}}}))")
    installed = json.loads(_run([str(python), "-c", probe], env=env).stdout)
    assert installed == {m: False for m in OPTIONAL}

    data = np.arange(16 * 32 * 32, dtype=np.uint16).reshape(16, 32, 32)
    np.save(tmp_path / "cube.npy", data)
    work = {"cwd": tmp_path, "env": env}
    _run([str(vol), "convert", "cube.npy", "cube.zarr", "--workers", "1", "--levels", "2"], **work)
    info = json.loads(_run([str(vol), "info", "cube.zarr", "--json"], **work).stdout)
    assert info["complete"] is True
    assert info["shape"] == [16, 32, 32] and info["dtype"] == "uint16"
    stored = _run([str(python), "-c", "import zarr; a = zarr.open_array('cube.zarr/0'); "
                   "print(int(a[:].sum()), a.shape)"], **work).stdout.split(maxsplit=1)
    assert int(stored[0]) == int(data.sum())

    refused = subprocess.run([str(vol), "train", "cube.zarr", "cube.zarr", "--out", "run"],
                             capture_output=True, text=True, timeout=300, **work)
    assert refused.returncode == 2
    assert refused.stderr.strip() == ("vol: error: this needs torch, which is not installed; "
                                      "install the 'ml' extra: pip install 'volumetric[ml]'")
