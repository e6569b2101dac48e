"""Write the generated part of docs/commands/<name>.md from click's own parameter metadata.

Each page has a hand-written part (what the command writes, examples) and,
between the markers ``<!-- generated: options -->`` and ``<!-- end generated -->``,
the usage, the help text and a table of every option, made here from the
command's click parameters. Run ``python docs/generate.py`` after changing a
command's options; ``python docs/generate.py --check`` exits with status 1
when a page is missing or out of date (``tests/test_docs_pages.py`` does the same).
"""

from __future__ import annotations

import inspect
import sys
import textwrap
from pathlib import Path

import click

from volumetric_cli.main import COMMANDS, vol

PAGES = Path(__file__).resolve().parent / "commands"
BEGIN = "<!-- generated: options -->"
END = "<!-- end generated -->"


def _cell(text: str) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def options_table(command: click.Command, ctx: click.Context) -> str:
    """A Markdown table of a command's options: name, value, default, help.

    Parameters
    ----------
    command : click.Command
        The command whose parameters are listed.
    ctx : click.Context
        Its context (click needs one for metavars).

    Returns
    -------
    str
        The table, or a line saying the command has no options.
    """
    rows = []
    for param in command.get_params(ctx):
        if not isinstance(param, click.Option) or param.hidden or "--help" in param.opts:
            continue
        names = ", ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
        value = "" if param.is_flag else f"`{_cell(param.make_metavar(ctx))}`"
        default = param.default
        unset = default is None or type(default).__name__ == "Sentinel" or callable(default)
        shown = "" if unset or param.is_flag and not default else f"`{_cell(default)}`"
        rows.append(f"| {names} | {value} | {shown} | {_cell(param.help or '')} |")
    if not rows:
        return "No options."
    return "\n".join(["| option | value | default | description |", "|---|---|---|---|", *rows])


def _help(command: click.Command) -> list[str]:
    """The command's help as Markdown: its prose, then its example as a shell block."""
    text = inspect.cleandoc(command.help or "").replace("\b\n", "")
    prose, _, example = text.partition("Example:")
    lines = [prose.strip(), ""]
    if example.strip():
        lines += ["Example:", "", "```sh", textwrap.dedent(example.strip("\n")).rstrip(), "```", ""]
    return lines


def _section(command: click.Command, path: list[str], level: int) -> list[str]:
    # the group's settings (help as -h too): click keeps the help option it first makes
    ctx = click.Context(command, info_name=path[-1], **vol.context_settings)
    usage = " ".join(path) + " " + " ".join(command.collect_usage_pieces(ctx))
    lines = [f"{'#' * level} `{' '.join(path)}`", "", "```", usage.strip(), "```", "",
             *_help(command)]
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            lines += _section(command.get_command(ctx, name), [*path, name], level + 1)
    else:
        lines += ["Options:", "", options_table(command, ctx), ""]
    return lines


def generated(name: str) -> str:
    """The generated part of the page of ``vol NAME``, markers included."""
    command = vol.get_command(click.Context(vol, **vol.context_settings), name)
    body = "\n".join(_section(command, ["vol", name], 2)).rstrip()
    return f"{BEGIN}\n\n{body}\n\n{END}"


def page(name: str, current: str | None) -> str:
    """The page of ``vol NAME``: ``current`` with its generated part replaced.

    A page that does not exist yet gets a title and empty hand-written sections.
    """
    if current is None:
        current = (f"# vol {name}\n\n{BEGIN}\n{END}\n\n## What it writes\n\n"
                   "## Examples\n\n")
    head, rest = current.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    return head + generated(name) + tail


def main(argv: list[str]) -> int:
    """Write (or with ``--check`` compare) every command's page; the exit status."""
    check = "--check" in argv
    stale = []
    PAGES.mkdir(exist_ok=True)
    for name in sorted(COMMANDS):
        path = PAGES / f"{name}.md"
        current = path.read_text() if path.exists() else None
        new = page(name, current)
        if new != current:
            stale.append(path.name)
            if not check:
                path.write_text(new)
    if check and stale:
        print("out of date: " + ", ".join(stale) + "; run python docs/generate.py")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
