"""git as the tests use it: a fixed identity, commits of a whole tree, bare repos as remotes."""

from __future__ import annotations

import subprocess
from pathlib import Path

GIT_IDENTITY = ("-c", "user.name=test", "-c", "user.email=test@example.invalid")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=repo, check=True, capture_output=True, text=True
    ).stdout


def commit_all(repo: Path, message: str) -> None:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def head(repo: Path) -> str:
    return git(repo, "rev-parse", "HEAD").strip()


def bare_repo(project_dir: Path, repos: Path) -> Path:
    """Commit the baked project and publish it as `<repos>/<slug>.git`, as a push would."""
    git(project_dir, "init", "-q", "-b", "main")
    commit_all(project_dir, "baked from prh-ingest-template")
    bare = repos / f"{project_dir.name}.git"
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(project_dir), str(bare)], check=True, timeout=60
    )
    return bare


def tree(root: Path) -> dict[str, bytes]:
    """Every file below *root* (outside .git) and its bytes."""
    return {
        str(path.relative_to(root)): path.read_bytes()
        for path in sorted(root.rglob("*"))
        if path.is_file() and ".git" not in path.relative_to(root).parts
    }
