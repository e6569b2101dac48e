"""The wrapper that times an earlier checkout runs that checkout's own entry point."""

import subprocess
from pathlib import Path

import pytest

from benchmarks.alternate import before_python

CLI = '''
import sys
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
