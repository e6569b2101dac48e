"""Done markers and layout hashes: what makes a block job resumable.

A journal lives inside the output store while it is written::

    OUT/.volumetric/layout.json        the layout and its hash
    OUT/.volumetric/done/<job>/<key>   one empty file per finished block, or
    OUT/.volumetric/done/<job>/<id>.log  one line per finished block of one task
    OUT/.volumetric/damaged.json       input chunk files a failed run found damaged
    OUT/.volumetric/<scratch>/         intermediate arrays of multi-pass operations

and is removed once the output is complete, so a finished store holds
OME-Zarr content only.

A marker is written only after the block's data has been written, so a run
killed at any moment resumes without losing or repeating work. Missing
chunks prove nothing (Zarr does not store chunks equal to the fill value),
which is why the markers exist at all. A task running many blocks appends
their keys to a log of its own (:meth:`Journal.marker`), one unbuffered
write per block; a line cut short by a kill is not a marker. Everything
here is plain files, so a journal pickles as two strings and works from any
worker process.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from volumetric.engine.lease import LEASE_NAME
from volumetric.errors import LayoutMismatchError

JOURNAL_DIR = ".volumetric"
LOG_SUFFIX = ".log"  # box keys are digits, dots and a dash: never a log's name
DAMAGE_FILE = "damaged.json"


def layout_hash(layout: Mapping[str, Any]) -> str:
    """A short stable hash of a JSON-serialisable layout description."""
    text = json.dumps(layout, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class Journal:
    """Resume state of one output: its layout hash and per-block done markers.

    Parameters
    ----------
    store : str or Path
        The output's root folder (for example an OME-Zarr group).
    layout : mapping
        Everything that determines the output: shapes, blocks, halos,
        parameters, source identity. A different layout never resumes.
    """

    def __init__(self, store: str | Path, layout: Mapping[str, Any]):
        self.root = str(Path(store) / JOURNAL_DIR)
        self.layout = dict(layout)
        self.hash = layout_hash(self.layout)

    @property
    def _layout_file(self) -> Path:
        return Path(self.root) / "layout.json"

    def stored_hash(self) -> str | None:
        """The hash recorded by an earlier run, or None when there is none."""
        try:
            return json.loads(self._layout_file.read_text())["hash"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def stored_layout(self) -> dict[str, Any]:
        """The layout recorded by an earlier run (empty when there is none)."""
        try:
            layout = json.loads(self._layout_file.read_text())["layout"]
        except (OSError, ValueError, KeyError, TypeError):
            return {}
        return layout if isinstance(layout, dict) else {}

    def start(self, *, restart: bool = False) -> bool:
        """Record the layout, keeping earlier markers when it matches.

        Parameters
        ----------
        restart : bool
            Drop markers of an earlier run with a different layout instead
            of refusing to continue.

        Returns
        -------
        bool
            True when an earlier run with the same layout is resumed.

        Raises
        ------
        LayoutMismatchError
            An earlier run used another layout and ``restart`` is false.
        """
        stored = self.stored_hash()
        if stored == self.hash:
            return True
        if stored is not None and not restart:
            raise LayoutMismatchError(self._mismatch())
        shutil.rmtree(Path(self.root) / "done", ignore_errors=True)
        (Path(self.root) / DAMAGE_FILE).unlink(missing_ok=True)
        Path(self.root).mkdir(parents=True, exist_ok=True)
        self._write_layout()
        return False

    def adopt(self) -> None:
        """Record this layout in place of the stored one, keeping the done markers.

        For a rerun whose layout differs only where that makes no difference
        to the blocks already done (e.g. damaged input files since repaired,
        see :meth:`record_damage`); the caller decides that.
        """
        self._write_layout()
        (Path(self.root) / DAMAGE_FILE).unlink(missing_ok=True)

    def _write_layout(self) -> None:
        _atomic_write(
            self._layout_file,
            json.dumps({"hash": self.hash, "layout": self.layout}, indent=1, default=str),
        )

    def record_damage(self, files: list[tuple[str, str]]) -> None:
        """Record input chunk files found damaged, as they are now (size, modification time).

        A rerun after their repair finds its inputs' fingerprints changed; these
        records let it check that nothing else changed (see :meth:`damage`).

        Parameters
        ----------
        files : list of (str, str)
            Each damaged file and the folder (Zarr array) whose fingerprint covers it.
        """
        records = []
        for file, folder in dict.fromkeys(files):
            try:
                st = os.stat(file)
            except OSError:
                continue
            records.append({"file": file, "folder": folder, "size": st.st_size,
                            "mtime_ns": st.st_mtime_ns})
        if records:
            _atomic_write(Path(self.root) / DAMAGE_FILE, json.dumps(records, indent=1))

    def damage(self) -> list[dict[str, Any]]:
        """What :meth:`record_damage` recorded: ``file``, ``folder``, ``size``, ``mtime_ns``."""
        try:
            records = json.loads((Path(self.root) / DAMAGE_FILE).read_text())
        except (OSError, ValueError):
            return []
        return records if isinstance(records, list) else []

    def _mismatch(self) -> str:
        """Why the stored layout differs: a changed input (same path), else the parameters."""
        store = Path(self.root).parent
        try:
            stored = json.loads(self._layout_file.read_text())["layout"]
        except (OSError, ValueError, KeyError):
            stored = {}
        now = json.loads(json.dumps(self.layout, default=str))
        changed = [k for k in sorted({*now, *stored}) if stored.get(k) != now.get(k)]
        inputs = [now[k]["path"] for k in changed
                  if isinstance(now.get(k), dict) and isinstance(stored.get(k), dict)
                  and "path" in now[k] and stored[k].get("path") == now[k]["path"]]
        if changed and len(inputs) == len(changed):
            return (f"{store} was started from {', '.join(inputs)} before it changed (its files "
                    "were modified since the interrupted run); rerun with --overwrite to start "
                    "again")
        return f"{store} was started with other parameters; rerun with --overwrite to start again"

    def _job_dir(self, job: str) -> Path:
        return Path(self.root) / "done" / job

    def done(self, job: str) -> set[str]:
        """Keys of the blocks of ``job`` that have finished."""
        folder = self._job_dir(job)
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return set()
        keys = {n for n in names if not n.startswith(".") and not n.endswith(LOG_SUFFIX)}
        for name in names:
            if name.endswith(LOG_SUFFIX) and not name.startswith("."):
                lines = (folder / name).read_text().split("\n")
                keys.update(line for line in lines[:-1] if line)  # the last one is cut short
        return keys

    def mark(self, job: str, key: str) -> None:
        """Record block ``key`` of ``job`` as finished (after its data is written).

        Nothing is recorded once the journal holds another layout, or none: a
        task that outlived its run (its client killed, its tasks left running
        on an external cluster) must not mark a block of the next run's
        layout, nor leave markers in an output completed since.
        """
        if self.stored_hash() != self.hash:
            return
        folder = self._job_dir(job)
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / key, "")

    @contextmanager
    def marker(self, job: str) -> Iterator[Callable[[str], None]]:
        """Yield ``mark(key)``, recording blocks of ``job`` as finished, one at a time.

        The keys go to a log of this call's own, one unbuffered write each: a
        block marked is as durable as with :meth:`mark`, for a fraction of
        its cost. The log is created with the first mark, and only while the
        journal holds this layout (as :meth:`mark`): a task that outlived its
        run marks nothing.
        """
        folder = self._job_dir(job)
        path = folder / f"{uuid.uuid4().hex}{LOG_SUFFIX}"
        fd = -1
        current = True

        def mark(key: str) -> None:
            nonlocal fd, current
            if fd < 0:
                current = current and self.stored_hash() == self.hash
                if not current:
                    return
                folder.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
            os.write(fd, f"{key}\n".encode())

        try:
            yield mark
        finally:
            if fd >= 0:
                os.close(fd)

    def forget(self, job: str) -> None:
        """Drop the markers of ``job``, so that a rerun computes all its blocks again."""
        shutil.rmtree(self._job_dir(job), ignore_errors=True)

    def scratch(self, name: str) -> Path:
        """A folder for an operation's intermediate files, removed by :meth:`finish`."""
        folder = Path(self.root) / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def finish(self) -> None:
        """Remove the journal's markers, layout and scratch: the output is complete, or emptied.

        Only the lease (:mod:`volumetric.engine.lease`) stays, for its holder to give up.
        """
        for entry in Path(self.root).iterdir():
            if entry.name == LEASE_NAME:
                continue
            if entry.is_dir():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
