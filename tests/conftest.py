"""Shared fixtures: one LocalCluster of worker processes for the whole test session."""

from __future__ import annotations

import logging

import pytest
from click.testing import CliRunner
from hypothesis import settings

# Shared 2-core machines make per-example timings meaningless.
settings.register_profile("volumetric", deadline=None)
settings.load_profile("volumetric")


@pytest.fixture(scope="session")
def client():
    """A dask client on a 2-process LocalCluster, shared by all tests."""
    from distributed import Client, LocalCluster

    logging.getLogger("distributed").setLevel(logging.WARNING)

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
        silence_logs=logging.ERROR,
    ) as cluster, Client(cluster) as c:
        yield c


@pytest.fixture
def vol(client, monkeypatch):
    """Run ``vol ARGS...`` in-process on the shared cluster; returns click's Result."""
    from volumetric_cli.main import vol as vol_command

    monkeypatch.setenv("VOLUMETRIC_CLUSTER", client.scheduler.address)
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(vol_command, [str(a) for a in args], catch_exceptions=False)

    return invoke
