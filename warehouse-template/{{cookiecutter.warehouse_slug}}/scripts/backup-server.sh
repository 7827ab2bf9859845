#!/usr/bin/env bash
# Back up or restore the Prefect server's PostgreSQL database ({{ cookiecutter.warehouse_name }}).
#
#   sudo scripts/backup-server.sh                  # pg_dump -Fc to /var/backups/prefect-server/prefect-<UTC time>.dump
#   sudo scripts/backup-server.sh DIR              # ... into DIR; keeps the newest $KEEP dumps (default 14)
#   sudo scripts/backup-server.sh --restore FILE   # stop the server, replace the database with FILE, start it
#
# Run it daily (e.g. a root cron line: 15 2 * * * /path/to/warehouse/scripts/backup-server.sh)
# and copy the directory off the VM. A dump holds run history and block secrets: keep it private.
set -euo pipefail

ENV_FILE='/etc/prefect-server/server.env'
UNITS=(prefect-server.service prefect-services.service)
KEEP="${KEEP:-14}"
cd /  # runuser -u postgres cannot enter the caller's directory

fail() {
  echo "error: $*" >&2
  exit 1
}

database_name() {
  local url
  url="$(sed -n 's/^PREFECT_SERVER_DATABASE_CONNECTION_URL=//p' "$ENV_FILE" | tail -n 1)"
  [[ "$url" =~ /([A-Za-z0-9_]+)$ ]] || fail "no database name in PREFECT_SERVER_DATABASE_CONNECTION_URL ($ENV_FILE)"
  echo "${BASH_REMATCH[1]}"
}

backup() {
  local dir="$1" db file
  db="$(database_name)"
  install -d -m 700 "$dir"
  file="$dir/$db-$(date -u +%Y%m%dT%H%M%SZ).dump"
  # Written under a temporary name: a failed dump never looks like a backup.
  if ! runuser -u postgres -- pg_dump -Fc "$db" >"$file.partial"; then
    rm -f "$file.partial"
    fail "pg_dump of $db failed; no backup written"
  fi
  chmod 600 "$file.partial"
  mv "$file.partial" "$file"
  echo "Wrote $file ($(stat -c %s "$file") bytes)"
  # Rotation: the newest $KEEP dumps stay (names sort by time).
  find "$dir" -maxdepth 1 -name "$db-*.dump" | sort | head -n "-$KEEP" | while read -r old; do
    rm -f "$old"
    echo "Removed $old"
  done
}

restore() {
  local file="$1" db
  db="$(database_name)"
  [ -f "$file" ] || fail "no such backup: $file"
  runuser -u postgres -- pg_restore --list <"$file" >/dev/null 2>&1 || fail "$file is not a pg_dump -Fc file"
  systemctl stop "${UNITS[@]}"
  runuser -u postgres -- dropdb --if-exists --force "$db"
  # --create makes the database again with its owner, then fills it (pg_trgm included).
  runuser -u postgres -- pg_restore --create --exit-on-error -d postgres <"$file"
  systemctl start "${UNITS[@]}"
  echo "Restored $db from $file and started ${UNITS[*]}"
}

if [ "$(id -u)" != 0 ]; then fail "run as root (sudo $0)"; fi
[ -r "$ENV_FILE" ] || fail "$ENV_FILE not found: install the server first (scripts/install-server.sh)"
case "$KEEP" in
  '' | 0 | *[!0-9]*) fail "KEEP must be a positive whole number, not '$KEEP'" ;;
esac
case "${1:-}" in
  --restore) restore "${2:?usage: $0 --restore FILE}" ;;
  -*) echo "usage: $0 [DIR] | --restore FILE" >&2; exit 2 ;;
  *) backup "${1:-/var/backups/prefect-server}" ;;
esac
