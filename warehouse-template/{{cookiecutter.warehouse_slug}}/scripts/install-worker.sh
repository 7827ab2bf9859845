#!/usr/bin/env bash
# Install or update the Prefect worker service for the {{ cookiecutter.work_pool }} work pool on this VM.
# Safe to run again: the venv is updated in place and an existing env file is kept.
#
#   sudo scripts/install-worker.sh             # install, enable and start the service
#   scripts/install-worker.sh --dry-run ROOT   # write the files under ROOT, only print commands
#
# WORKER_LIMIT=N overrides the number of concurrent flow runs (default: CPU count).
# PYTHON=/usr/bin/python3.12 picks the venv's interpreter (default: python3 on PATH); it
# must live outside /home and /root, which the unit hides from the worker (ProtectHome=).
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
  '' | 0 | *[!0-9]*) echo "error: WORKER_LIMIT must be a positive whole number, not '$LIMIT'" >&2; exit 2 ;;
esac

# Commands that change the machine run for real, or are only printed in a dry run.
run() {
  if [ "$DRY_RUN" = 1 ]; then echo "+ $*"; else "$@"; fi
}

# One line naming what is wrong, before anything is written.
fail() {
  echo "error: $*" >&2
  exit 1
}

check_host() {
  if [ "$DRY_RUN" = 1 ]; then return; fi
  [ "$(id -u)" = 0 ] || fail "run as root (sudo $0)"
  command -v pgrep >/dev/null ||
    fail "pgrep not found (the unit's ExecStop needs it): apt-get install procps"
  local entry home
  entry="$(getent passwd "$WORKER_USER" || true)"
  [ -n "$entry" ] ||
    fail "worker user $WORKER_USER does not exist: create it first (useradd --create-home $WORKER_USER)"
  getent group "$WORKER_USER" >/dev/null ||
    fail "group $WORKER_USER does not exist (the unit runs the worker as Group=$WORKER_USER)"
  home="$(echo "$entry" | cut -d: -f6)"
  [ "$home" = "/home/$WORKER_USER" ] ||
    fail "worker user $WORKER_USER has home '$home'; the unit expects /home/$WORKER_USER"
  [ -d "$home" ] ||
    fail "home $home of worker user $WORKER_USER does not exist: mkhomedir_helper $WORKER_USER"
}

# The env file the service will read: the existing one, or the example copied on first install.
check_env_file() {
  local file="$ROOT$ENV_FILE"
  [ -e "$file" ] || file="$WAREHOUSE/systemd/prefect-worker-$POOL.env.example"
  grep -Eq '^[[:space:]]*PREFECT_API_URL=[^[:space:]]' "$file" ||
    fail "$file has no PREFECT_API_URL: add the URL of the Prefect API the worker talks to"
}

# What the running worker uses: unit, drop-in, env file and the venv's packages.
installed_state() {
  {
    cat "$ROOT$UNIT_DIR/$UNIT" "$ROOT$UNIT_DIR/$UNIT.d/limit.conf" "$ROOT$ENV_FILE" 2>/dev/null || true
    if [ -x "$ROOT$VENV/bin/python" ]; then "$ROOT$VENV/bin/python" -m pip freeze --all; fi
  } | sha256sum
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
  local limit_conf="$ROOT$UNIT_DIR/$UNIT.d/limit.conf"
  install -d -m 755 "$ROOT$UNIT_DIR/$UNIT.d"
  install -C -m 644 "$WAREHOUSE/systemd/$UNIT" "$ROOT$UNIT_DIR/$UNIT"
  printf '# Written by install-worker.sh: concurrent flow runs on this host.\n[Service]\nEnvironment=WORKER_LIMIT=%s\n' \
    "$LIMIT" >"$limit_conf.new"
  install -C -m 644 "$limit_conf.new" "$limit_conf"
  rm -f "$limit_conf.new"
  echo "Installed $UNIT_DIR/$UNIT (worker limit $LIMIT)"
}

# --- the server answers this worker (issue 21) ---------------------------------------------
# /api/ready, then a GET with the env file's credentials and the unit's CA trust, before the
# unit is enabled; the unit runs the same check before each start (ExecStartPre=).
check_server() {
  local check="/opt/prefect-worker-$POOL/check-server.py"
  run install -m 644 "$WAREHOUSE/scripts/check-server.py" "$ROOT$check"
  if [ "$DRY_RUN" = 1 ]; then return; fi
  "$VENV/bin/python" "$check" --once "$WAREHOUSE/systemd/$UNIT" "$ENV_FILE" ||
    exit 1  # check-server.py printed the one error line
}
# --- end of the server check -----------------------------------------------------------------

start_service() {
  local was_active=0
  if [ "$DRY_RUN" = 0 ] && systemctl is-active --quiet "$UNIT"; then was_active=1; fi
  run systemctl daemon-reload
  run systemctl enable "$UNIT"
  run systemctl start "$UNIT"
  run systemctl --no-pager status "$UNIT" || true
  if [ "$was_active" = 1 ] && [ "$STATE_BEFORE" = "$(installed_state)" ]; then
    echo "No restart needed: the unit, its env file and the venv are unchanged."
  elif [ "$was_active" = 1 ]; then
    echo "Restart needed: the worker still runs the previous unit, env file or venv."
    echo "Once no flow runs are active: sudo systemctl restart $UNIT"
  fi
  echo "Follow the logs with: journalctl -fu $UNIT"
}

check_host
check_env_file
STATE_BEFORE="$(installed_state)"
install_venv
install_env_file
check_server
install_unit
start_service
