"""The engine package as a generated project installs it in tests: a wheel built once from this
checkout, so baked projects, workers and the demo install the package under test (never a
release from the network), through pip, pipenv and uv alike."""

from __future__ import annotations

import functools
import hashlib
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

from filelock import FileLock

from support.commands import REPO_DIR

PACKAGE_DIR = REPO_DIR / "prh-ingest"
NAME = "prh-ingest"
CACHE = Path.home() / ".cache" / "prh-ingest-template" / "wheels"


def version() -> str:
    """The version projects pin: the package's own (prh-ingest/pyproject.toml)."""
    return tomllib.loads((PACKAGE_DIR / "pyproject.toml").read_text())["project"]["version"]


def source_digest() -> str:
    """A digest of every file git tracks under prh-ingest/: a changed source, a new wheel."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard", "prh-ingest"],
        cwd=REPO_DIR, capture_output=True, check=True,
    ).stdout.split(b"\0")
    digest = hashlib.sha256()
    for name in sorted(filter(None, listed)):
        path = REPO_DIR / name.decode()
        if path.is_file():
            digest.update(name + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.cache
def wheel() -> Path:
    """The package's wheel, built once per source digest (shared by xdist workers)."""
    folder = CACHE / source_digest()
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        built = sorted(folder.glob("prh_ingest-*.whl"))
        if not built:
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 "--disable-pip-version-check", "-w", str(folder), str(PACKAGE_DIR)],
                check=True, capture_output=True,
            )
            built = sorted(folder.glob("prh_ingest-*.whl"))
    (found,) = built
    return found


def requirement() -> str:
    """A PEP 508 requirement for the package under test."""
    return f"{NAME} @ {wheel().as_uri()}"


def answer() -> str:
    """The package under test as a project's `prh_ingest` answer takes it: the wheel's URL."""
    return wheel().as_uri()


def wheel_as_version(new_version: str) -> Path:
    """A wheel of this checkout's package under another version number (the same code, a
    different release as a project would pin it): two projects pinned to two versions."""
    folder = CACHE / f"{source_digest()}-as-{new_version}"
    folder.mkdir(parents=True, exist_ok=True)
    with FileLock(str(folder) + ".lock"):
        built = sorted(folder.glob("prh_ingest-*.whl"))
        if not built:
            source = folder / "source"
            shutil.rmtree(source, ignore_errors=True)
            shutil.copytree(PACKAGE_DIR, source, ignore=shutil.ignore_patterns(
                "__pycache__", "build", "*.egg-info", ".pytest_cache"))  # fmt: skip
            pyproject = source / "pyproject.toml"
            text = pyproject.read_text()
            old = f'version = "{version()}"'
            if old not in text:
                raise RuntimeError(f"prh-ingest/pyproject.toml: no `{old}` line")
            pyproject.write_text(text.replace(old, f'version = "{new_version}"', 1))
            subprocess.run(
                [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps",
                 "--disable-pip-version-check", "-w", str(folder), str(source)],
                check=True, capture_output=True,
            )  # fmt: skip
            built = sorted(folder.glob("prh_ingest-*.whl"))
    (found,) = built
    return found
