#!/usr/bin/env bash
{%- if cookiecutter.dependency_manager == "pipenv" %}
# Make the project's one shared pipenv venv match Pipfile (and Pipfile.lock), fast when it does.
#
# Every flow run calls this from a fresh clone of the project. The venv lives outside the
# clone, at $WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME, so all runs share it instead of building
# an 800 MB venv each.
{%- else %}
# Make the project's one shared uv environment match pyproject.toml (and uv.lock), fast when
# it does.
#
# Every flow run calls this from a fresh clone of the project. The environment lives outside
# the clone, at $UV_PROJECT_ENVIRONMENT, so all runs share it.
{%- endif %}
# The install runs only when the venv is missing or a dependency file changed since the last
# install. Two locks keep the shared venv whole:
# - `<venv>.install.lock`, exclusive, around the check and the install: two runs starting at
#   once never build the venv together (that corrupts its pip); when the venv is up to date
#   it is held only for the check;
# - `<venv>.lock`: each command (a load) runs holding it shared, so the project's flows run
#   side by side; an install takes it exclusive, so it waits for running loads to end and
#   never replaces the venv under them.
#
# Usage: prefect/sync-venv.sh [COMMAND...]
set -euo pipefail
{% if cookiecutter.dependency_manager == "pipenv" %}
: "${PIPENV_CUSTOM_VENV_NAME:?is not set (prefect/.env sets it)}"
export PIPENV_IGNORE_VIRTUALENVS=1  # never install into the worker's own venv
venv="${WORKON_HOME:-${XDG_DATA_HOME:-$HOME/.local/share}/virtualenvs}/$PIPENV_CUSTOM_VENV_NAME"
dependency_files=(Pipfile Pipfile.lock)
{%- else %}
venv="${UV_PROJECT_ENVIRONMENT:?is not set (prefect/.env sets it)}"
dependency_files=(pyproject.toml .python-version uv.lock)
{%- endif %}
stamp="$venv/.prefect-installed"
mkdir -p "$(dirname "$venv")"

exec 8>"$venv.install.lock" 9>"$venv.lock"
flock 8

inputs_hash() {  # of the dependency files there are
  for file in "${dependency_files[@]}"; do [ ! -f "$file" ] || cat "$file"; done | sha256sum
}
wanted=$(inputs_hash)

if [ -x "$venv/bin/python" ] && grep -qxF "$wanted" "$stamp" 2>/dev/null; then
  echo "venv $venv is up to date"
else
  echo "installing dependencies into $venv"
  flock 9  # no load runs in the venv while it changes
  # No stamp: no install ever finished here (say a stop killed the first one half-way).
  # Start from scratch rather than trust a half-built venv.
  [ -f "$stamp" ] || rm -rf "$venv"
{%- if cookiecutter.dependency_manager == "pipenv" %}
  if [ -f Pipfile.lock ]; then
    pipenv install --deploy  # a committed lock must match the Pipfile
  else
    pipenv install
  fi
{%- else %}
  if [ -f uv.lock ]; then
    uv sync --locked --no-dev  # a committed lock must match pyproject.toml
  else
    uv sync --no-dev
  fi
{%- endif %}
  # Remember the inputs as they were and as the install left them (it writes a missing lock).
  printf '%s\n%s\n' "$wanted" "$(inputs_hash)" >"$stamp"
fi

if [ "$#" -gt 0 ]; then
  flock --shared 9  # before the install lock goes, so no install slips in; held until the end
  flock --unlock 8
  exec 8>&-
  exec "$@"
fi
