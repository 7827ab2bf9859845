#!/usr/bin/env bash
# Install or update the Prefect worker service for the {{ cookiecutter.work_pool }} work pool on this VM.
# Safe to run again: the venv is updated in place and an existing env file is kept.
#
#   sudo scripts/install-worker.sh             # install, enable and start the service
#   scripts/install-worker.sh --dry-run ROOT   # write the files under ROOT, only print commands
#
# WORKER_LIMIT=N overrides the number of concurrent flow runs (default: CPU count).
set -euo pipefail

POOL='{{ cookiecutter.work_pool }}'
WORKER_USER='{{ cookiecutter.worker_user }}'
UNIT="prefect-worker-$POOL.service"
WAREHOUSE="$(cd "$(dirname "$0")/.." && pwd)"

ROOT=''
DRY_RUN=0
case "${1:-}" in
  --dry-run) DRY_RUN=1; ROOT="${2:?usage: $0 --dry-run ROOT}" ;;
  '') ;;
  *) echo "usage: $0 [--dry-run ROOT]" >&2; exit 2 ;;
esac

VENV="/opt/prefect-worker-$POOL/venv"
ENV_FILE="/etc/prefect-worker/$POOL.env"
UNIT_DIR='/etc/systemd/system'
LIMIT="${WORKER_LIMIT:-$(nproc)}"
case "$LIMIT" in
  '' | 0 | *[!0-9]*) echo "ERROR: WORKER_LIMIT must be a positive whole number, not '$LIMIT'" >&2; exit 2 ;;
esac

# Commands that change the machine run for real, or are only printed in a dry run.
run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

check_host() {
  if [ "$DRY_RUN" = 1 ]; then return; fi
  if [ "$(id -u)" != 0 ]; then echo "ERROR: run as root (sudo $0)" >&2; exit 1; fi
  if ! command -v pgrep >/dev/null; then
    echo "ERROR: pgrep not found (the unit's ExecStop needs it): apt-get install procps" >&2
    exit 1
  fi
  local home
  home="$(getent passwd "$WORKER_USER" | cut -d: -f6)"
  if [ "$home" != "/home/$WORKER_USER" ]; then
    echo "ERROR: the unit expects user $WORKER_USER with home /home/$WORKER_USER (found: '${home}')" >&2
    exit 1
  fi
}

install_venv() {
  if [ ! -x "$ROOT$VENV/bin/python" ]; then
    run "${PYTHON:-python3}" -m venv "$ROOT$VENV"
  fi
  run "$ROOT$VENV/bin/pip" install --quiet -r "$WAREHOUSE/requirements-worker.txt" \
    -c "$WAREHOUSE/constraints-worker.txt"
}

install_env_file() {
  install -d -m 755 "$ROOT$(dirname "$ENV_FILE")"
  if [ -e "$ROOT$ENV_FILE" ]; then
    chmod 600 "$ROOT$ENV_FILE"
    echo "Kept $ENV_FILE"
  else
    install -m 600 "$WAREHOUSE/systemd/prefect-worker-$POOL.env.example" "$ROOT$ENV_FILE"
    echo "Wrote $ENV_FILE: check PREFECT_API_URL, add PREFECT_API_KEY for Prefect Cloud"
  fi
}

install_unit() {
  install -d -m 755 "$ROOT$UNIT_DIR/$UNIT.d"
  install -m 644 "$WAREHOUSE/systemd/$UNIT" "$ROOT$UNIT_DIR/$UNIT"
  printf '# Written by install-worker.sh: concurrent flow runs on this host.\n[Service]\nEnvironment=WORKER_LIMIT=%s\n' \
    "$LIMIT" >"$ROOT$UNIT_DIR/$UNIT.d/limit.conf"
  chmod 644 "$ROOT$UNIT_DIR/$UNIT.d/limit.conf"
  echo "Installed $UNIT_DIR/$UNIT (worker limit $LIMIT)"
}

start_service() {
  local was_active=0
  if [ "$DRY_RUN" = 0 ] && systemctl is-active --quiet "$UNIT"; then was_active=1; fi
  run systemctl daemon-reload
  run systemctl enable "$UNIT"
  run systemctl start "$UNIT"
  if [ "$was_active" = 1 ]; then
    echo "The worker was already running. To apply changes once no flow runs are active:"
    echo "  sudo systemctl restart $UNIT"
  fi
  run systemctl --no-pager status "$UNIT" || true
  echo "Follow the logs with: journalctl -fu $UNIT"
}

check_host
install_venv
install_env_file
install_unit
start_service
