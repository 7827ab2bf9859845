"""Bring an ingest project made by hand (the Prefect 2.10 runbook) under this template.

    python scripts/adopt.py ../clinic-cal --answers '{"project_name": "Clinic Cal"}'
    python scripts/adopt.py ../clinic-cal --answers '{"project_name": "Clinic Cal"}' --link

1. Renders the ingest template at one pinned commit (--commit, default this checkout's HEAD)
   with the project's answers, the way `cruft create` would.
2. Shows the whole difference between the project and that render: what the template adds
   (files the project lacks), what it replaces, what stays the project's own.
3. With --link (a clean git tree): writes the template's files into the project, except the
   project's own ingest code (ingest.py and any --keep), which it keeps and lists in
   .cruft.json's skip so no update touches it, and links the project at the pinned commit,
   not the newest, so the project's first `python scripts/regenerate.py` brings every later
   change. Nothing is committed: review `git diff`, then commit.

A runbook flow whose name breaks the `<slug>-<source>-ingest` rule keeps it with the
`legacy_flow_name` answer, so its deployment and run history on the server stay the same.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO_DIR = Path(__file__).resolve().parent.parent
OWN_CODE = ("transform.py",)  # the template's team-owned file (README: cruft create --skip)
KEPT_BY_DEFAULT = ("ingest.py",)  # a runbook project's own ingest code


class AdoptError(Exception):
    """Adoption cannot go on; the message says why."""


def git(*args: str, cwd: Path) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def default_template() -> str:
    """Where projects will take updates from: this checkout's origin, else the checkout."""
    try:
        return git("remote", "get-url", "origin", cwd=REPO_DIR).strip()
    except subprocess.CalledProcessError:
        return str(REPO_DIR)


def parse_answers(text: str) -> dict[str, Any]:
    try:
        answers = json.loads(text)
    except json.JSONDecodeError as exc:
        raise AdoptError(f"--answers is not valid JSON: {exc}") from None
    if not isinstance(answers, dict) or "project_name" not in answers:
        raise AdoptError('--answers takes a JSON object with at least "project_name"')
    return answers


def render(
    template: str, commit: str, answers: dict[str, Any], into: Path, skip: list[str]
) -> Path:
    """`cruft create` at *commit*: the project as the template makes it, with .cruft.json."""
    import cruft  # here, so --help needs nothing installed
    from cookiecutter.exceptions import FailedHookException

    os.environ["PRH_TEMPLATE_REGENERATING"] = "1"  # no first-bake message
    try:
        project = cruft.create(
            template, output_dir=into, checkout=commit, extra_context=answers, skip=skip
        )
    except FailedHookException:
        raise AdoptError("the template rejected the answers (reason above)") from None
    return Path(project)


def project_files(project: Path) -> set[str]:
    """The project's tracked files, or all of them outside .git when it is no git repo."""
    try:
        return set(git("ls-files", cwd=project).splitlines())
    except subprocess.CalledProcessError:
        return {
            str(path.relative_to(project))
            for path in project.rglob("*")
            if path.is_file() and ".git" not in path.relative_to(project).parts
        }


def rendered_files(rendered: Path) -> set[str]:
    return {str(path.relative_to(rendered)) for path in rendered.rglob("*") if path.is_file()}


def plan(project: Path, rendered: Path, kept: list[str]) -> list[tuple[str, str]]:
    """(action, path) for every file: add, replace, same, keep, or only-in-project."""
    ours, theirs = project_files(project), rendered_files(rendered) - {".cruft.json"}
    rows = []
    for name in sorted(ours | theirs):
        if name in kept and name in ours:
            rows.append(("keep", name))
        elif name not in ours:
            rows.append(("add", name))
        elif name not in theirs:
            rows.append(("only-in-project", name))
        elif (project / name).read_bytes() == (rendered / name).read_bytes():
            rows.append(("same", name))
        else:
            rows.append(("replace", name))
    return rows


NOTES = {
    "add": "the project lacks it",
    "replace": "the template's version; `git diff` after --link shows what goes",
    "keep": "your own code: kept, listed in .cruft.json's skip",
    "only-in-project": "not the template's: review, delete if obsolete (e.g. deployment YAML)",
    "same": "",
}


def show_difference(project: Path, rendered: Path, rows: list[tuple[str, str]]) -> None:
    for action, name in rows:
        if action != "same":
            print(f"  {action:<16} {name}  ({NOTES[action]})")
    print("\nThe whole difference (project -> template):", flush=True)
    with tempfile.TemporaryDirectory(prefix="adopt-") as scratch:
        current = Path(scratch) / "project"
        for action, name in rows:
            if action != "add":
                (current / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(project / name, current / name)
        current.mkdir(exist_ok=True)
        template_view = Path(scratch) / "template"
        shutil.copytree(rendered, template_view, ignore=shutil.ignore_patterns(".cruft.json"))
        subprocess.run(
            ["git", "diff", "--no-index", "--no-color", "project", "template"], cwd=scratch
        )


def link(
    project: Path, rendered: Path, rows: list[tuple[str, str]], template: str, commit: str
) -> None:
    for action, name in rows:
        if action in ("add", "replace"):
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rendered / name, project / name)
    state = json.loads((rendered / ".cruft.json").read_text())
    state["template"] = template
    state["checkout"] = None  # the pin is the commit; updates follow the default branch
    (project / ".cruft.json").write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n")
    print(f"\nLinked {project.name} at template commit {commit[:12]}. Next, in {project}:")
    print("  git diff   # put back what production needs (e.g. prefect/.env values), then")
    print('  git add -A && git commit -m "Adopt prh-ingest-template"')
    print("  python scripts/regenerate.py   # every template change since that commit")


def adopt(args: argparse.Namespace) -> None:
    project = Path(args.project).resolve()
    if not project.is_dir():
        raise AdoptError(f"{args.project}: no such project folder")
    answers = parse_answers(args.answers)
    if args.link and git("status", "--porcelain", cwd=project):
        raise AdoptError(f"{project} has uncommitted changes: commit or stash them first")
    kept = [*KEPT_BY_DEFAULT, *args.keep]
    with tempfile.TemporaryDirectory(prefix="adopt-") as scratch:
        rendered = render(args.template, args.commit, answers, Path(scratch), [*OWN_CODE, *kept])
        commit = json.loads((rendered / ".cruft.json").read_text())["commit"]
        print(f"Template {args.template} at {commit[:12]}, answers {json.dumps(answers)}:")
        rows = plan(project, rendered, kept)
        show_difference(project, rendered, rows)
        if args.link:
            link(project, rendered, rows, args.template, commit)
        else:
            print("\nNothing written. Add --link to write the template's files and link it.")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("project", help="the project folder (a git repo for --link)")
    parser.add_argument("--answers", required=True, help="the template's answers, as JSON")
    parser.add_argument("--template", default=default_template(), help="template git URL")
    parser.add_argument("--commit", default="HEAD", help="template commit to pin (default HEAD)")
    parser.add_argument(
        "--keep", action="append", default=[], metavar="PATH", help="more files of your own"
    )
    parser.add_argument("--link", action="store_true", help="write the files and .cruft.json")
    args = parser.parse_args(argv)
    logging.getLogger("cookiecutter").setLevel(logging.CRITICAL)  # the hook's own line suffices
    try:
        adopt(args)
    except AdoptError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
