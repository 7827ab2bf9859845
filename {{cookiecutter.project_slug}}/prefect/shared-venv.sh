# The dependency step's common part, sourced by prefect/sync-venv.sh once it has set `venv`,
# `dependency_files` and `install_dependencies` for its dependency manager.
#
# The install runs only when the venv is missing or a dependency file changed since the last
# install. Two locks keep the shared venv whole:
# - `<venv>.install.lock`, exclusive, around the check and the install: two runs starting at
#   once never build the venv together (that corrupts its pip); when the venv is up to date
#   it is held only for the check;
# - `<venv>.lock`: each command (a load) runs holding it shared, so the project's flows run
#   side by side; an install takes it exclusive, so it waits for running loads to end and
#   never replaces the venv under them.
#
# It runs the same on Linux and macOS: bash, cat, dirname, grep, mkdir, rm and python3, no
# flock(1), sha256sum or readlink -f. The locks are flock(2) locks on this script's open
# file descriptors, taken through Python's fcntl exactly as util-linux flock(1) takes them,
# so the command exec'd at the end keeps its shared lock until it exits.

python=$(command -v python3 || command -v python) || {
  echo "error: prefect/sync-venv.sh needs python3 on PATH (for its locks)" >&2
  exit 1
}

lock() {  # lock FD exclusive|shared|unlock [FD MODE...]: each in turn, waiting for it
  "$python" -I -S -c 'import fcntl, sys
modes = {"exclusive": fcntl.LOCK_EX, "shared": fcntl.LOCK_SH, "unlock": fcntl.LOCK_UN}
for fd, mode in zip(sys.argv[1::2], sys.argv[2::2]):  # no strict=: macOS ships python3 3.9
    fcntl.flock(int(fd), modes[mode])' "$@"
}

inputs_hash() {  # of the dependency files there are, printed as `sha256sum -` prints it
  for file in "${dependency_files[@]}"; do [ ! -f "$file" ] || cat "$file"; done |
    "$python" -I -S -c 'import hashlib, sys
print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest(), " -")'
}

stamp="$venv/.prefect-installed"
mkdir -p "$(dirname "$venv")"

exec 8>"$venv.install.lock" 9>"$venv.lock"
lock 8 exclusive

wanted=$(inputs_hash)

if [ -x "$venv/bin/python" ] && grep -qxF "$wanted" "$stamp" 2>/dev/null; then
  echo "venv $venv is up to date"
else
  echo "installing dependencies into $venv"
  lock 9 exclusive  # no load runs in the venv while it changes
  # No stamp: no install ever finished here (say a stop killed the first one half-way).
  # Start from scratch rather than trust a half-built venv.
  [ -f "$stamp" ] || rm -rf "$venv"
  install_dependencies
  # Remember the inputs as they were and as the install left them (it writes a missing lock).
  printf '%s\n%s\n' "$wanted" "$(inputs_hash)" >"$stamp"
fi

if [ "$#" -gt 0 ]; then
  # The shared lock before the install lock goes, so no install slips in; held until the end.
  lock 9 shared 8 unlock
  exec 8>&-
  exec "$@"
fi
