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

inputs_hash() {  # of the dependency files there are: Pipfile Pipfile.lock
  for file in Pipfile Pipfile.lock; do [ ! -f "$file" ] || cat "$file"; done | sha256sum
}
wanted=$(inputs_hash)

if [ -x "$venv/bin/python" ] && grep -qxF "$wanted" "$stamp" 2>/dev/null; then
  echo "venv $venv is up to date"
  exit 0
fi

echo "installing Pipfile into $venv"
if [ -f Pipfile.lock ]; then
  pipenv install --deploy  # a committed lock must match the Pipfile
else
  pipenv install
fi
# Remember the inputs as they were and as the install left them (it writes a missing lock).
printf '%s\n%s\n' "$wanted" "$(inputs_hash)" >"$stamp"
