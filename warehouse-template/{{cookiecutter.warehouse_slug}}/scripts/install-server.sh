#!/usr/bin/env bash
# Install or update the Prefect server of the {{ cookiecutter.warehouse_name }} on this VM: Debian 12 with
# the postgresql (15) and redis-server packages installed and running.
#
#   sudo scripts/install-server.sh
#
# It checks PostgreSQL and Redis first and stops before changing anything if either is not
# reachable. Then: the `prefect` system user, the venv in /opt/prefect-server, the settings
# in /etc/prefect-server/server.env (random secrets, written once and kept), the database
# with pg_trgm, the migrations, and both units, enabled and started; it waits until the API
# is ready. Safe to run again (also to upgrade): it changes only what differs and says so.
set -euo pipefail

WAREHOUSE="$(cd "$(dirname "$0")/.." && pwd)"
cd /  # runuser -u postgres cannot enter the caller's directory
SERVICE_USER='prefect'
STATE_DIR='/var/lib/prefect-server'
VENV='/opt/prefect-server/venv'
ENV_FILE='/etc/prefect-server/server.env'
ENV_EXAMPLE="$WAREHOUSE/systemd/prefect-server.env.example"
UNIT_DIR='/etc/systemd/system'
UNITS=(prefect-server.service prefect-services.service)
SERVER_HOST='{{ cookiecutter.server_host }}'
SERVER_PORT='{{ cookiecutter.server_port }}'
READY_SECONDS="${READY_SECONDS:-180}"

CHANGES=0  # how many changes this run made

fail() {
  echo "error: $*" >&2
  exit 1
}

# Record and print one change this run made.
changed() {
  CHANGES=$((CHANGES + 1))
  echo "$1"
}

# The last value of NAME in an env file (KEY=VALUE lines).
setting() {
  sed -n "s/^$1=//p" "$2" | tail -n 1
}

# SQL through the local socket as the postgres superuser; extra psql arguments first.
psql_postgres() {
  runuser -u postgres -- psql -X -q -A -t -v ON_ERROR_STOP=1 "$@"
}

# A command as the service user with the units' settings, as systemd would run it.
run_as_server() {
  systemd-run --quiet --wait --pipe --collect --service-type=exec \
    -p User="$SERVICE_USER" -p Group="$SERVICE_USER" -p EnvironmentFile="$ENV_FILE" \
    -p Environment=PREFECT_HOME="$STATE_DIR" -p StateDirectory=prefect-server \
    -p WorkingDirectory="$STATE_DIR" "$@"
}

# --- checks: nothing on the machine changes before all of them pass ---------------------------

check_host() {
  if [ "$(id -u)" != 0 ]; then fail "run as root (sudo $0)"; fi
  local tool
  for tool in runuser psql systemctl systemd-run python3; do
    command -v "$tool" >/dev/null || fail "$tool not found: this script expects Debian 12 with postgresql and systemd"
  done
  python3 -c 'import ensurepip' 2>/dev/null || fail "python3 cannot create venvs: apt-get install python3-venv"
}

check_postgresql() {
  local version
  if ! version="$(psql_postgres -c 'show server_version_num' 2>/dev/null)"; then
    fail "PostgreSQL is not reachable through its local socket as user postgres (systemctl status postgresql)"
  fi
  if [ "$version" -lt 140009 ]; then
    fail "PostgreSQL $version is too old: Prefect needs 14.9 or newer"
  fi
}

check_redis() {
  local source="$ENV_EXAMPLE" host port reply=''
  if [ -e "$ENV_FILE" ]; then source="$ENV_FILE"; fi
  host="$(setting PREFECT_REDIS_MESSAGING_HOST "$source")"
  port="$(setting PREFECT_REDIS_MESSAGING_PORT "$source")"
  # A PING in Redis' own protocol, through bash's /dev/tcp: no client package needed.
  if { exec 3<>"/dev/tcp/$host/$port"; } 2>/dev/null; then
    printf 'PING\r\n' >&3
    read -r -t 5 reply <&3 || true
    exec 3<&-
  fi
  case "$reply" in
    '+PONG'*) ;;
    '') fail "Redis is not reachable at $host:$port (systemctl status redis-server; PREFECT_REDIS_MESSAGING_HOST/PORT in $source)" ;;
    *) fail "Redis at $host:$port answered '${reply%$'\r'}' instead of PONG" ;;
  esac
}

# Role, password and database from the connection URL (letters, digits and _ only:
# they go into SQL and the generated passwords are hex).
read_database_url() {
  local url
  url="$(setting PREFECT_SERVER_DATABASE_CONNECTION_URL "$1")"
  if [[ ! "$url" =~ ^postgresql\+asyncpg://([A-Za-z0-9_]+):([A-Za-z0-9_-]+)@[^/]+/([A-Za-z0-9_]+)$ ]]; then
    fail "PREFECT_SERVER_DATABASE_CONNECTION_URL in $1 is not postgresql+asyncpg://ROLE:PASSWORD@HOST:PORT/DATABASE"
  fi
  DB_ROLE="${BASH_REMATCH[1]}"
  DB_PASSWORD="${BASH_REMATCH[2]}"
  DB_NAME="${BASH_REMATCH[3]}"
}

# --- the installation --------------------------------------------------------------------------

install_user() {
  if ! getent passwd "$SERVICE_USER" >/dev/null; then
    useradd --system --home-dir "$STATE_DIR" --no-create-home --shell /usr/sbin/nologin "$SERVICE_USER"
    changed "Created system user $SERVICE_USER"
  fi
}

install_venv() {
  local before after
  if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
    changed "Created $VENV"
  fi
  before="$("$VENV/bin/pip" freeze --all)"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check \
    -r "$WAREHOUSE/requirements-server.txt" -c "$WAREHOUSE/constraints-worker.txt"
  after="$("$VENV/bin/pip" freeze --all)"
  if [ "$before" != "$after" ]; then changed "Installed $(grep -i '^prefect==' <<<"$after") in $VENV"; fi
}

install_env_file() {
  install -d -m 755 "$(dirname "$ENV_FILE")"
  if [ -e "$ENV_FILE" ]; then
    if [ "$(stat -c %a "$ENV_FILE")" != 600 ]; then
      chmod 600 "$ENV_FILE"
      changed "Made $ENV_FILE readable by root only"
    fi
    return
  fi
  local db_password auth_password
  db_password="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  auth_password="$(python3 -c 'import secrets; print(secrets.token_hex(24))')"
  (
    umask 077
    sed -e "s/CHANGE-ME-DB-PASSWORD/$db_password/" -e "s/CHANGE-ME-AUTH-PASSWORD/$auth_password/" \
      "$ENV_EXAMPLE" >"$ENV_FILE.new"
  )
  mv "$ENV_FILE.new" "$ENV_FILE"
  changed "Wrote $ENV_FILE with new secrets"
}

install_database() {
  read_database_url "$ENV_FILE"
  if [ -z "$(psql_postgres -v role="$DB_ROLE" <<<"select 1 from pg_roles where rolname = :'role'")" ]; then
    psql_postgres -v role="$DB_ROLE" -v password="$DB_PASSWORD" \
      <<<"create role :\"role\" login password :'password'"
    changed "Created PostgreSQL role $DB_ROLE"
  fi
  if [ -z "$(psql_postgres -v db="$DB_NAME" <<<"select 1 from pg_database where datname = :'db'")" ]; then
    psql_postgres -v db="$DB_NAME" -v role="$DB_ROLE" <<<"create database :\"db\" owner :\"role\""
    changed "Created PostgreSQL database $DB_NAME"
  fi
  if [ -z "$(psql_postgres -d "$DB_NAME" <<<"select 1 from pg_extension where extname = 'pg_trgm'")" ]; then
    psql_postgres -d "$DB_NAME" <<<"create extension pg_trgm"
    changed "Enabled pg_trgm in $DB_NAME"
  fi
}

migration_revision() {
  psql_postgres -d "$DB_NAME" <<<"select version_num from alembic_version" 2>/dev/null || true
}

migrate() {
  local before after
  before="$(migration_revision)"
  run_as_server "$VENV/bin/prefect" server database upgrade -y >/dev/null
  after="$(migration_revision)"
  if [ "$before" != "$after" ]; then changed "Migrated $DB_NAME to revision $after"; fi
}

install_units() {
  local unit any=0
  for unit in "${UNITS[@]}"; do
    if ! cmp -s "$WAREHOUSE/systemd/$unit" "$UNIT_DIR/$unit"; then
      install -m 644 "$WAREHOUSE/systemd/$unit" "$UNIT_DIR/$unit"
      changed "Installed $UNIT_DIR/$unit"
      any=1
    fi
  done
  if [ "$any" = 1 ]; then systemctl daemon-reload; fi
}

start_units() {
  local unit restart="$CHANGES"
  for unit in "${UNITS[@]}"; do
    if ! systemctl is-enabled --quiet "$unit"; then
      systemctl enable --quiet "$unit"
      changed "Enabled $unit"
    fi
    if ! systemctl is-active --quiet "$unit"; then
      systemctl start "$unit"
      changed "Started $unit"
    elif [ "$restart" != 0 ]; then
      systemctl restart "$unit"
      changed "Restarted $unit (its venv, settings or unit changed)"
    fi
  done
}

wait_until_ready() {
  local host="$SERVER_HOST"
  if [ "$host" = 0.0.0.0 ]; then host=127.0.0.1; fi
  READY_URL="http://$host:$SERVER_PORT/api/ready"
  "$VENV/bin/python" - "$READY_URL" "$READY_SECONDS" <<'EOF' ||
import sys, time, urllib.request

url, seconds = sys.argv[1], float(sys.argv[2])
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(1)
EOF
    fail "the server did not answer 200 at $READY_URL within ${READY_SECONDS}s (journalctl -u prefect-server -u prefect-services)"
}

check_host
check_postgresql
check_redis
if [ -e "$ENV_FILE" ]; then read_database_url "$ENV_FILE"; fi
install_user
install_venv
install_env_file
install_database
migrate
install_units
start_units
wait_until_ready

if [ "$CHANGES" = 0 ]; then
  echo "Nothing changed: the Prefect server was already installed and is ready at $READY_URL"
else
  echo "The Prefect server is ready at $READY_URL ($CHANGES change(s) above)"
fi
echo "Its settings and secrets: $ENV_FILE. Workers and prw_deploy.py need"
echo "PREFECT_API_AUTH_STRING set to its PREFECT_SERVER_API_AUTH_STRING."
