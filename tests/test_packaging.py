"""What a user installs: the license, the extras, environment.yml, and a core without torch.

The core commands must import and run without the optional packages (torch,
matplotlib, tqdm, imageio-ffmpeg); here they are hidden from a subprocess by
stand-in packages that raise ``ModuleNotFoundError`` as a missing one does.
``tests/test_wheel_install.py`` installs the built wheel into a fresh
environment for the real thing.
"""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from volumetric.errors import MissingExtraError, VolumetricError
from volumetric.extras import require

ROOT = Path(__file__).parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
OPTIONAL = ("torch", "matplotlib", "tqdm", "imageio_ffmpeg")
CONDA_NAMES = {"pytorch": "torch", "python-build": "build"}


def _requirements(lines: list[str]) -> dict[str, str]:
    """``{canonical name: specifier}`` of requirement strings, self-references left out."""
    found = {}
    for line in lines:
        req = Requirement(line)
        name = CONDA_NAMES.get(req.name, req.name).lower().replace("_", "-")
        if name != "volumetric":
            found[name] = str(req.specifier)
    return found


def _environment_sections() -> dict[str, list[str]]:
    """environment.yml's requirements by section (``runtime`` or an extra's name)."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in (ROOT / "environment.yml").read_text().splitlines():
        marker = re.fullmatch(r"\s*# (runtime|extra (\w+))\s*", line)
        if marker:
            current = marker.group(2) or "runtime"
            sections.setdefault(current, [])
            continue
        item = re.fullmatch(r"\s*- ([A-Za-z][\w.-]*[^#]*?)\s*(#.*)?", line)
        if current is not None and item and item.group(1) not in ("pip", "pip:"):
            sections[current].append(item.group(1))
    return sections


def test_license_file_is_the_declared_bsd_3_clause():
    text = (ROOT / "LICENSE").read_text()
    assert PYPROJECT["project"]["license"] == "BSD-3-Clause"
    assert PYPROJECT["project"]["license-files"] == ["LICENSE"]
    assert text.startswith("BSD 3-Clause License")
    assert "Neither the name of the copyright holder" in text


def test_py_typed_ships_with_the_package():
    assert (ROOT / "volumetric" / "py.typed").is_file()
    assert "py.typed" in PYPROJECT["tool"]["setuptools"]["package-data"]["volumetric"]


def test_core_dependencies_leave_out_every_optional_package():
    core = _requirements(PYPROJECT["project"]["dependencies"])
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert not {"torch", "matplotlib", "tqdm", "imageio-ffmpeg", "napari"} & set(core)
    assert {"torch", "matplotlib", "tqdm"} <= set(_requirements(extras["ml"]))
    assert "imageio-ffmpeg" in _requirements(extras["video"])
    assert {"napari", "napari-ome-zarr"} <= set(_requirements(extras["viewer"]))
    test_extras = Requirement(extras["test"][0])
    assert test_extras.name == "volumetric" and {"ml", "video"} <= test_extras.extras


def test_environment_yml_agrees_with_pyproject():
    sections = _environment_sections()
    extras = PYPROJECT["project"]["optional-dependencies"]
    assert {"runtime", "ml", "video", "test"} <= set(sections)
    assert _requirements(sections.pop("runtime")) == _requirements(
        PYPROJECT["project"]["dependencies"])
    for extra, lines in sections.items():
        assert extra in extras, f"environment.yml section 'extra {extra}' is no extra"
        assert _requirements(lines) == _requirements(extras[extra]), extra


def test_require_names_the_extra_in_one_line():
    assert require("json", extra="ml").__name__ == "json"
    with pytest.raises(MissingExtraError) as caught:
        require("volumetric_no_such_module", extra="video")
    message = str(caught.value)
    assert "\n" not in message
    assert "pip install 'volumetric[video]'" in message
    assert isinstance(caught.value, VolumetricError) and isinstance(caught.value, ImportError)


@pytest.fixture(scope="module")
def hidden(tmp_path_factory) -> dict[str, str]:
    """An environment for subprocesses in which the optional packages cannot be imported."""
    import os

    folder = tmp_path_factory.mktemp("hidden")
    for name in OPTIONAL:
        (folder / name).mkdir()
        (folder / name / "__init__.py").write_text(
            f"raise ModuleNotFoundError(\"No module named '{name}'\", name='{name}')\n")
    return {**os.environ, "PYTHONPATH": str(folder)}


def test_core_modules_import_without_the_optional_packages(hidden):
    core = ["volumetric.ops.convert", "volumetric.ops.info", "volumetric.ops.discover",
            "volumetric.ops.distance", "volumetric.ops.render", "volumetric.ops.project",
            "volumetric.ops.label", "volumetric.ops.align", "volumetric.ops.overlay",
            "volumetric.ops.export", "volumetric.ops.export_frames", "volumetric.ops.evaluate",
            "volumetric.io.movie", "volumetric.io.sources", "volumetric.testing",
            *(f"volumetric_cli.{c}" for c in ("main", "convert", "info", "discover", "distance",
                                              "render", "project", "label", "align", "overlay",
                                              "export", "evaluate", "synth", "cluster", "train",
                                              "predict", "patches", "train_matcher"))]
    code = ("import importlib, sys\n"
            f"for name in {core!r}:\n    importlib.import_module(name)\n"
            f"print(sorted(m for m in {OPTIONAL!r} if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], env=hidden, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


@pytest.mark.parametrize("args, extra", [
    (["train", "raw.zarr", "target.zarr", "--out", "run"], "ml"),
    (["predict", "raw.zarr", "pred.zarr", "--model", "model.ts"], "ml"),
    (["patches", "raw.zarr", "target.zarr", "gallery.png"], "ml"),
    (["convert", "movie.mp4", "movie.zarr"], "video"),
])
def test_a_command_without_its_extra_says_which_to_install(hidden, tmp_path, args, extra):
    (tmp_path / "movie.mp4").write_bytes(b"not decoded: ffmpeg is missing")
    code = "from volumetric_cli.main import vol; vol()"
    done = subprocess.run([sys.executable, "-c", code, *args], env=hidden, cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0, done.stderr
    assert f"pip install 'volumetric[{extra}]'" in done.stderr
