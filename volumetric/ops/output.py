"""Preparing an operation's output store: overwrite, refuse or resume.

Every operation that writes an OME-Zarr image goes through
:func:`prepare_output`, so the rules are the same everywhere:

- a missing destination is created (its parent folder must be writable);
- a complete store, or anything that is not a store, is never touched
  without ``overwrite`` (and a folder that is not a Zarr store is never
  deleted, even with it);
- an incomplete store written by volumetric with the same layout resumes;
  with another layout it is refused unless ``overwrite``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from volumetric.engine import Journal
from volumetric.errors import DestinationError, InputError
from volumetric.io.ome import finalize_image
from volumetric.io.sources.arrays import is_zarr


def _is_incomplete_volumetric(path: Path) -> bool:
    """Whether ``path`` is a store volumetric began and never marked complete."""
    for name in ("zarr.json", ".zattrs"):
        meta = path / name
        if meta.exists():
            try:
                attrs = json.loads(meta.read_text())
            except ValueError:
                return False
            attrs = attrs.get("attributes", attrs) if name == "zarr.json" else attrs
            vol = attrs.get("volumetric")
            return isinstance(vol, dict) and not vol.get("complete", False)
    return False


def check_writable(dst: str | Path) -> Path:
    """Check that ``dst`` can be created: its parent exists and is writable."""
    dst = Path(dst)
    parent = dst.resolve().parent
    if not parent.is_dir():
        raise DestinationError(f"cannot write {dst}: folder {parent} does not exist")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise DestinationError(f"cannot write {dst}: folder {parent} is not writable")
    return dst


def _check_apart(dst: Path, src: Path) -> None:
    """Refuse an output that is, holds or lies inside the input ``src``."""
    out, given = dst.resolve(), src.resolve()
    if out == given:
        raise InputError(f"the output {dst} is the same path as the input")
    if out in given.parents:
        raise InputError(f"the output {dst} contains the input {src}; choose another output")
    if given in out.parents:
        raise InputError(f"the output {dst} lies inside the input {src}; choose another output")


def open_output(
    dst: str | Path,
    layout: Mapping[str, Any],
    create: Callable[[], None],
    *,
    overwrite: bool = False,
    inputs: tuple[str | Path, ...] = (),
) -> tuple[Journal, bool]:
    """Start or resume writing ``dst``.

    Parameters
    ----------
    dst : str or Path
        The output store.
    layout : mapping
        Everything that determines the output (see :class:`Journal`).
    create : callable
        Creates the (empty, incomplete) output arrays at ``dst``; called
        unless an interrupted run with the same layout is resumed.
    overwrite : bool
        Replace an existing store.
    inputs : tuple of paths
        The operation's inputs; an output that is one of them, holds one or
        lies inside one is refused.

    Returns
    -------
    journal : Journal
        The output's journal, ready for :func:`~volumetric.engine.run_blocks`.
    resumed : bool
        True when an interrupted run with the same layout continues.

    Raises
    ------
    DestinationError
        The destination exists and may not be replaced, or cannot be written.
    LayoutMismatchError
        An interrupted run used different parameters and ``overwrite`` is false.
    """
    dst = check_writable(dst)
    for src in inputs:
        _check_apart(dst, Path(src))
    journal = Journal(dst, layout)
    try:
        return journal, _resume_or_create(dst, journal, create, overwrite)
    except OSError as exc:  # os.access cannot foresee every refusal (EPERM, EROFS, as root)
        raise DestinationError(f"cannot write {dst}: {exc.strerror or exc}") from None


def _resume_or_create(dst: Path, journal: Journal, create: Callable[[], None],
                      overwrite: bool) -> bool:
    """Resume an interrupted run (True) or create the output afresh (False)."""
    if dst.exists():
        if dst.is_dir() and not any(dst.iterdir()):
            pass
        elif not (dst.is_dir() and is_zarr(str(dst))):
            raise DestinationError(f"{dst} exists and is not a Zarr store; refusing to replace it")
        elif overwrite:
            shutil.rmtree(dst)
        elif not _is_incomplete_volumetric(dst):
            raise DestinationError(f"{dst} already exists; pass --overwrite to replace it")
        elif journal.stored_hash() is not None and journal.start(restart=False):
            return True
    create()
    journal.start(restart=True)
    return False


def complete_output(dst: str | Path, journal: Journal) -> None:
    """Mark an image complete once all its blocks are written."""
    finalize_image(dst)
    journal.finish()
