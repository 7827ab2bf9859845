#!/usr/bin/env bash
# Make the project's one shared pipenv venv match Pipfile (and Pipfile.lock), fast when it does.
#
# Every flow run calls this from a fresh clone of the project. The venv lives outside the
# clone, at $WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME, so all runs share it instead of building
# an 800 MB venv each. When to install and the locks around it: prefect/shared-venv.sh.
#
# Usage: prefect/sync-venv.sh [COMMAND...]
set -euo pipefail

: "${PIPENV_CUSTOM_VENV_NAME:?is not set (prefect/.env sets it)}"
export PIPENV_IGNORE_VIRTUALENVS=1  # never install into the worker's own venv
venv="${WORKON_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/virtualenvs}/$PIPENV_CUSTOM_VENV_NAME"
dependency_files=(Pipfile Pipfile.lock)

install_dependencies() {
  if [ -f Pipfile.lock ]; then
    pipenv install --deploy  # a committed lock must match the Pipfile
  else
    pipenv install
  fi
}

source "$(dirname "${BASH_SOURCE[0]}")/shared-venv.sh"
