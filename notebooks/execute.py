"""Run the notebooks top to bottom in a fresh kernel, and store them with their outputs.

The stored outputs (figures, tables) are what a reader sees on a code host
without running anything, so rerun this after changing a notebook::

    python notebooks/execute.py                      # every notebook, full size, saved
    python notebooks/execute.py 02_em_mitochondria   # one of them
    VOLUMETRIC_NOTEBOOK_SIZE=small python notebooks/execute.py --no-save   # a quick check

The tests (``tests/test_notebooks.py``) run them with
``VOLUMETRIC_NOTEBOOK_SIZE=small`` through :func:`execute` and never write
the files. Needs nbclient and ipykernel (the ``test`` extra).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Any

HERE = Path(__file__).parent
SIZE_VARIABLE = "VOLUMETRIC_NOTEBOOK_SIZE"


def notebooks() -> list[Path]:
    """Every notebook of the folder, in name order."""
    return sorted(HERE.glob("*.ipynb"))


def execute(path: Path, *, timeout: int = 1200) -> Any:
    """The notebook at ``path`` after running every cell in a new ``python3`` kernel.

    The kernel inherits this process's environment (so ``VOLUMETRIC_NOTEBOOK_SIZE``
    and ``VOLUMETRIC_CLUSTER`` reach it) and starts in a temporary folder.
    The file itself is not changed.

    Raises
    ------
    nbclient.exceptions.CellExecutionError
        A cell failed (the message holds its traceback).
    """
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="volumetric-notebook-") as folder:
        NotebookClient(notebook, timeout=timeout, kernel_name="python3",
                       resources={"metadata": {"path": folder}}).execute()
    return notebook


def image_outputs(notebook: Any, mime: str = "image/png") -> int:
    """How many outputs of the notebook's code cells hold an image of type ``mime``."""
    return sum(mime in output.get("data", {})
               for cell in notebook.cells if cell.cell_type == "code"
               for output in cell.get("outputs", []))


def main(argv: list[str] | None = None) -> int:
    import nbformat

    parser = argparse.ArgumentParser(prog="python notebooks/execute.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="notebook names (default: all)")
    parser.add_argument("--no-save", action="store_true", help="run only; keep the files")
    args = parser.parse_args(argv)
    chosen = [p for p in notebooks() if not args.names or p.stem in args.names]
    if not chosen:
        print(f"no notebook named {' '.join(args.names)} in {HERE}", file=sys.stderr)
        return 2
    for path in chosen:
        notebook = execute(path)
        print(f"{path.name}: {image_outputs(notebook)} figures")
        if not args.no_save:
            nbformat.write(notebook, path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
