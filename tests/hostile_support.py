"""Hostile layer names shared by the hostile-name tests (model.py and model_keras.py).

Each payload would run code (create `canary`) if a generator pasted it into source unquoted;
`quote` writes any name as a prototxt string literal.
"""

from __future__ import annotations

import pathlib


def code_payloads(canary: pathlib.Path) -> list[str]:
    """Names that would run code if pasted into source unquoted (each creates `canary`)."""
    c = str(canary)
    return [
        f'o"""\n    open({c!r}, "w").close()\n    """',
        f"t'''\nopen({c!r}, 'w').close()\n'''",
        f'q")\nopen({c!r}, "w").close()\n#',
        f"h\nopen({c!r}, 'w').close()  #",
        f"s\\\nopen({c!r}, 'w').close()",
    ]


def quote(text: str) -> str:
    """`text` as a prototxt string literal (C escapes; NUL and control characters as octal)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 32:
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'
