"""MIGRATING.md as the migration tests read it: its steps, each step's fenced ```bash blocks
(an info string's further words tag a block: `sqlite`, `postgresql`, `systemd`) and the
commands of its "Verify:" paragraphs, with the `<placeholders>` the test fills in, and
`stop_on_failure`, which makes a block stop at its first failing command line."""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support.commands import REPO_DIR

DOCUMENT = REPO_DIR / "MIGRATING.md"
HEADING = re.compile(r"^## (?:(\d+)\. )?(.+)$")
FENCE = re.compile(r"^```(\S*)(.*)$")
# A Verify paragraph's `code` spans that are commands, not values such as `False`.
COMMANDS = ("sqlite3", "pg_restore", "prefect", "curl", "python", "systemctl", "pgrep")
PLACEHOLDER = re.compile(r"<[a-z][\w ./-]*>")


@dataclass(frozen=True)
class Block:
    tags: frozenset[str]
    lines: tuple[str, ...]


@dataclass
class Step:
    key: str  # "0".."8", or the heading of an unnumbered section
    title: str
    blocks: list[Block] = field(default_factory=list)
    verify: list[str] = field(default_factory=list)  # the commands of its Verify lines
    verify_text: str = ""  # its Verify paragraphs

    def block(self, *tags: str) -> Block:
        """The one block with exactly *tags*."""
        found = [block for block in self.blocks if block.tags == frozenset(tags)]
        assert len(found) == 1, f"step {self.key}: {len(found)} blocks tagged {tags}"
        return found[0]

    def verify_commands(self, *starts: str) -> list[str]:
        return [command for command in self.verify if command.startswith(starts)]


def read_steps(path: Path = DOCUMENT) -> dict[str, Step]:
    steps: dict[str, Step] = {}
    current: Step | None = None
    fence: list[str] | None = None
    tags: frozenset[str] = frozenset()
    paragraph: list[str] = []

    def end_paragraph() -> None:
        text = " ".join(paragraph)
        if current is not None and text.startswith("Verify:"):
            current.verify_text += text + "\n"
            spans = re.findall(r"`([^`]+)`", text)
            current.verify += [span for span in spans if span.split()[0] in COMMANDS]
        paragraph.clear()

    for line in path.read_text().splitlines():
        if fence is not None:
            if line.startswith("```"):
                assert current is not None
                current.blocks.append(Block(tags, tuple(fence)))
                fence = None
            else:
                fence.append(line)
            continue
        opening = FENCE.match(line)
        if opening:
            end_paragraph()
            fence, tags = [], frozenset(opening.group(2).split())
            assert opening.group(1) == "bash", f"a block that is not bash: {line}"
            continue
        heading = HEADING.match(line)
        if heading:
            end_paragraph()
            current = Step(heading.group(1) or heading.group(2), heading.group(2))
            steps[current.key] = current
        elif line.strip():
            paragraph.append(line.strip())
        else:
            end_paragraph()
    end_paragraph()
    return steps


def fill(
    lines: Sequence[str], values: Mapping[str, str], each: Mapping[str, Sequence[str]] = {}
) -> str:
    """A bash script of *lines* with every placeholder filled: from *values*, or, for a
    placeholder in *each*, the line repeated once per value (a `<x> ...` list: all at once)."""
    script = []
    for line in lines:
        repeated = [name for name in each if name in line]
        if repeated and f"{repeated[0]} ..." in line:
            line = line.replace(f"{repeated[0]} ...", " ".join(each[repeated[0]]))
            repeated = []
        copies = (
            [line.replace(repeated[0], value) for value in each[repeated[0]]]
            if repeated
            else [line]
        )
        for copy in copies:
            for name, value in values.items():
                copy = copy.replace(name, value)
            left = PLACEHOLDER.findall(copy.split(" # ")[0])
            assert not left, f"placeholders left in {copy!r}: {left}"
            script.append(copy)
    return "\n".join(script)


def stop_on_failure(script: str) -> str:
    """*script* with a check after each command line (a `\\`-continued one: after its last
    line) that stops it, naming the line, when the line's status is not 0. `bash -e` alone
    goes on after `a && b` when `a` fails (only the last command of a list stops it), as a
    reader's pasted block would, and the block's status is then its last line's."""
    out: list[str] = []
    command: list[str] = []
    for line in script.splitlines():
        out.append(line)
        command.append(line)
        if line.endswith("\\") or not line.strip() or line.lstrip().startswith("#"):
            if not line.endswith("\\"):
                command.clear()
            continue
        quoted = shlex.quote(" ".join(part.strip() for part in command))
        out.append(
            f'__status=$?; if [ "$__status" -ne 0 ]; then'
            f' echo "block line failed ($__status): "{quoted} >&2; exit "$__status"; fi'
        )
        command.clear()
    return "\n".join(out)
