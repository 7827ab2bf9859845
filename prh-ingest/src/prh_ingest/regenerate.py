"""Keep this project current with the template that made it.

    python scripts/regenerate.py             # take the newest template, same answers
    python scripts/regenerate.py --check     # exit 1 when the template changed since, else 0
    python scripts/regenerate.py --resolved  # after fixing a conflicted update by hand
  change an ingest project's sources at the same time:
    python scripts/regenerate.py --add '{"cerner": "csv"}'    # a source: its flow and table
    python scripts/regenerate.py --remove cerner
  (a warehouse's flows are its own prefect/flows.json: `python prefect/prw_deploy.py --add`)

The answers and the template commit live in .cruft.json. cruft renders the template twice
(the old answers at the recorded commit, the new answers at the newest one) and applies
the difference with a 3-way merge, so hand edits and hand-written files stay. It refuses
a dirty tree, so `git diff HEAD` shows exactly what changed and `git reset --hard` undoes it.
When the merge leaves a conflict, a rejected hunk or a patch git could not apply, the
script names the files, exits 1 and keeps .cruft.json at the old commit until you fix them
and run `--resolved` (cruft alone would record the update as done).

This module serves the ingest-project template and the warehouse template; .cruft.json's
"directory" says which one made the project, and --check looks only at that template's
own files (and the contract/ and prh-ingest/ both share), so a commit to the other template
never flags the project. Each project runs it through its few-line scripts/regenerate.py
(the template repository's contract/scripts/regenerate.py), on the prh-ingest its
development environment installs.
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
import tempfile
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prh_ingest.naming import Invalid, flow_name, json_mapping, warehouse_entry

# The project being regenerated: main() sets both from the project's scripts/regenerate.py.
PROJECT = Path.cwd()
CRUFT_FILE = PROJECT / ".cruft.json"
PENDING_NAME = "regenerate-pending.json"  # the finished update's .cruft.json, inside .git/
REGENERATING = "PRH_TEMPLATE_REGENERATING"


@dataclass(frozen=True)
class Template:
    """What one template of the repository is made of, and what --add/--remove edit."""

    title: str
    directory: str | None  # cruft's --directory
    paths: tuple[str, ...]  # the template's own files in its repository
    collection: str | None  # the answer --add/--remove edit
    noun: str
    own_code: tuple[str, ...]  # the team's files: template updates never touch them


INGEST_DIR = "{{" "cookiecutter.project_slug}}"  # split: no template marker in this file
# Both templates' hooks and names come from there: the template glue and the engine package.
SHARED = ("contract", "prh-ingest")
INGEST = Template(
    "ingest-project template",
    None,
    ("cookiecutter.json", "hooks", INGEST_DIR, *SHARED),
    "extra_sources",
    "source",
    ("transform.py",),
)
# A warehouse's flows are the team's prefect/flows.json (prw_deploy.py --add edits it).
WAREHOUSE = Template(
    "warehouse template",
    "warehouse-template",
    ("warehouse-template", *SHARED),
    None,
    "flow",
    ("prefect/flows.json",),
)
FLOWS_EDIT = "python prefect/prw_deploy.py"  # how a warehouse adds and removes its flows


class RegenerateError(Exception):
    """The regeneration cannot start or did not finish cleanly; the message says why."""


def git(*args: str, cwd: Path | None = None) -> str:
    """git in *cwd*, by default the project (read at the call: main() sets it)."""
    return subprocess.run(
        ["git", *args], cwd=cwd or PROJECT, check=True, capture_output=True, text=True
    ).stdout


def this_template() -> Template:
    """Which template made this project: from .cruft.json, or, before it is linked, the files."""
    if CRUFT_FILE.is_file():
        directory = read_state().get("directory") or None
    else:
        directory = WAREHOUSE.directory if (PROJECT / "prefect/prw_deploy.py").is_file() else None
    return WAREHOUSE if directory == WAREHOUSE.directory else INGEST


def link_hint(template: Template) -> str:
    directory = f"--directory {template.directory} " if template.directory else ""
    skip = "".join(f"--skip {name} " for name in template.own_code)
    return (
        f"no .cruft.json: link this project to its template once with `cruft link -y "
        f"{directory}{skip}--checkout <the template commit it was made from> --extra-context "
        "'<the answers it was made with, as JSON>' <template url>` (at that commit, not the "
        "newest, so the next update brings every later change), commit, then regenerate; "
        "the template's MIGRATING.md shows the difference first"
    )


def read_state() -> dict[str, Any]:
    if not CRUFT_FILE.is_file():
        raise RegenerateError(link_hint(this_template()))
    return json.loads(CRUFT_FILE.read_text())


# --- --check: has this template's own part changed since the recorded commit? ------------------


def template_clone(state: dict[str, Any], into: Path) -> Path:
    """A clone of the template repository (no work tree) at its newest commit."""
    branch = ["--branch", state["checkout"]] if state.get("checkout") else []
    try:
        git("clone", "--quiet", "--bare", *branch, state["template"], str(into), cwd=PROJECT)
    except subprocess.CalledProcessError as exc:
        reason = exc.stderr.strip().splitlines()[-1] if exc.stderr.strip() else "git clone failed"
        raise RegenerateError(f"cannot clone the template {state['template']}: {reason}") from None
    return into


def template_changes(template: Template, state: dict[str, Any]) -> tuple[str, str, list[str]]:
    """(recorded commit, newest commit, `<hash> <subject>` of each commit since then that
    touches this template's own files)."""
    with tempfile.TemporaryDirectory(prefix="regenerate-") as scratch:
        clone = template_clone(state, Path(scratch) / "template.git")
        newest = git("rev-parse", "HEAD", cwd=clone).strip()
        recorded = state["commit"]
        try:
            git("cat-file", "-e", f"{recorded}^{{commit}}", cwd=clone)
        except subprocess.CalledProcessError:
            raise RegenerateError(
                f".cruft.json's commit {recorded[:12]} is not in {state['template']}"
            ) from None
        log = git(
            "log", "--format=%h %s", f"{recorded}..{newest}", "--", *template.paths, cwd=clone
        )
    return recorded, newest, log.splitlines()


def check(template: Template) -> int:
    recorded, newest, commits = template_changes(template, read_state())
    if not commits:
        print(f"Up to date: no change to the {template.title} since {recorded[:12]}.")
        return 0
    print(
        f"template update available: {recorded[:12]}..{newest[:12]} has {len(commits)} "
        f"commit(s) to the {template.title}:"
    )
    for line in commits:
        print(f"  {line}")
    print("Take them with `python scripts/regenerate.py` (clean tree), review, commit.")
    return 1


# --- Updating -----------------------------------------------------------------------------------


def updated_answers(
    template: Template, answers: dict[str, Any], add: list[str], remove: list[str]
) -> dict[str, Any] | None:
    """The answers --add and --remove change (None: none); the template's hook validates them."""
    if not add and not remove:
        return None
    if template.collection is None:
        raise RegenerateError(
            f"a warehouse's flows are its own prefect/flows.json: `{FLOWS_EDIT} --add "
            f"'<entry>'` or `{FLOWS_EDIT} --remove NAME` edits it; nothing changed"
        )
    # JSON text when the project was made with the answer on cookiecutter's command line
    before = json_mapping(template.collection, answers.get(template.collection, {}))
    entries = dict(before)
    for text in add:
        if any(marker in text for marker in ("{{", "{%", "{#")):
            raise RegenerateError("--add must not contain template markers ({{, {%, {#)")
        entries.update(json_mapping("--add", text))
    for name in remove:
        if name not in entries:
            have = ", ".join(entries) or "none"
            raise RegenerateError(f"--remove {name}: no such {template.noun} (have: {have})")
        del entries[name]
    if entries == before:
        return None
    return {template.collection: entries}


def run_cruft_update(changes: dict[str, Any] | None) -> str:
    """Run cruft's update and return what it printed: it reports a patch git could not
    apply only as text (then keeps your file and carries on), so the caller reads it."""
    import cruft  # here, so that --check needs nothing but git
    from cookiecutter.exceptions import FailedHookException

    output = io.StringIO()
    os.environ[REGENERATING] = "1"  # the ingest hook's next-steps message is for a first bake
    try:
        with redirect_stdout(output), redirect_stderr(output):
            done = cruft.update(project_dir=PROJECT, skip_apply_ask=True, extra_context=changes)
    except FailedHookException:
        raise RegenerateError(
            "the template rejected the answers (reason above); nothing changed"
        ) from None
    finally:
        print(output.getvalue(), end="")
    if not done:
        raise RegenerateError("cruft did not update the project (reason above)")
    return output.getvalue()


def with_conflict_markers(paths: list[str]) -> list[str]:
    marked = []
    for name in paths:
        path = PROJECT / name
        if path.is_file():
            text = path.read_text(errors="replace")
            if re.search(r"^(<<<<<<<|>>>>>>>) ", text, re.MULTILINE):
                marked.append(name)
    return marked


def unresolved(cruft_output: str = "") -> list[str]:
    """Files the 3-way merge could not settle: conflict markers, .rej leftovers, or a
    template change git could not apply at all (e.g. deleting a file you edited)."""
    conflicted = git("diff", "--name-only", "--diff-filter=U").split()
    changed = [line[3:] for line in git("status", "--porcelain").splitlines()]
    rejected = [name for name in changed if name.endswith(".rej")]
    unapplied = re.findall(r"^error: (.+): patch does not apply$", cruft_output, re.MULTILINE)
    return sorted(set(conflicted + rejected + unapplied + with_conflict_markers(changed)))


def pending_file() -> Path:
    return PROJECT / git("rev-parse", "--git-path", PENDING_NAME).strip()


def keep_old_commit(old_state: str) -> str:
    """Put .cruft.json back as it was and keep the new one aside for --resolved."""
    new_state = CRUFT_FILE.read_text()
    pending_file().write_text(new_state)
    CRUFT_FILE.write_text(old_state)
    return json.loads(new_state)["commit"]


def protect_own_code(template: Template) -> list[str]:
    """List the team's own files in .cruft.json's skip, so updates never touch them."""
    state = read_state()
    skip = state.get("skip", [])
    missing = [name for name in template.own_code if name not in skip]
    if missing:
        state["skip"] = [*skip, *missing]
        CRUFT_FILE.write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n")  # as cruft
    return missing


def regenerate(template: Template, add: list[str], remove: list[str]) -> None:
    if git("status", "--porcelain"):
        raise RegenerateError("uncommitted changes: commit or stash them first, then regenerate")
    old_state = CRUFT_FILE.read_text() if CRUFT_FILE.is_file() else ""
    state = read_state()
    changes = updated_answers(template, state["context"]["cookiecutter"], add, remove)
    old_commit = state["commit"]
    _, _, commits = template_changes(template, state)
    cruft_output = run_cruft_update(changes)
    if files := unresolved(cruft_output):
        new_commit = keep_old_commit(old_state)
        raise RegenerateError(
            f"merge conflicts to resolve by hand: {', '.join(files)}; .cruft.json stays at "
            f"{old_commit[:12]}. Fix them, then `python scripts/regenerate.py --resolved` "
            f"records {new_commit[:12]} (or `git reset --hard` gives the update up)"
        )
    pending_file().unlink(missing_ok=True)
    report(template, old_commit, commits)
    if changes and template is INGEST:
        report_sources(state["context"]["cookiecutter"], read_state()["context"]["cookiecutter"])


def report(template: Template, old_commit: str, commits: list[str]) -> None:
    new_commit = read_state()["commit"]
    if new_commit != old_commit:
        span = f"{old_commit[:12]}..{new_commit[:12]}"
        print(f"Template {span}: {len(commits)} change(s) to the {template.title}")
        for line in commits:
            print(f"  {line}")
    for name in protect_own_code(template):
        print(f"{name} is yours: listed in .cruft.json's skip, so updates never touch it")
    print(git("status", "--short") or "No changes.")
    print("Next: review `git diff HEAD`, run the tests, commit.")
    if template is WAREHOUSE:
        print("Then `python prefect/prw_deploy.py --dry-run`; deploy with")
        print("`python prefect/prw_deploy.py` (add --prune after removing a flow).")


def report_sources(old: dict[str, Any], new: dict[str, Any]) -> None:
    """What the warehouse must change for the sources added or removed."""
    slug = new["project_slug"]
    before = json_mapping("extra_sources", old.get("extra_sources", {}))
    after = json_mapping("extra_sources", new.get("extra_sources", {}))
    added = [source for source in after if source not in before]
    removed = [source for source in before if source not in after]
    if added:
        print("Commit and push, then register the new flow in the warehouse repo:")
        for source in added:
            entry = warehouse_entry(flow_name(slug, source), new["git_repo_url"])
            print(f"    {FLOWS_EDIT} --add '{json.dumps(entry)}'")
    for source in removed:
        flow = flow_name(slug, source)
        print(f"In the warehouse repo: {FLOWS_EDIT} --remove {flow}")


def record_resolved() -> None:
    """After a conflicted update: once no conflict is left, record the template commit."""
    pending = pending_file()
    if not pending.is_file():
        raise RegenerateError("no conflicted update to finish: run `python scripts/regenerate.py`")
    if files := unresolved():
        raise RegenerateError(f"still unresolved: {', '.join(files)}")
    CRUFT_FILE.write_text(pending.read_text())
    pending.unlink()
    print(f"Recorded template commit {read_state()['commit'][:12]} in .cruft.json.")
    print(git("status", "--short"), end="")
    print("Next: review `git diff HEAD`, run the tests, commit.")


def main(project: Path, argv: list[str] | None = None) -> int:
    """`python scripts/regenerate.py [...]` in *project* (the folder holding .cruft.json)."""
    global PROJECT, CRUFT_FILE
    PROJECT, CRUFT_FILE = project, project / ".cruft.json"
    parser = argparse.ArgumentParser(
        prog="scripts/regenerate.py", description=__doc__.splitlines()[0]
    )
    action = parser.add_mutually_exclusive_group()
    action.add_argument(
        "--check", action="store_true", help="exit 1 when the template changed since, else 0"
    )
    action.add_argument(
        "--resolved", action="store_true", help="record a conflicted update once fixed by hand"
    )
    parser.add_argument(
        "--add",
        action="append",
        default=[],
        metavar="JSON",
        help='flows to add or replace: {"<deployment>": {...}}; sources: {"<source>": "csv"}',
    )
    parser.add_argument(
        "--remove", action="append", default=[], metavar="NAME", help="a flow or source to remove"
    )
    args = parser.parse_args(argv)
    logging.getLogger("cookiecutter").setLevel(logging.CRITICAL)  # the hook's own line suffices
    os.environ["LC_ALL"] = "C"  # git's messages, which unresolved() reads, in English
    template = this_template()
    try:
        if args.check:
            return check(template)
        if args.resolved:
            record_resolved()
        else:
            regenerate(template, args.add, args.remove)
    except (RegenerateError, Invalid) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2 if args.check else 1
    return 0
