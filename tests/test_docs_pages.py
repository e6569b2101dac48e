"""Every command of `vol` has its page in docs/commands/, with current generated options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import click

from volumetric_cli.main import COMMANDS, vol

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _generate():
    spec = importlib.util.spec_from_file_location("docs_generate", DOCS / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_command_has_a_page_with_what_it_writes():
    assert set(vol.list_commands(click.Context(vol))) == set(COMMANDS)
    pages = {p.stem for p in (DOCS / "commands").glob("*.md")}
    assert pages == set(COMMANDS)
    for name in COMMANDS:
        text = (DOCS / "commands" / f"{name}.md").read_text()
        writes = text.split("## What it writes", 1)[1].split("##", 1)[0]
        assert writes.strip(), f"{name}.md: no 'What it writes'"


def test_generated_option_tables_are_current():
    generate = _generate()
    for name in COMMANDS:
        path = DOCS / "commands" / f"{name}.md"
        current = path.read_text()
        assert generate.page(name, current) == current, f"run python docs/generate.py ({name})"


def test_a_page_lists_every_option_of_its_command():
    text = (DOCS / "commands" / "distance.md").read_text()
    for option in ("--clip", "--signed", "--invert", "--power", "--normalize", "--levels",
                   "--block-mb", "--cluster", "--workers", "--overwrite"):
        assert f"| `{option}` |" in text


def test_the_topic_pages_exist():
    for name in ("conventions", "resume", "tuning"):
        assert (DOCS / f"{name}.md").read_text().startswith("# ")
