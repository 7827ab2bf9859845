#!/usr/bin/env bash
# Install or update the Prefect server of the {{ cookiecutter.warehouse_name }} on this VM: Debian 12 with
# the postgresql (15) and redis-server packages installed and running.
#
#   sudo scripts/install-server.sh --cert FILE --key FILE --directory FILE   # first install
#   sudo scripts/install-server.sh        # again: keeps the installed pair and directory file
#
# With an https prefect_api_url the server listens on 127.0.0.1 only and a front answers HTTPS
# with the certificate and key from the hospital CA (PEM files: the certificate, then any
# intermediates; an unencrypted key). With --directory FILE (the hospital directory's
# settings, see the README) the front is prefect-sign-in.service (apache2): everyone signs in
# as themselves, prefect-gate.service checks their role and writes the audit, and the server
# listens on a Unix socket only the gate can open. Without it, the front is
# prefect-front.service (nginx) and everyone shares PREFECT_SERVER_API_AUTH_STRING.
# It checks PostgreSQL, Redis and the certificate first and stops before changing anything if
# one is not right. Then: the `prefect` system user, the venv in /opt/prefect-server, the settings
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
API_URL='{{ cookiecutter.prefect_api_url }}'
SERVER_NAME='{{ cookiecutter.__server_name }}'  # the host of API_URL: clients check it in the certificate
API_HOST='{{ cookiecutter.__api_host }}'
API_PORT='{{ cookiecutter.__api_port }}'
TLS_CERT='/etc/prefect-server/tls.crt'
TLS_KEY='/etc/prefect-server/tls.key'
NGINX_CONF='/etc/prefect-server/nginx.conf'
DIRECTORY_FILE='/etc/prefect-server/directory.env'
SESSION_KEY='/etc/prefect-server/session.key'
FRONT_USER='prefect-front'
FRONT_CODE='/opt/prefect-server/front'
API_SOCKET='/run/prefect-server/api.sock'
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

CERT=''
KEY=''
DIRECTORY=''
read_arguments() {
  while [ "$#" -gt 0 ]; do
    case "$1" in
      --cert) [ "$#" -ge 2 ] || fail "--cert needs a FILE"; CERT="$2"; shift 2 ;;
      --key) [ "$#" -ge 2 ] || fail "--key needs a FILE"; KEY="$2"; shift 2 ;;
      --directory) [ "$#" -ge 2 ] || fail "--directory needs a FILE"; DIRECTORY="$2"; shift 2 ;;
      *) fail "unknown argument '$1' (usage: $0 [--cert FILE --key FILE] [--directory FILE])" ;;
    esac
  done
}

# Sign-in against the directory: with --directory, or when a directory file is installed.
signing_in() {
  [ -n "$DIRECTORY" ] || [ -e "$DIRECTORY_FILE" ]
}

# The directory file this run installs (given, or the installed one), checked: every key, and
# a bind with its account. apache2's settings from it go to $APACHE_DIRECTORY (a temp file).
APACHE_DIRECTORY=''
check_directory() {
  signing_in || return 0
  tls_front || fail "prefect_api_url $API_URL is not https: signing in needs the TLS front"
  local tool
  for tool in apache2 ldapwhoami ldapsearch; do
    command -v "$tool" >/dev/null ||
      fail "$tool not found: signing in needs Debian's packages (apt-get install apache2 ldap-utils)"
  done
  if [ -z "$DIRECTORY" ]; then DIRECTORY="$DIRECTORY_FILE"; fi
  { [ -f "$DIRECTORY" ] && [ -r "$DIRECTORY" ]; } || fail "cannot read the directory file $DIRECTORY"
  APACHE_DIRECTORY="$(mktemp)"
  trap 'rm -f "$APACHE_DIRECTORY"' EXIT
  local message
  if ! message="$(python3 "$WAREHOUSE/front/gate.py" check-directory "$DIRECTORY" "$APACHE_DIRECTORY" 2>&1)"; then
    echo "$message" | grep '^error: ' | head -n 1 >&2
    exit 1
  fi
}

tls_front() {
  case "$API_URL" in https://*) return 0 ;; *) return 1 ;; esac
}

# The certificate and key this run installs (given, or the installed pair), checked: readable
# PEM, the key belongs to the certificate, the certificate names SERVER_NAME and is valid now.
check_certificate() {
  if ! tls_front; then
    if [ -n "$CERT$KEY" ]; then fail "prefect_api_url $API_URL is not https: there is no TLS front for --cert/--key"; fi
    return 0
  fi
  command -v nginx >/dev/null || fail "nginx not found: the TLS front needs Debian's package (apt-get install nginx)"
  command -v openssl >/dev/null || fail "openssl not found: apt-get install openssl"
  if [ -z "$CERT$KEY" ] && [ -e "$TLS_CERT" ] && [ -e "$TLS_KEY" ]; then
    CERT="$TLS_CERT" KEY="$TLS_KEY"
  fi
  [ -n "$CERT$KEY" ] || fail "no certificate installed yet: run $0 --cert FILE --key FILE (from the hospital CA, for $SERVER_NAME)"
  [ -n "$CERT" ] || fail "--key without --cert: give both"
  [ -n "$KEY" ] || fail "--cert without --key: give both"
  { [ -f "$CERT" ] && [ -r "$CERT" ]; } || fail "cannot read the certificate $CERT"
  { [ -f "$KEY" ] && [ -r "$KEY" ]; } || fail "cannot read the key $KEY"
  local cert_key key_key names
  cert_key="$(openssl x509 -in "$CERT" -noout -pubkey 2>/dev/null)" ||
    fail "$CERT is not a PEM certificate"
  key_key="$(openssl pkey -in "$KEY" -pubout -passin pass: 2>/dev/null)" ||
    fail "$KEY is not an unencrypted PEM private key"
  [ "$cert_key" = "$key_key" ] || fail "the key $KEY does not belong to the certificate $CERT"
  if [[ "$SERVER_NAME" =~ ^[0-9.]+$ ]]; then
    names="$(openssl x509 -in "$CERT" -noout -checkip "$SERVER_NAME")"
  else
    names="$(openssl x509 -in "$CERT" -noout -checkhost "$SERVER_NAME")"
  fi
  if [[ "$names" != *" does match certificate"* ]]; then
    names="$(openssl x509 -in "$CERT" -noout -ext subjectAltName 2>/dev/null | sed 1d | tr -d ' \n')"
    fail "the certificate $CERT is not for $SERVER_NAME (the host of prefect_api_url); it names: ${names:-no subjectAltName}"
  fi
  openssl x509 -in "$CERT" -noout -checkend 0 >/dev/null || fail "the certificate $CERT has expired"
}

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

# The settings derived from prefect_api_url follow the template's answers (the file is kept,
# so an http server regenerated with an https URL would otherwise keep its old origin).
install_urls() {
  local name value
  for name in PREFECT_UI_API_URL PREFECT_UI_URL PREFECT_SERVER_API_CORS_ALLOWED_ORIGINS; do
    value="$(setting "$name" "$ENV_EXAMPLE")"
    if [ "$(setting "$name" "$ENV_FILE")" != "$value" ]; then
      sed -i "/^$name=/d" "$ENV_FILE"
      echo "$name=$value" >>"$ENV_FILE"
      changed "Set $name=$value in $ENV_FILE (from prefect_api_url)"
    fi
  done
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

# The TLS front: certificate (0644) and key (0600, root's) under /etc/prefect-server, then
# the sign-in front or nginx's.
install_front() {
  tls_front || return 0
  if ! cmp -s "$CERT" "$TLS_CERT"; then
    install -m 644 "$CERT" "$TLS_CERT.new" && mv "$TLS_CERT.new" "$TLS_CERT"
    changed "Installed the certificate $TLS_CERT"
  fi
  if ! cmp -s "$KEY" "$TLS_KEY"; then
    install -m 600 "$KEY" "$TLS_KEY.new" && mv "$TLS_KEY.new" "$TLS_KEY"
    changed "Installed the key $TLS_KEY (mode 0600)"
  fi
  if signing_in; then install_sign_in; else install_nginx; fi
}

# A file from the warehouse to *target* with *mode*, when it differs.
install_file() {
  if ! cmp -s "$1" "$2"; then
    install -D -m "$3" "$1" "$2.new" && mv "$2.new" "$2"
    changed "Installed $2"
  fi
}

# The nginx front: everyone shares PREFECT_SERVER_API_AUTH_STRING; Debian's own nginx site
# (plain HTTP on port 80) switched off.
install_nginx() {
  UNITS+=(prefect-front.service)
  if ! cmp -s "$WAREHOUSE/nginx/prefect-front.conf" "$NGINX_CONF"; then
    install -m 644 "$WAREHOUSE/nginx/prefect-front.conf" "$NGINX_CONF"
    changed "Installed $NGINX_CONF"
  fi
  if systemctl is-enabled --quiet nginx.service 2>/dev/null || systemctl is-active --quiet nginx.service; then
    systemctl disable --quiet --now nginx.service
    changed "Disabled nginx.service (Debian's default site, plain HTTP on port 80): prefect-front.service is the front"
  fi
}

# The sign-in front: the directory file and a session key (root's, 0600), apache2's
# configuration and pages, the gate's code and roles, the audit log's rotation, the server on
# a Unix socket; the shared auth string and the nginx front switched off.
install_sign_in() {
  local name
  UNITS+=(prefect-gate.service prefect-sign-in.service)
  if ! getent passwd "$FRONT_USER" >/dev/null; then
    useradd --system --user-group --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin "$FRONT_USER"
    changed "Created system user $FRONT_USER (the sign-in front and the gate)"
  fi
  if ! cmp -s "$DIRECTORY" "$DIRECTORY_FILE"; then
    install -m 600 "$DIRECTORY" "$DIRECTORY_FILE.new" && mv "$DIRECTORY_FILE.new" "$DIRECTORY_FILE"
    changed "Installed the directory file $DIRECTORY_FILE (mode 0600)"
  fi
  if [ ! -e "$SESSION_KEY" ]; then
    (umask 077 && python3 -c 'import secrets; print(secrets.token_hex(32))' >"$SESSION_KEY")
    changed "Wrote a new session key $SESSION_KEY (mode 0600)"
  fi
  install_file "$APACHE_DIRECTORY" /etc/prefect-server/apache-directory.conf 644
  install_file "$WAREHOUSE/front/apache.conf" /etc/prefect-server/apache.conf 644
  for name in index.html sign-in.js sign-in.css idle.js; do
    install_file "$WAREHOUSE/front/sign-in/$name" "/etc/prefect-server/sign-in/$name" 644
  done
  install_file "$WAREHOUSE/front/gate.py" "$FRONT_CODE/gate.py" 644
  install_file "$WAREHOUSE/front/roles.toml" "$FRONT_CODE/roles.toml" 644
  install_file "$WAREHOUSE/front/prefect-audit.logrotate" /etc/logrotate.d/prefect-audit 644
  install_file "$WAREHOUSE/systemd/prefect-server.service.d/unix-socket.conf" \
    "$UNIT_DIR/prefect-server.service.d/unix-socket.conf" 644
  if grep -q '^PREFECT_SERVER_API_AUTH_STRING=' "$ENV_FILE"; then
    sed -i '/^PREFECT_SERVER_API_AUTH_STRING=/d' "$ENV_FILE"
    changed "Removed PREFECT_SERVER_API_AUTH_STRING from $ENV_FILE: everyone signs in as themselves"
  fi
  for name in prefect-front.service nginx.service apache2.service; do
    if systemctl is-enabled --quiet "$name" 2>/dev/null || systemctl is-active --quiet "$name"; then
      systemctl disable --quiet --now "$name"
      changed "Disabled $name (another front, or Debian's default site on port 80): prefect-sign-in.service is the front"
    fi
  done
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
  # A changed drop-in (install_sign_in) needs the reload too.
  if [ "$any" = 1 ] || [ "$CHANGES" != 0 ]; then systemctl daemon-reload; fi
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

# Until *url* answers 200; https is verified against the installed certificate itself (the
# server VM need not trust the hospital CA), still checking the name and what nginx serves.
wait_for() {
  local front='{{ cookiecutter.server_host }}'
  if [ "$front" = 0.0.0.0 ]; then front=127.0.0.1; fi
  "$VENV/bin/python" - "$1" "$READY_SECONDS" "$SERVER_NAME" "$TLS_CERT" "$front" <<'EOF'
import socket, ssl, sys, time, urllib.request

url, seconds, name, certificate, front = sys.argv[1], float(sys.argv[2]), *sys.argv[3:]
context = None
if url.startswith("https://"):
    context = ssl.create_default_context(cafile=certificate)
    context.verify_flags |= ssl.VERIFY_X509_PARTIAL_CHAIN
    # Connect to this machine's front (its listen address) under the server's name.
    resolve = socket.getaddrinfo
    socket.getaddrinfo = lambda host, *a, **k: resolve(front if host == name else host, *a, **k)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5, context=context) as response:
            if response.status == 200:
                sys.exit(0)
    except OSError:
        pass
    time.sleep(1)
sys.exit(1)
EOF
}

# Until the server answers 200 on its Unix socket (as root: its directory is the prefect group's).
wait_for_socket() {
  "$VENV/bin/python" - "$API_SOCKET" "$READY_SECONDS" <<'EOF'
import sys, time, httpx

socket, seconds = sys.argv[1], float(sys.argv[2])
client = httpx.Client(transport=httpx.HTTPTransport(uds=socket), timeout=5)
deadline = time.monotonic() + seconds
while time.monotonic() < deadline:
    try:
        if client.get("http://prefect/api/ready").status_code == 200:
            sys.exit(0)
    except httpx.HTTPError:
        pass
    time.sleep(1)
sys.exit(1)
EOF
}

wait_until_ready() {
  local host="$API_HOST"
  if [ "$host" = 0.0.0.0 ]; then host=127.0.0.1; fi
  if signing_in; then
    READY_URL="$API_SOCKET"
    wait_for_socket ||
      fail "the server did not answer 200 on $API_SOCKET within ${READY_SECONDS}s (journalctl -u prefect-server -u prefect-services)"
    READY_URL="${API_URL%/api}/sign-in/"
    wait_for "$READY_URL" ||
      fail "the sign-in front did not answer 200 at $READY_URL within ${READY_SECONDS}s (journalctl -u prefect-sign-in -u prefect-gate)"
    return
  fi
  READY_URL="http://$host:$API_PORT/api/ready"
  wait_for "$READY_URL" ||
    fail "the server did not answer 200 at $READY_URL within ${READY_SECONDS}s (journalctl -u prefect-server -u prefect-services)"
  if tls_front; then
    READY_URL="${API_URL%/}/ready"
    wait_for "$READY_URL" ||
      fail "the TLS front did not answer 200 at $READY_URL within ${READY_SECONDS}s (journalctl -u prefect-front)"
  fi
}

read_arguments "$@"
check_host
check_certificate
check_directory
check_postgresql
check_redis
if [ -e "$ENV_FILE" ]; then read_database_url "$ENV_FILE"; fi
install_user
install_venv
install_env_file
install_urls
install_database
migrate
install_front
install_units
start_units
wait_until_ready

if [ "$CHANGES" = 0 ]; then
  echo "Nothing changed: the Prefect server was already installed and is ready at $READY_URL"
else
  echo "The Prefect server is ready at $READY_URL ($CHANGES change(s) above)"
fi
if signing_in; then
  echo "People sign in at ${API_URL%/api}/ with their directory account; each worker and the CI"
  echo "job send their own account as PREFECT_API_AUTH_STRING=<user>:<password>."
  echo "Who changed what: sudo $WAREHOUSE/scripts/audit.py"
else
  echo "Its settings and secrets: $ENV_FILE. Workers and prw_deploy.py need"
  echo "PREFECT_API_AUTH_STRING set to its PREFECT_SERVER_API_AUTH_STRING."
fi
