"""Write the README's table of supported Caffe layer types from the layer registry.

`python tools/gen_layer_table.py` rewrites the block between the layer-table markers in
README.md; `--check` exits 1 when the README disagrees with the registry.
"""

from __future__ import annotations

import argparse
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- layer-table:start -->", "<!-- layer-table:end -->"

ROLE_NOTES = {
    "inference": "",
    "input": "input (fed by the caller)",
    "data": "training data source",
    "train": "training only",
}


def render_table() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from modelport.layers.registry import specs

    rows = ["| Caffe type | Family | Role | What modelport reproduces |", "|---|---|---|---|"]
    for spec in specs():
        summary = spec.summary.replace("|", "\\|")
        rows.append(f"| `{spec.type}` | {spec.family} | {ROLE_NOTES.get(spec.role, spec.role)} "
                    f"| {summary} |")
    return "\n".join(rows)


def rewrite(text: str, table: str) -> str:
    if START not in text or END not in text:
        raise SystemExit(f"README.md lacks the {START} / {END} markers")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{table}\n{END}{tail}"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args()
    text = README.read_text()
    new = rewrite(text, render_table())
    if args.check:
        if new != text:
            print("README.md's layer table is out of date: run python tools/gen_layer_table.py",
                  file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
