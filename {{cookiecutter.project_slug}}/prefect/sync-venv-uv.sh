#!/usr/bin/env bash
# Make the project's one shared uv environment match pyproject.toml (and uv.lock), fast when
# it does.
#
# Every flow run calls this from a fresh clone of the project. The environment lives outside
# the clone, at $UV_PROJECT_ENVIRONMENT, so all runs share it. When to install and the locks
# around it: prefect/shared-venv.sh.
#
# Usage: prefect/sync-venv.sh [COMMAND...]
set -euo pipefail

venv="${UV_PROJECT_ENVIRONMENT:?is not set (prefect/.env sets it)}"
dependency_files=(pyproject.toml .python-version uv.lock)

install_dependencies() {
  if [ -f uv.lock ]; then
    uv sync --locked --no-dev  # a committed lock must match pyproject.toml
  else
    uv sync --no-dev
  fi
}

source "$(dirname "${BASH_SOURCE[0]}")/shared-venv.sh"
