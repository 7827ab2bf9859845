#!/usr/bin/env bash
# Make the project's one shared pipenv venv match Pipfile (and Pipfile.lock), fast when it does.
#
# Every flow run calls this from a fresh clone of the project. The venv lives outside the
# clone, at $WORKON_HOME/$PIPENV_CUSTOM_VENV_NAME, so all runs share it instead of building
# an 800 MB venv each. `pipenv install` runs only when the venv is missing or the Pipfile or
# lock changed since the last install, and under an exclusive lock: two runs starting at
# once never build the venv together (that corrupts its pip).
set -euo pipefail

: "${PIPENV_CUSTOM_VENV_NAME:?is not set (prefect/.env sets it)}"
export PIPENV_IGNORE_VIRTUALENVS=1  # never install into the worker's own venv
venv="${WORKON_HOME:-$HOME/.local/share/virtualenvs}/$PIPENV_CUSTOM_VENV_NAME"
stamp="$venv/.prefect-installed"
mkdir -p "$(dirname "$venv")"

exec 9>"$venv.lock"
flock 9

inputs=(Pipfile)
if [ -f Pipfile.lock ]; then inputs+=(Pipfile.lock); fi
wanted=$(cat "${inputs[@]}" | sha256sum)

if [ -x "$venv/bin/python" ] && [ "$(cat "$stamp" 2>/dev/null)" = "$wanted" ]; then
  echo "venv $venv is up to date"
  exit 0
fi

echo "installing Pipfile into $venv"
if [ -f Pipfile.lock ]; then
  pipenv install --deploy  # a committed lock must match the Pipfile
else
  pipenv install
fi
printf '%s\n' "$wanted" >"$stamp"
