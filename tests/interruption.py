"""Runs stopped just before their output is marked complete, as if killed there."""

from __future__ import annotations

import shutil
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest


class Killed(Exception):
    """Stands for the kill: raised where the output would be marked complete."""


@contextmanager
def killed_before_completion() -> Iterator[None]:
    """Every operation in the block writes all its blocks, then stops with its journal kept."""
    with mock.patch("volumetric.ops.output.complete_output", side_effect=Killed), \
            pytest.raises(Killed):
        yield


def done_keys(store: str | Path, job: str) -> set[str]:
    """The blocks of ``job`` that the journal of ``store`` records as finished."""
    from volumetric.engine import Journal

    return Journal(store, {}).done(job)


def unmark(store: str | Path, job: str, keys: Iterable[str]) -> None:
    """Forget that the blocks ``keys`` of ``job`` finished, as if the run was killed before.

    The journal of ``job`` is rewritten with one marker file per block still done.
    """
    kept = done_keys(store, job) - set(keys)
    folder = Path(store) / ".volumetric" / "done" / job
    shutil.rmtree(folder)
    folder.mkdir()
    for key in kept:
        (folder / key).touch()
