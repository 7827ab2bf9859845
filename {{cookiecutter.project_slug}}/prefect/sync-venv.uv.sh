#!/usr/bin/env bash
# Make the project's one shared uv environment match pyproject.toml (and uv.lock), fast when
# it does.
#
# Every flow run calls this from a fresh clone of the project. The environment lives outside
# the clone, at $UV_PROJECT_ENVIRONMENT, so all runs share it. `uv sync` runs only when the
# environment is missing or pyproject.toml or the lock changed since the last sync, and under
# an exclusive lock, so two runs starting at once never build it together.
set -euo pipefail

venv="${UV_PROJECT_ENVIRONMENT:?is not set (prefect/.env sets it)}"
stamp="$venv/.prefect-installed"
mkdir -p "$(dirname "$venv")"

exec 9>"$venv.lock"
flock 9

inputs_hash() {  # of the dependency files there are: pyproject.toml .python-version uv.lock
  for file in pyproject.toml .python-version uv.lock; do [ ! -f "$file" ] || cat "$file"; done | sha256sum
}
wanted=$(inputs_hash)

if [ -x "$venv/bin/python" ] && grep -qxF "$wanted" "$stamp" 2>/dev/null; then
  echo "environment $venv is up to date"
  exit 0
fi

echo "syncing pyproject.toml into $venv"
if [ -f uv.lock ]; then
  uv sync --locked --no-dev  # a committed lock must match pyproject.toml
else
  uv sync --no-dev
fi
# Remember the inputs as they were and as the install left them (it writes a missing lock).
printf '%s\n%s\n' "$wanted" "$(inputs_hash)" >"$stamp"
