# shellcheck shell=bash
# Start a throw-away PostgreSQL server on 127.0.0.1 for the calibration-database
# tests and export its URL:
#
#   DRACONIS_TEST_POSTGRES_URL=postgresql+psycopg2://draconis@127.0.0.1:PORT/draconis_test
#   DRACONIS_TEST_POSTGRES_STOP="<command that stops the server and removes its data>"
#
# Meant to be *sourced* (by .ci/run, or by the tests' fixture); it returns
# non-zero, saying why on stderr, when no server can be started.  It installs
# Debian's postgresql package if no initdb/pg_ctl can be found (unless
# DRACONIS_PG_NO_INSTALL is set), runs the server as a non-root user (the
# 'postgres' account, created if missing, when run as root), keeps its data
# and socket under /tmp, and listens on loopback only, on a free port.
# DRACONIS_PG_NO_TRAP=1: do not stop the server when the sourcing shell exits.
# DRACONIS_PG_LIBDIR: where versioned PostgreSQL installs live (default /usr/lib/postgresql).
#
# The calling shell may have `set -euo pipefail`; everything here checks its
# own errors and returns instead of exiting, so a failure never kills the caller.

_draconis_pg_say() { echo "postgres.sh: $*" >&2; }

_draconis_pg_bindir() {
  # A directory holding initdb, pg_ctl and postgres, or nothing.
  local dir candidate
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dir=$(dirname "$(readlink -f "$(command -v initdb)")")
    if [ -x "$dir/pg_ctl" ] && [ -x "$dir/postgres" ]; then echo "$dir"; return 0; fi
  fi
  # Debian keeps the binaries off PATH, one directory per major version: take the newest.
  for candidate in $(ls -d "${DRACONIS_PG_LIBDIR:-/usr/lib/postgresql}"/*/bin 2>/dev/null | sort -V -r); do
    if [ -x "$candidate/initdb" ] && [ -x "$candidate/pg_ctl" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

_draconis_pg_install() {
  if [ -n "${DRACONIS_PG_NO_INSTALL:-}" ]; then
    _draconis_pg_say "no PostgreSQL binaries (initdb/pg_ctl) found and DRACONIS_PG_NO_INSTALL is set"
    return 1
  fi
  if ! command -v apt-get >/dev/null 2>&1; then
    _draconis_pg_say "no PostgreSQL binaries found and no apt-get to install them"
    return 1
  fi
  local sudo=""
  if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo="sudo -n"; else
      _draconis_pg_say "no PostgreSQL binaries found; installing them needs root (or password-less sudo)"
      return 1
    fi
  fi
  _draconis_pg_say "installing PostgreSQL from Debian packages (apt-get install postgresql)"
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2 || return 1
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2 || return 1
}

_draconis_pg_free_port() {
  local py
  for py in python3 python; do
    if command -v "$py" >/dev/null 2>&1; then
      "$py" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()' \
        && return 0
    fi
  done
  echo $(( 20000 + RANDOM % 20000 ))
}

_draconis_pg_start() {
  local bindir user port datadir as_user db url
  bindir=$(_draconis_pg_bindir) || { _draconis_pg_install && bindir=$(_draconis_pg_bindir); } || {
    _draconis_pg_say "PostgreSQL binaries not found (looked on PATH and in ${DRACONIS_PG_LIBDIR:-/usr/lib/postgresql}/*/bin)"
    return 1
  }
  as_user=()
  if [ "$(id -u)" -eq 0 ]; then
    # postgres refuses to run as root: use the postgres account, creating it if needed.
    user=postgres
    if ! id -u "$user" >/dev/null 2>&1; then
      _draconis_pg_say "creating system user $user"
      useradd --system --no-create-home --shell /bin/sh "$user" || { _draconis_pg_say "useradd failed"; return 1; }
    fi
    if command -v runuser >/dev/null 2>&1; then as_user=(runuser -u "$user" --)
    else as_user=(su "$user" -s /bin/sh -c); fi
  else
    user=$(id -un)
  fi
  datadir=$(mktemp -d /tmp/draconis-pg.XXXXXX) || { _draconis_pg_say "cannot create a directory in /tmp"; return 1; }
  chmod 700 "$datadir"
  if [ "$(id -u)" -eq 0 ]; then chown "$user" "$datadir"; fi
  _draconis_pg_run() {
    # run a command as the server's user (su needs the command as one string)
    if [ "${as_user[0]:-}" = "su" ]; then "${as_user[@]}" "$(printf '%q ' "$@")"
    elif [ ${#as_user[@]} -gt 0 ]; then "${as_user[@]}" "$@"
    else "$@"; fi
  }
  if ! _draconis_pg_run "$bindir/initdb" -D "$datadir/data" -U draconis --auth=trust -E UTF8 --no-locale >"$datadir/initdb.log" 2>&1; then
    _draconis_pg_say "initdb failed: $(tail -n 3 "$datadir/initdb.log" | tr '\n' ' ')"
    rm -rf "$datadir"; return 1
  fi
  port=$(_draconis_pg_free_port)
  if ! _draconis_pg_run "$bindir/pg_ctl" -D "$datadir/data" -l "$datadir/server.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $port -c unix_socket_directories=$datadir -c max_connections=200 -c fsync=off" \
      start >/dev/null 2>&1; then
    _draconis_pg_say "server did not start: $(tail -n 3 "$datadir/server.log" 2>/dev/null | tr '\n' ' ')"
    rm -rf "$datadir"; return 1
  fi
  db=draconis_test
  if ! _draconis_pg_run "$bindir/createdb" -h 127.0.0.1 -p "$port" -U draconis "$db" 2>"$datadir/createdb.log"; then
    _draconis_pg_say "createdb failed: $(cat "$datadir/createdb.log")"
    _draconis_pg_run "$bindir/pg_ctl" -D "$datadir/data" -m immediate stop >/dev/null 2>&1
    rm -rf "$datadir"; return 1
  fi
  url="postgresql+psycopg2://draconis@127.0.0.1:$port/$db"
  export DRACONIS_TEST_POSTGRES_URL="$url"
  if [ ${#as_user[@]} -gt 0 ]; then
    export DRACONIS_TEST_POSTGRES_STOP="runuser -u $user -- $bindir/pg_ctl -D $datadir/data -m fast stop; rm -rf $datadir"
    command -v runuser >/dev/null 2>&1 || \
      export DRACONIS_TEST_POSTGRES_STOP="su $user -s /bin/sh -c '$bindir/pg_ctl -D $datadir/data -m fast stop'; rm -rf $datadir"
  else
    export DRACONIS_TEST_POSTGRES_STOP="$bindir/pg_ctl -D $datadir/data -m fast stop; rm -rf $datadir"
  fi
  _draconis_pg_say "PostgreSQL $("$bindir/postgres" --version | awk '{print $3}') listening on 127.0.0.1:$port (data in $datadir)"
  if [ -z "${DRACONIS_PG_NO_TRAP:-}" ]; then
    # stop it when the shell that sourced us exits
    # shellcheck disable=SC2064
    trap "$DRACONIS_TEST_POSTGRES_STOP" EXIT
  fi
  return 0
}

if [ -n "${DRACONIS_TEST_POSTGRES_URL:-}" ]; then
  _draconis_pg_say "using the server already given in DRACONIS_TEST_POSTGRES_URL"
else
  _draconis_pg_start
fi
