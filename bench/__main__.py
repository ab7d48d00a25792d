"""`python -m bench` (`make bench`): run every benchmark module in this folder, in name order.

Each `bench/<name>.py` with a `main()` or `main(argv)` function is one entry; adding a file adds a
benchmark, nothing here needs editing. `python -m bench NAME ...` runs only those entries.
"""

from __future__ import annotations

import importlib
import inspect
import pathlib
import sys


def entries() -> list[str]:
    here = pathlib.Path(__file__).parent
    return sorted(p.stem for p in here.glob("*.py") if not p.stem.startswith("_"))


def main(argv: list[str]) -> int:
    chosen = argv or entries()
    status = 0
    for name in chosen:
        module = importlib.import_module(f"bench.{name}")
        run = getattr(module, "main", None)
        if run is None:
            continue
        print(f"== bench/{name}.py", flush=True)
        sys.argv = [f"bench/{name}.py"]  # entries that parse sys.argv see no options
        takes_argv = bool(inspect.signature(run).parameters)
        try:
            status |= int((run([]) if takes_argv else run()) or 0)
        except SystemExit as exc:  # an entry that exits instead of returning
            status |= int(exc.code or 0)
    return status


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
