"""The benchmark scripts still run against the library, and time what they say they time.

The full-size runs belong to ``make bench``; here the scripts that call
the library's Python API run at tiny sizes, so that a change of that API
cannot leave them broken unnoticed.
"""

import subprocess
from pathlib import Path

import pytest

import benchmarks.measure
from benchmarks import discover, distance
from benchmarks.alternate import before_python

CLI = '''
def vol():
    print("vol:" + __file__)
{main}
'''
MAIN = '''
def main():
    print("main:" + __file__)
'''


@pytest.mark.parametrize("has_main, called", [(True, "main"), (False, "vol")])
def test_an_earlier_checkout_runs_through_its_console_script(tmp_path, has_main, called):
    checkout = tmp_path / "checkout"
    (checkout / "cli").mkdir(parents=True)
    (checkout / "cli" / "__init__.py").write_text("")
    (checkout / "cli" / "main.py").write_text(CLI.format(main=MAIN if has_main else ""))
    scratch = tmp_path / "scratch"
    scratch.mkdir()

    out = subprocess.run(before_python(checkout, scratch), capture_output=True, text=True,
                         check=True).stdout.strip()

    entry, source = out.split(":", 1)
    assert entry == called
    assert Path(source).resolve() == (checkout / "cli" / "main.py").resolve()


@pytest.fixture
def results_in(tmp_path, monkeypatch):
    """The benchmarks' JSON results go to a temporary folder, not ``benchmarks/out``."""
    monkeypatch.setattr(benchmarks.measure, "OUT_DIR", tmp_path / "out")
    return tmp_path / "out"


def test_discover_benchmark_search_and_full_scan_agree(tmp_path, results_in):
    results = discover.main(["--shape", "128,128,128", "--cube", "32", "--repeat", "1",
                             "--dir", str(tmp_path / "scratch")])

    assert results["same_cubes"] and results["cubes_kept"] > 0
    assert results["read_within_kept_plus_neighbours"]
    assert (results_in / "discover.json").exists()


def test_distance_benchmark_matches_scipy(tmp_path, results_in):
    results = distance.main(["--side", "96", "--dir", str(tmp_path / "scratch")])

    assert results["clipped"]["max_abs_difference"] == 0
    assert (results_in / "distance.json").exists()
