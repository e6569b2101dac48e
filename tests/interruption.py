"""Runs stopped just before their output is marked complete, as if killed there."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
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
