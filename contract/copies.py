"""Where the naming contract's block is copied, and how to copy it there.

    python -m contract.copies          # rewrite every copy from contract/naming.py
    python -m contract.copies --check  # exit 1 naming each copy that differs

Cookiecutter runs a hook from a temporary file, and a generated project's scripts must
stand alone, so neither can import contract/naming.py: each holds the block verbatim.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CANONICAL = REPO / "contract" / "naming.py"
BEGIN = "# --- naming contract ("
END = "# --- end of naming contract ---\n"
COPIES = (
    "hooks/pre_gen_project.py",
    "hooks/post_gen_project.py",
    "warehouse-template/hooks/pre_gen_project.py",
    "{{cookiecutter.project_slug}}/scripts/regenerate.py",
    "warehouse-template/{{cookiecutter.warehouse_slug}}/scripts/regenerate.py",
)


def block(text: str, where: str) -> tuple[int, int]:
    """Start and end offsets of the block in *text* (end after its last line)."""
    start, end = text.find(BEGIN), text.find(END)
    if start < 0 or end < start:
        raise ValueError(f"{where}: no naming contract block (lines {BEGIN!r} ... {END!r})")
    return start, end + len(END)


def contract_block() -> str:
    text = CANONICAL.read_text()
    start, end = block(text, str(CANONICAL))
    return text[start:end]


def stale_copies() -> list[str]:
    wanted = contract_block()
    stale = []
    for name in COPIES:
        text = (REPO / name).read_text()
        start, end = block(text, name)
        if text[start:end] != wanted:
            stale.append(name)
    return stale


def write_copies() -> None:
    wanted = contract_block()
    for name in COPIES:
        path = REPO / name
        text = path.read_text()
        start, end = block(text, name)
        path.write_text(text[:start] + wanted + text[end:])


def main(argv: list[str]) -> int:
    if argv == ["--check"]:
        stale = stale_copies()
        for name in stale:
            print(f"error: {name} holds an old copy of the naming contract", file=sys.stderr)
        return 1 if stale else 0
    write_copies()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
