"""Preparing an operation's output store: overwrite, refuse or resume.

Every operation that writes an OME-Zarr image goes through
:func:`open_output`, so the rules are the same everywhere:

- a missing destination is created (its parent folder must be writable);
- an output that is, holds or lies inside an input is refused;
- a complete store, or anything that is not a store, is never touched
  without ``overwrite`` (and a folder that is not a Zarr store is never
  deleted, even with it);
- one run at a time writes an output: it holds the output's lease
  (:mod:`volumetric.engine.lease`) from here until :func:`complete_output`,
  and a second run is refused with the first one's host and pid;
- an incomplete store written by volumetric with the same layout resumes;
  with another layout it is refused unless ``overwrite``. The one change
  that resumes is the repair of input chunk files a failed run found
  damaged (recorded in its journal): the blocks done never read them, and
  every other file of those inputs must be as the failed run found it.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from volumetric.engine import JOURNAL_DIR, Journal, acquire_lease, release_lease
from volumetric.errors import DestinationError
from volumetric.io.destination import check_apart, check_writable
from volumetric.io.fingerprint import tree_fingerprint
from volumetric.io.ome import finalize_image
from volumetric.io.sources.arrays import is_zarr

log = logging.getLogger("volumetric")


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
        lies inside one is refused (see :func:`~volumetric.io.destination.check_apart`).

    Returns
    -------
    journal : Journal
        The output's journal, ready for :func:`~volumetric.engine.run_blocks`.
    resumed : bool
        True when an interrupted run with the same layout continues.

    Raises
    ------
    DestinationError
        The destination exists and may not be replaced, cannot be written, or
        another run writes it now.
    LayoutMismatchError
        An interrupted run used different parameters and ``overwrite`` is false.
    """
    dst = check_output(dst, inputs=inputs, overwrite=overwrite)
    journal = Journal(dst, layout)
    existed = dst.exists()
    try:
        lease = acquire_lease(journal.root, what=str(dst))
        try:
            return journal, _resume_or_create(dst, journal, create, overwrite)
        except BaseException:
            lease.release()
            if not existed:
                shutil.rmtree(dst, ignore_errors=True)
            raise
    except OSError as exc:  # os.access cannot foresee every refusal (EPERM, EROFS, as root)
        raise DestinationError(f"cannot write {dst}: {exc.strerror or exc}") from None


def check_output(dst: str | Path, *, inputs: tuple[str | Path, ...] = (),
                 overwrite: bool = False) -> Path:
    """The checks of :func:`open_output` that need no lease, to run before any work starts.

    Raises
    ------
    InputError
        ``dst`` is, holds or lies inside one of ``inputs``.
    DestinationError
        ``dst`` cannot be written, is not a Zarr store, or is complete and
        ``overwrite`` is false.
    """
    dst = check_writable(dst)
    check_apart(dst, inputs)
    try:
        _refuse_foreign(dst, overwrite)
    except OSError as exc:
        raise DestinationError(f"cannot read {dst}: {exc.strerror or exc}") from None
    return dst


def _refuse_foreign(dst: Path, overwrite: bool) -> None:
    """Refuse, before any lease is taken, what no run of ours may replace or resume.

    An empty folder, or one holding a journal but no Zarr metadata yet (a run
    that died while creating or replacing its store), is ours to write.
    """
    if not dst.exists() or (dst.is_dir() and not any(dst.iterdir())):
        return
    zarr_store = dst.is_dir() and is_zarr(str(dst))
    if not zarr_store and (dst / JOURNAL_DIR).is_dir():
        return
    if not zarr_store:
        raise DestinationError(f"{dst} exists and is not a Zarr store; refusing to replace it")
    if not overwrite and not _is_incomplete_volumetric(dst):
        raise DestinationError(f"{dst} already exists; pass --overwrite to replace it")


def _clear(dst: Path, journal: Journal) -> None:
    """Empty the store ``dst``, keeping only the lease this run holds in its journal."""
    for entry in dst.iterdir():
        if entry.name != JOURNAL_DIR:
            _remove(entry)
    journal.finish()  # the journal's files go, its lease stays


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


def _resume_or_create(dst: Path, journal: Journal, create: Callable[[], None],
                      overwrite: bool) -> bool:
    """Resume an interrupted run (True) or create the output afresh (False), under the lease."""
    _refuse_foreign(dst, overwrite)  # again: an earlier holder may have completed it meanwhile
    stored = journal.stored_hash()
    if not overwrite and is_zarr(str(dst)) and stored is not None:
        if stored != journal.hash and _repaired(journal):
            log.info("the damaged input chunk files of the interrupted run were rewritten, and "
                     "nothing else: resuming it")
            journal.adopt()
            return True
        if journal.start(restart=False):
            return True
    _clear(dst, journal)
    create()
    journal.start(restart=True)
    return False


def _repaired(journal: Journal) -> bool:
    """Whether the stored layout differs from ``journal``'s only in the fingerprints of Zarr
    arrays whose damaged chunk files (:meth:`Journal.damage`) alone were rewritten since."""
    stats: dict[str, dict[str, tuple[int, int]]] = {}
    try:
        for record in journal.damage():
            rel = os.path.relpath(record["file"], record["folder"])
            stats.setdefault(record["folder"], {})[rel] = (int(record["size"]),
                                                            int(record["mtime_ns"]))
        changed = {_json(tree_fingerprint(folder, before)): tree_fingerprint(folder)
                   for folder, before in stats.items()}
    except (OSError, KeyError, TypeError, ValueError):
        return False
    now = json.loads(json.dumps(journal.layout, default=str))
    return bool(changed) and _explained(journal.stored_layout(), now, changed)


def _explained(before: Any, after: Any, changed: dict[str, Any]) -> bool:
    """Whether ``before`` becomes ``after`` by replacing fingerprints as ``changed`` says."""
    if before == after:
        return True
    if isinstance(before, dict) and isinstance(after, dict):
        if changed.get(_json(before)) == after:
            return True
        return before.keys() == after.keys() and all(
            _explained(before[k], after[k], changed) for k in before)
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return all(_explained(b, a, changed) for b, a in zip(before, after))
    return False


def _json(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


def complete_output(dst: str | Path, journal: Journal) -> None:
    """Mark an image complete once all its blocks are written, and give up its lease."""
    finalize_image(dst)
    journal.finish()
    release_lease(journal.root)


@dataclass(frozen=True)
class ImageOutput:
    """An OME-Zarr image an operation writes: the :class:`~volumetric.engine.Output` of images.

    Parameters
    ----------
    path : str
        The image store.
    layout : mapping
        Everything that determines its content (see :class:`~volumetric.engine.Journal`).
    create : callable
        Creates the empty, incomplete image (see :func:`open_output`).
    inputs : tuple of str
        The operation's inputs, which the output must stay apart from.
    """

    path: str
    layout: Mapping[str, Any]
    create: Callable[[], None] = field(compare=False)
    inputs: tuple[str, ...] = ()

    def claim(self, overwrite: bool) -> tuple[Journal, bool]:
        """Start or resume writing the image (see :func:`open_output`)."""
        return open_output(self.path, self.layout, self.create, overwrite=overwrite,
                           inputs=self.inputs)

    def complete(self, journal: Journal) -> None:
        """Mark the image complete (see :func:`complete_output`)."""
        complete_output(self.path, journal)
