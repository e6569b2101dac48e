"""Training run directories shared by ``vol train`` and ``vol train-matcher``.

A run is defined by its ``config.json`` (file paths stored absolute and
compared with their symbolic links resolved, so they may be spelled
differently later); ``--resume`` continues a run with the same configuration
(only the device, the number of loader workers and the volumetric version may
change) from its last finished epoch.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from volumetric.engine import JOURNAL_DIR
from volumetric.errors import DestinationError, InputError
from volumetric.io.destination import check_apart, check_writable
from volumetric.models.transfer import ModuleState
from volumetric.ops.paths import comparable_path
from volumetric.train import FitResult, rundir

# Settings that may differ when a run is resumed: they do not change its result on CPU.
RESUMABLE_CHANGES = ("device", "workers", "version")
# config.json keys reporting what the options imply, not compared on resume.
DERIVED = ("layers",)
# DataSettings fields naming files (besides pairs).
PATHS = ("raw", "target", "mask", "cubes")


@dataclass
class TrainReport:
    """What :func:`train` did."""

    run_dir: Path
    architecture: str
    result: FitResult
    seconds: float
    layers: list[ModuleState]


def stored_run(out: Path, resume: bool, inputs: list[str | None]) -> dict[str, Any] | None:
    """The ``config.json`` of the run in ``out`` to continue (None: start one); refuses clashes.

    Raises
    ------
    DestinationError
        ``out`` is not a folder, holds other files, or holds a run and ``resume`` is false.

    A run that never finished an epoch (no ``last.pt``) holds nothing to
    continue or to keep: it starts again, with any options.
    """
    check_writable(out)
    check_apart(out, inputs)
    if out.exists() and not out.is_dir():
        raise DestinationError(f"{out} exists and is not a folder")
    stored = rundir.read_config(out) if out.is_dir() else None
    if stored is not None and not (out / rundir.LAST).is_file():
        return None
    if stored is None:
        if out.is_dir() and any(p.name != JOURNAL_DIR for p in out.iterdir()):
            raise DestinationError(
                f"{out} is not empty and holds no training run; choose another --out"
            )
        return None
    if not resume:
        raise DestinationError(f"{out} already holds a training run; pass --resume to continue it "
                               "or choose another --out")
    return stored


def map_paths(config: dict[str, Any], rule: Callable[[str], str]) -> dict[str, Any]:
    """``config`` with ``rule`` applied to every file path it names (URLs and None unchanged)."""
    def each(path: str | None) -> str | None:
        return path if path is None or "://" in path else rule(path)

    mapped = dict(config)
    if "data" in config:
        data = {key: each(value) if key in PATHS else value
                for key, value in config["data"].items()}
        data["pairs"] = [[each(path) for path in pair] for pair in data.get("pairs", [])]
        data["pair_cubes"] = [each(path) for path in data.get("pair_cubes", [])]
        data["val"] = data.get("val") and [each(path) for path in data["val"]]
        mapped["data"] = data
    if "model" in config:
        mapped["model"] = {**config["model"], "init": each(config["model"].get("init"))}
    return mapped


def _flat(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested settings as one level with dotted keys (``data.patch``)."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        if isinstance(value, dict) and value:
            flat.update(_flat(value, f"{prefix}{key}."))
        else:
            flat[prefix + key] = value
    return flat


def check_same_run(out: Path, stored: dict[str, Any], config: dict[str, Any]) -> None:
    """Refuse to resume the run of ``stored`` with the different settings ``config``.

    Raises
    ------
    InputError
        A setting other than :data:`RESUMABLE_CHANGES` differs (paths compared resolved).
    """
    def show(settings: dict[str, Any], key: str) -> str:
        if key not in settings:
            return "(unset)"
        return settings[key] if isinstance(settings[key], str) else json.dumps(settings[key])

    old, new = _flat(stored), _flat(config)
    same_old = _flat(map_paths(stored, comparable_path))
    same_new = _flat(map_paths(config, comparable_path))
    keys = [k for k in sorted(set(old) | set(new))
            if k not in RESUMABLE_CHANGES and k.split(".")[0] not in DERIVED]
    differ = [f"{k} {show(old, k)} -> {show(new, k)}" for k in keys
              if (k in old) != (k in new) or same_old.get(k) != same_new.get(k)]
    if differ:
        raise InputError(f"--resume: options differ from the run in {out}: {'; '.join(differ)}; "
                         "rerun with the options of its config.json or choose another --out")
