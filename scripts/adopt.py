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

A kept ingest.py keeps what it runs on: the template's own loader tests (tests/test_ingest.py)
are not added (and skipped by updates), the project's prefect/.env settings stay (merged into
the template's file, their values winning), and the packages of the project's Pipfile or
requirements.txt go into the template's dependency file. Each is printed. In a Pipfile they
also get the bounds the template's dev packages (prefect, for the tests) put on what they pull
in (see dev_bounds): pipenv locks [packages] before [dev-packages], so without them it takes,
say, pandas' newest python-dateutil, which prefect refuses, and `pipenv lock` fails.

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
LOADER_TESTS = "tests/test_ingest.py"  # the template loader's tests: not for a kept ingest.py
SETTINGS_FILE = "prefect/.env"
# Untracked files Prefect 2 and the runbook flow leave in a project folder: Deployment.build's
# .prefectignore (Prefect 3 does not read it) and the Pipfile.lock of the runbook's
# `pipenv install` (the template's Pipfile replaces the Pipfile it locked).
LEFTOVERS = (".prefectignore", "Pipfile.lock")


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
        elif name in kept:
            rows.append(("skip", name))
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
    "skip": "the template loader's tests: not added while ingest.py is your own",
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
            if action not in ("add", "skip"):
                (current / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(project / name, current / name)
        current.mkdir(exist_ok=True)
        template_view = Path(scratch) / "template"
        shutil.copytree(rendered, template_view, ignore=shutil.ignore_patterns(".cruft.json"))
        for action, name in rows:
            if action == "skip":
                (template_view / name).unlink()
        subprocess.run(
            ["git", "diff", "--no-index", "--no-color", "project", "template"], cwd=scratch
        )


def setting_lines(text: str) -> dict[str, str]:
    """NAME -> the `NAME=value` line, for each setting of a .env file."""
    lines = {}
    for line in text.splitlines():
        name, equals, _ = line.partition("=")
        if equals and not line.lstrip().startswith("#"):
            lines[name.strip()] = line
    return lines


def merge_settings(own: str, template: str) -> tuple[str, list[str]]:
    """The template's .env with the project's own settings kept: a setting both have takes
    the project's value in place, one only the project has is appended. Returns the text and
    the names kept."""
    ours, theirs = setting_lines(own), setting_lines(template)
    lines = [
        ours.get(line.partition("=")[0].strip(), line)
        if not line.lstrip().startswith("#")
        else line
        for line in template.splitlines()
    ]
    extra = [ours[name] for name in ours if name not in theirs]
    if extra:
        lines += ["", "# The project's own settings, kept by scripts/adopt.py.", *extra]
    return "\n".join(lines) + "\n", list(ours)


def package_name(requirement: str) -> str:
    name = requirement.split(";")[0]
    for mark in "[<>=!~ ":
        name = name.split(mark)[0]
    return name.strip().lower().replace("_", "-")


def own_requirements(project: Path) -> list[str]:
    """The packages the project's own Pipfile ([packages]) or requirements.txt lists."""
    import tomllib

    pipfile, requirements = project / "Pipfile", project / "requirements.txt"
    if pipfile.exists():
        packages = tomllib.loads(pipfile.read_text()).get("packages", {})
        return [
            name if spec in ("*", "") or not isinstance(spec, str) else f"{name}{spec}"
            for name, spec in packages.items()
        ]
    if requirements.exists():
        lines = [line.split("#")[0].strip() for line in requirements.read_text().splitlines()]
        return [line for line in lines if line and not line.startswith("-")]
    return []


def add_requirements(rendered: Path, wanted: list[str]) -> tuple[str, list[str]]:
    """Write the requirements of *wanted* that the template's dependency file lacks into it
    (Pipfile [packages], pyproject.toml's dependencies or requirements.txt); returns the file
    and the added ones."""
    import tomllib

    pipfile, pyproject = rendered / "Pipfile", rendered / "pyproject.toml"
    if pipfile.exists():
        path, have = pipfile, tomllib.loads(pipfile.read_text()).get("packages", {})
    elif pyproject.exists():
        path, have = pyproject, tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    else:
        path = rendered / "requirements.txt"
        have = [line for line in path.read_text().splitlines() if line[:1].isalnum()]
    have_names = {package_name(name) for name in have}
    missing = [req for req in wanted if package_name(req) not in have_names]
    if missing:
        text = path.read_text()
        if path is pipfile:
            lines = [
                f'{package_name(req)} = "{req[len(package_name(req)) :] or "*"}"' for req in missing
            ]
            text = text.replace("[packages]\n", "[packages]\n" + "\n".join(lines) + "\n", 1)
        elif path is pyproject:
            lines = "".join(f'    "{req}",\n' for req in missing)
            text = text.replace("dependencies = [\n", "dependencies = [\n" + lines, 1)
        else:
            text += "".join(f"{req}\n" for req in missing)
        path.write_text(text)
    return path.name, missing


def requirement_bounds(name: str) -> list[tuple[str, str]]:
    """(package, specifier) for each requirement of the installed distribution *name* that
    applies here (markers evaluated, extras left out)."""
    from importlib import metadata

    from packaging.requirements import Requirement

    bounds = []
    for line in metadata.requires(name) or []:
        requirement = Requirement(line)
        if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
            bounds.append((package_name(requirement.name), str(requirement.specifier)))
    return bounds


def dev_bounds(pipfile: dict[str, Any]) -> dict[str, str]:
    """Package -> the specifier the Pipfile's [dev-packages], at their pins, and everything
    they pull in put on it, read from this Python's installed copies (the clone's
    `pip install -r requirements.txt`: the same pins). Only the parts that can refuse a newer
    release (`<`, `!=`, `==`, `~=`) are kept: a [packages] lock takes the newest it may."""
    from importlib import metadata

    from packaging.specifiers import SpecifierSet

    specifiers: dict[str, SpecifierSet] = {}
    seen: set[str] = set()
    todo = []
    for name, spec in pipfile.get("dev-packages", {}).items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = None
        if not isinstance(spec, str) or installed is None or installed not in SpecifierSet(spec):
            raise AdoptError(
                f"this Python has {name} {installed or 'not installed'}, the template's Pipfile "
                f"wants {spec}: run `pip install -r requirements.txt` in the template's clone"
            )
        todo.append(package_name(name))
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        try:
            bounds = requirement_bounds(name)
        except metadata.PackageNotFoundError:
            continue  # an optional dependency this Python does not have
        for package, specifier in bounds:
            specifiers[package] = specifiers.get(package, SpecifierSet()) & specifier
            todo.append(package)
    refusing = ("<", "!=", "==", "~=")
    kept = {
        name: ",".join(sorted({str(one) for one in spec if one.operator.startswith(refusing)}))
        for name, spec in specifiers.items()
    }
    return {name: spec for name, spec in kept.items() if spec}


def pulled_in(requirements: list[str], bounds: dict[str, str], pipfile: dict[str, Any]) -> set[str]:
    """The packages *requirements* install, resolved by uv against the Pipfile's index and
    Python version with *bounds* as constraints; an unsolvable set is an AdoptError."""
    uv = Path(sys.executable).parent / "uv"
    with tempfile.TemporaryDirectory(prefix="adopt-") as scratch:
        wanted, constraints = Path(scratch) / "wanted.txt", Path(scratch) / "bounds.txt"
        wanted.write_text("".join(f"{req}\n" for req in requirements))
        constraints.write_text("".join(f"{name}{spec}\n" for name, spec in bounds.items()))
        argv = [str(uv) if uv.exists() else "uv", "pip", "compile", str(wanted), "-c"]
        argv += [str(constraints), "--no-header", "--no-annotate", "--quiet"]
        argv += ["--python-version", str(pipfile["requires"]["python_version"])]
        argv += ["--index-url", pipfile["source"][0]["url"]]
        # The machine's CA store, as pip and pipenv use it: behind a proxy that re-signs TLS
        # with the hospital's own CA, uv's bundled CAs alone refuse the index.
        argv += ["--system-certs"]
        try:
            resolved = subprocess.run(argv, capture_output=True, text=True, timeout=300)
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise AdoptError(f"cannot resolve your packages with uv: {exc}") from None
    if resolved.returncode != 0:
        print(resolved.stderr, file=sys.stderr)
        raise AdoptError(
            "your packages cannot be installed beside the template's dev packages "
            "(uv's reason above)"
        )
    return {package_name(line) for line in resolved.stdout.splitlines() if line[:1].isalnum()}


def bound_for_the_lock(rendered: Path, added: list[str]) -> list[str]:
    """In the rendered Pipfile's [packages], the dev packages' bounds on each package that
    the added ones pull in (see the module docstring); returns `name<spec` of each written."""
    import tomllib

    pipfile_path = rendered / "Pipfile"
    pipfile = tomllib.loads(pipfile_path.read_text())
    bounds = dev_bounds(pipfile)
    packages = pipfile.get("packages", {})
    requirements = [  # with the added ones: add_requirements wrote them in; not the engine
        # (a table: its git tag or wheel), which pulls in what the template pins anyway
        f"{name}{'' if spec == '*' else spec}" for name, spec in packages.items()
        if isinstance(spec, str)
    ]
    pinned = {package_name(name) for name in packages}
    needed = sorted((pulled_in(requirements, bounds, pipfile) - pinned) & set(bounds))
    if needed:
        lines = [f'{name} = "{bounds[name]}"' for name in needed]
        note = "# [dev-packages]' bounds on what your packages pull in (scripts/adopt.py)"
        text = pipfile_path.read_text().replace(
            "[packages]\n", "[packages]\n" + "\n".join([note, *lines]) + "\n", 1
        )
        pipfile_path.write_text(text)
    return [f"{name}{bounds[name]}" for name in needed]


def keep_what_the_code_needs(project: Path, rendered: Path) -> None:
    """For a kept ingest.py: its prefect/.env settings and its packages go into the
    template's files before they are written (rendered is a scratch copy)."""
    own_settings = project / SETTINGS_FILE
    if own_settings.exists():
        text, kept = merge_settings(
            own_settings.read_text(), (rendered / SETTINGS_FILE).read_text()
        )
        (rendered / SETTINGS_FILE).write_text(text)
        print(f"  {SETTINGS_FILE}: kept your settings {', '.join(kept)} (your values win)")
    dependency_file, added = add_requirements(rendered, own_requirements(project))
    if added:
        print(f"  {dependency_file}: added your ingest.py's packages {', '.join(added)}")
    if added and dependency_file == "Pipfile":
        bounded = bound_for_the_lock(rendered, added)
        if bounded:
            print(
                f"  Pipfile: bounded {', '.join(bounded)}, as the dev packages need (pipenv"
                " locks [packages] before [dev-packages])"
            )


def link(
    project: Path, rendered: Path, rows: list[tuple[str, str]], template: str, commit: str
) -> None:
    print("\nWriting the template's files:")
    if ("keep", "ingest.py") in rows:
        keep_what_the_code_needs(project, rendered)
    for name in LEFTOVERS:
        if name not in project_files(project) and (project / name).exists():
            (project / name).unlink()
            print(f"  {name}: removed (left by Prefect 2 or the runbook's pipenv install)")
    for action, name in rows:
        if action in ("add", "replace"):
            (project / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(rendered / name, project / name)
    state = json.loads((rendered / ".cruft.json").read_text())
    state["template"] = template
    state["checkout"] = None  # the pin is the commit; updates follow the default branch
    (project / ".cruft.json").write_text(json.dumps(state, ensure_ascii=False, indent=2) + "\n")
    print(f"\nLinked {project.name} at template commit {commit[:12]}. Next, in {project}:")
    print("  git diff   # review what the template changed, then run the tests (README)")
    print('  git add -A && git commit -m "Adopt prh-ingest-template"')
    print("  python scripts/regenerate.py   # every template change since that commit")


def uncommitted(project: Path) -> list[str]:
    """`git status --porcelain` lines, but for the untracked LEFTOVERS (--link removes them)
    and Python's untracked bytecode (`__pycache__/`, left by any run of the project's flows)."""
    lines = git("status", "--porcelain", "--untracked-files=all", cwd=project).splitlines()
    return [line for line in lines if not (line.startswith("??") and left_over(line[3:]))]


def left_over(path: str) -> bool:
    return path in LEFTOVERS or "__pycache__/" in path


def adopt(args: argparse.Namespace) -> None:
    project = Path(args.project).resolve()
    if not project.is_dir():
        raise AdoptError(f"{args.project}: no such project folder")
    answers = parse_answers(args.answers)
    if args.link and uncommitted(project):
        raise AdoptError(f"{project} has uncommitted changes: commit or stash them first")
    kept = [*KEPT_BY_DEFAULT, *args.keep]
    if "ingest.py" in kept:
        kept.append(LOADER_TESTS)
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
