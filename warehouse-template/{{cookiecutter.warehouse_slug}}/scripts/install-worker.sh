#!/usr/bin/env bash
# Install or update the Prefect worker service for the {{ cookiecutter.work_pool }} work pool on this VM.
# Safe to run again: the venv is updated in place and an existing env file is kept.
#
#   sudo scripts/install-worker.sh             # install, enable and start the service
#   scripts/install-worker.sh --dry-run ROOT   # write the files under ROOT, only print commands
#
# --requirements FILE (repeatable) also installs a dependency_manager=none project's pinned
# requirements.txt into the venv: its ingest.py runs on the worker's own Python.
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
REQUIREMENTS=()
USAGE="usage: $0 [--dry-run ROOT] [--requirements FILE]..."
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) DRY_RUN=1; ROOT="${2:?$USAGE}"; shift 2 ;;
    --requirements) REQUIREMENTS+=("${2:?$USAGE}"); shift 2 ;;
    *) echo "$USAGE" >&2; exit 2 ;;
  esac
done

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

# What the running worker uses: the digest of its unit, drop-in and env file, then the venv's
# packages, one a line.
installed_state() {
  cat "$ROOT$UNIT_DIR/$UNIT" "$ROOT$UNIT_DIR/$UNIT.d/limit.conf" "$ROOT$ENV_FILE" 2>/dev/null | sha256sum || true
  if [ -x "$ROOT$VENV/bin/python" ]; then "$ROOT$VENV/bin/python" -m pip freeze --all; fi
}

# Whether a line of the state before is gone: a changed file or a package changed or removed.
# A package only added (a project's --requirements) leaves the running worker as it is: each
# flow run starts a new Python, which has it.
worker_changed() {
  [ -n "$(LC_ALL=C comm -23 <(LC_ALL=C sort <<<"$STATE_BEFORE") <(installed_state | LC_ALL=C sort))" ]
}

# --- a dependency_manager=none project's requirements (--requirements) ---------------------
# Each line one pinned package; a pin other than constraints-worker.txt's is refused before
# anything is written (one version of a package serves every project on this worker).
PINS_CHECK='
function key(name) { name = tolower(name); gsub(/[-_.]+/, "-", name); return name }
FNR == NR { if (split($0, pin, "==") == 2) tested[key(pin[1])] = pin[2]; next }
{ line = $0; sub(/#.*/, "", line); gsub(/[ \t\r]/, "", line) }
line == "" { next }
line ~ /^prh-ingest(\[[A-Za-z0-9,._-]+\])?@/ { next }  # the engine at a tag or a wheel: pip checks it
line !~ /^[A-Za-z0-9][A-Za-z0-9._-]*(\[[A-Za-z0-9,._-]+\])?==[A-Za-z0-9.+!_-]+$/ {
  print "line " FNR " is not one pinned package (name==version)"; exit
}
{ split(line, pin, "=="); name = pin[1]; sub(/\[.*/, "", name) }
key(name) in tested && tested[key(name)] != pin[2] {
  print "line " FNR " pins " name "==" pin[2] " but constraints-worker.txt pins " \
    name "==" tested[key(name)] ": update the project or this checkout so they agree"; exit
}'

check_requirements() {
  local file problem
  for file in "${REQUIREMENTS[@]}"; do
    [ -f "$file" ] && [ -r "$file" ] || fail "--requirements $file: no such readable file"
    problem="$(awk "$PINS_CHECK" "$WAREHOUSE/constraints-worker.txt" "$file")"
    [ -z "$problem" ] || fail "--requirements $file: $problem"
  done
}

# One pip run resolves the worker's requirements and the projects' together, so a conflict
# installs nothing; pip's first ERROR line is the one line said (its whole output is kept).
install_venv() {
  local created=0 file log reason
  local args=(install --quiet -r "$WAREHOUSE/requirements-worker.txt")
  for file in "${REQUIREMENTS[@]}"; do args+=(-r "$file"); done
  args+=(-c "$WAREHOUSE/constraints-worker.txt")
  if [ ! -x "$ROOT$VENV/bin/python" ]; then
    run "${PYTHON:-python3}" -m venv "$ROOT$VENV"
    created=1
  fi
  if [ "$DRY_RUN" = 1 ]; then run "$ROOT$VENV/bin/pip" "${args[@]}"; return; fi
  log="$(mktemp)"
  if ! "$VENV/bin/pip" "${args[@]}" >"$log" 2>&1; then
    if [ "$created" = 1 ]; then rm -rf "$VENV"; fi
    reason="$(grep -m1 '^ERROR: ' "$log" | cut -c8- || true)"
    fail "pip could not install the worker's venv: ${reason:-pip failed} (pip's output: $log)"
  fi
  rm -f "$log"
}
# --- end of the projects' requirements -------------------------------------------------------

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
  if [ "$was_active" = 1 ] && ! worker_changed; then
    echo "No restart needed: the unit, its env file and the packages the worker started with are unchanged."
  elif [ "$was_active" = 1 ]; then
    echo "Restart needed: the worker still runs the previous unit, env file or venv."
    echo "Once no flow runs are active: sudo systemctl restart $UNIT"
  fi
  echo "Follow the logs with: journalctl -fu $UNIT"
}

check_host
check_env_file
check_requirements
STATE_BEFORE="$(installed_state)"
install_venv
install_env_file
check_server
install_unit
start_service
