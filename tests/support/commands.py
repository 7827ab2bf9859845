"""Running this repository's tools as subprocesses: where the repo is, this venv's tools."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

REPO_DIR = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def run(argv: list[str], cwd: Path, env: Mapping[str, str] | None = None, timeout: float = 300):
    """Run a command, capturing text output; never raises on a non-zero exit."""
    return subprocess.run(
        argv, cwd=cwd, env=dict(env or os.environ), capture_output=True, text=True, timeout=timeout
    )


def tool_env(base: Mapping[str, str]) -> dict[str, str]:
    """*base* with this venv's tools (pipenv, uv, prefect, ruff) first on PATH."""
    return {**base, "PATH": f"{BIN}{os.pathsep}{base.get('PATH', os.defpath)}"}


def run_python(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """This venv's python (it has prefect, cruft and cookiecutter), like the deploy venv."""
    return run([sys.executable, *argv], cwd=cwd, env=env)
