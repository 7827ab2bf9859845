#!/usr/bin/env bash
# `systemd-analyze verify` of every unit in systemd/, as CI runs it. The units' programs in
# /opt/.../venv/bin are pointed at the deploy venv's (those venvs exist only on an installed
# VM); other programs (apache2 and nginx for the fronts) must be installed. verify exits 0 even on
# unknown keys, so any output is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

prefect="$(command -v prefect)" || {
    echo "error: no prefect on PATH: activate the deploy venv (pip install -r requirements-deploy.txt)" >&2
    exit 2
}
venv_bin="$(dirname "$prefect")"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
for unit in systemd/*.service; do
    sed "s|^\(Exec[A-Za-z]*=\)/opt/[^ ]*/venv/bin/|\1$venv_bin/|" "$unit" >"$work/$(basename "$unit")"
done
status=0
output="$(SYSTEMD_UNIT_PATH="$work:" systemd-analyze verify "$work"/*.service 2>&1)" || status=$?
if [ "$status" != 0 ] || [ -n "$output" ]; then
    printf '%s\n' "$output" >&2
    echo "error: systemd-analyze verify rejected the units in systemd/ (see above)" >&2
    exit 1
fi
echo "systemd-analyze verify: $(cd systemd && echo *.service) OK"
