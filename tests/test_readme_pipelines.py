"""The worked pipelines of README.md, run command by command at tiny sizes.

Every ```sh block that README.md marks with ``<!-- pipeline: NAME -->`` is
extracted; its ``vol`` lines run in order in an empty folder, with the size
options of ``SMALL`` replaced, and each must exit with status 0. So the
README's commands and options cannot drift from the code.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"

#: README size option -> the tiny size the test runs (option and value, exactly as written).
SMALL = {
    # neurites
    "--shape 128,512,512": "--shape 32,96,96",
    "--chunks 32,128,128": "--chunks 16,48,48",
    "--patch 32,64,64": "--patch 8,16,16",
    # em
    "--shape 64,512,512": "--shape 8,64,64",
    "--patch 1,256,256": "--patch 1,64,64",
    # brightfield
    "--samples 100": "--samples 3",
    "--shape 512,512": "--shape 64,64",
    "--patch 1,512,512": "--patch 1,64,64",
    "--t 99": "--t 2",
    # transfer (in proportion to the patch, so that the validation slab must hold one)
    "--shape 128,256,256": "--shape 32,64,64",
    # worm
    "--frames 575": "--frames 6",
    "--shape 2,512,512,35": "--shape 2,64,64,8",
    "--size 240": "--size 48",
    # every training
    "--steps 2000": "--steps 2",
    "--steps 500": "--steps 1",
}

PIPELINE = re.compile(r"<!-- pipeline: ([\w-]+) -->\s*\n```sh\n(.*?)```", re.DOTALL)


def pipelines(text: str) -> dict[str, list[list[str]]]:
    """The marked pipelines of a README: name -> commands, each as its argument list.

    Parameters
    ----------
    text : str
        Markdown with ``<!-- pipeline: NAME -->`` before ```sh blocks.

    Returns
    -------
    dict of str to list of list of str
        Per pipeline, its commands in order, comments and blank lines dropped,
        backslash continuations joined.
    """
    found: dict[str, list[list[str]]] = {}
    for name, block in PIPELINE.findall(text):
        assert name not in found, f"two pipelines named {name}"
        source = block.replace("\\\n", " ")
        found[name] = [shlex.split(line, comments=True) for line in source.splitlines()
                       if shlex.split(line, comments=True)]
    return found


def small(args: list[str], used: set[str]) -> list[str]:
    """``args`` with each ``OPTION VALUE`` pair of ``SMALL`` replaced; records those used."""
    out: list[str] = []
    i = 0
    while i < len(args):
        pair = " ".join(args[i:i + 2])
        if pair in SMALL:
            used.add(pair)
            out += SMALL[pair].split()
            i += 2
        else:
            out.append(args[i])
            i += 1
    return out


ALL = pipelines(README.read_text())


def test_the_readme_has_the_five_pipelines_of_vol_commands():
    assert set(ALL) == {"neurites", "em", "brightfield", "transfer", "worm"}
    for name, commands in ALL.items():
        assert len(commands) >= 4, name
        assert all(command[0] == "vol" for command in commands), name


def test_every_small_size_replaces_an_option_of_a_pipeline():
    used: set[str] = set()
    for commands in ALL.values():
        for command in commands:
            small(command, used)
    assert used == set(SMALL)


@pytest.mark.parametrize("name", sorted(ALL))
def test_readme_pipeline_runs(name, vol, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    used: set[str] = set()
    for command in ALL[name]:
        result = vol(*small(command[1:], used))
        assert result.exit_code == 0, f"{shlex.join(command)}\n{result.output}"
