"""Regenerate this warehouse from its template: add, change or remove flows, take updates.

    python scripts/regenerate.py --add '{"<deployment>": {"repo": "...", "entrypoint": "...",
                                          "cron": "..."}}'
    python scripts/regenerate.py --remove <deployment>
    python scripts/regenerate.py      # the same answers, the newest template

The answers live in .cruft.json. cruft renders the template twice (old answers at the
old template commit, new answers at the newest one) and applies the difference with a
3-way merge, so hand edits and hand-written files stay. It refuses a dirty tree, so
`git diff HEAD` shows exactly what changed and `git reset --hard` undoes it.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import re
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import cruft
from cookiecutter.exceptions import FailedHookException

WAREHOUSE = Path(__file__).resolve().parent.parent


class RegenerateError(Exception):
    """The regeneration cannot start or did not finish cleanly; the message says why."""


def git(*args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=WAREHOUSE, check=True, capture_output=True, text=True
    ).stdout


def current_flows() -> dict[str, Any]:
    answers = WAREHOUSE / ".cruft.json"
    if not answers.is_file():
        raise RegenerateError(
            "no .cruft.json: link this warehouse to its template once with `cruft link -y "
            "--directory warehouse-template --extra-context '<the answers it was baked with, "
            "as JSON>' <template url>`, commit, then regenerate"
        )
    state = json.loads(answers.read_text())
    return state["context"]["cookiecutter"].get("flows", {})


def updated_flows(flows: dict[str, Any], add: list[str], remove: list[str]) -> dict[str, Any]:
    """The answers after --add and --remove; the template's hook validates the entries."""
    flows = dict(flows)
    for text in add:
        if any(marker in text for marker in ("{{", "{%", "{#")):
            raise RegenerateError("--add must not contain template markers ({{, {%, {#)")
        try:
            entries = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RegenerateError(f"--add is not valid JSON: {exc}") from None
        if not isinstance(entries, dict):
            raise RegenerateError('--add takes a JSON object: {"<deployment>": {...}}')
        flows.update(entries)
    for name in remove:
        if name not in flows:
            raise RegenerateError(
                f"--remove {name}: no such flow (have: {', '.join(flows) or 'none'})"
            )
        del flows[name]
    return flows


def update(changes: dict[str, Any] | None) -> str:
    """Run cruft's update and return what it printed: it reports a patch git could not
    apply only as text (then keeps your file and carries on), so the caller reads it."""
    output = io.StringIO()
    try:
        with redirect_stdout(output), redirect_stderr(output):
            done = cruft.update(project_dir=WAREHOUSE, skip_apply_ask=True, extra_context=changes)
    except FailedHookException:
        raise RegenerateError(
            "the template rejected the answers (reason above); nothing changed"
        ) from None
    finally:
        print(output.getvalue(), end="")
    if not done:
        raise RegenerateError("cruft did not update the warehouse (reason above)")
    return output.getvalue()


def unresolved(cruft_output: str) -> list[str]:
    """Files the 3-way merge could not settle: conflict markers, .rej leftovers, or a
    template change git could not apply at all (e.g. deleting a file you edited)."""
    conflicted = git("diff", "--name-only", "--diff-filter=U").split()
    rejected = [
        line[3:] for line in git("status", "--porcelain").splitlines() if line.endswith(".rej")
    ]
    unapplied = re.findall(r"^error: (.+): patch does not apply$", cruft_output, re.MULTILINE)
    return sorted(set(conflicted + rejected + unapplied))


def regenerate(add: list[str], remove: list[str]) -> None:
    if git("status", "--porcelain"):
        raise RegenerateError("uncommitted changes: commit or stash them first, then regenerate")
    flows = current_flows()
    new_flows = updated_flows(flows, add, remove)
    cruft_output = update({"flows": new_flows} if new_flows != flows else None)
    if conflicts := unresolved(cruft_output):
        raise RegenerateError(
            f"merge conflicts to resolve by hand, then commit: {', '.join(conflicts)}"
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="JSON",
        help='flows to add or replace: {"<deployment>": {...}}',
    )
    parser.add_argument(
        "--remove", action="append", default=[], metavar="DEPLOYMENT", help="a flow to remove"
    )
    args = parser.parse_args(argv)
    logging.getLogger("cookiecutter").setLevel(logging.CRITICAL)  # the hook's own line suffices
    os.environ["LC_ALL"] = "C"  # git's messages, which unresolved() reads, in English
    try:
        regenerate(args.add, args.remove)
    except RegenerateError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(git("status", "--short") or "No changes.")
    print("Next: review `git diff HEAD`, commit, then `python prefect/prw_deploy.py --dry-run`;")
    print("deploy with `python prefect/prw_deploy.py` (add --prune after removing a flow).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
