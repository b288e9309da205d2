#!/usr/bin/env bash
# Runs a throwaway PostgreSQL cluster on a free loopback port for the tests.
#
#   scripts/test-postgres.sh start   # prints: export GATEHOUSE_TEST_DATABASE_URL=...
#   scripts/test-postgres.sh stop
#
# The cluster lives in $PGTEST_DIR (default: .tmp/pgtest in the repository)
# and runs as the unprivileged "postgres" user when started as root, because
# PostgreSQL refuses to run as root. It installs Debian's postgresql package
# first when initdb is missing.
set -euo pipefail

dir="${PGTEST_DIR:-$(cd "$(dirname "$0")/.." && pwd)/.tmp/pgtest}"

find_bin() {
  local name=$1
  if command -v "$name" >/dev/null 2>&1; then command -v "$name"; return; fi
  local found
  found=$(ls -d /usr/lib/postgresql/*/bin/"$name" 2>/dev/null | sort -V | tail -n1 || true)
  [[ -n "$found" ]] && echo "$found"
}

install_postgres() {
  if [[ -n "$(find_bin initdb)" ]]; then return; fi
  echo "initdb not found: installing PostgreSQL from Debian's packages" >&2
  if [[ $(id -u) -ne 0 ]]; then
    echo "PostgreSQL is missing and installing it needs root: apt-get install postgresql" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2
  apt-get install -y -qq postgresql >&2
}

as_owner() {
  if [[ $(id -u) -eq 0 ]]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

free_port() {
  python3 - <<'PY' 2>/dev/null || echo $((20000 + RANDOM % 20000))
import socket
s = socket.socket()
s.bind(("127.0.0.1", 0))
print(s.getsockname()[1])
s.close()
PY
}

start() {
  install_postgres
  local initdb pg_ctl port
  initdb=$(find_bin initdb)
  pg_ctl=$(find_bin pg_ctl)
  rm -rf "$dir"
  mkdir -p "$dir"
  if [[ $(id -u) -eq 0 ]]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir "$dir" postgres
    chown postgres "$dir"
    # Every parent must be traversable for the postgres user.
    local p="$dir"
    while [[ "$p" != "/" ]]; do p=$(dirname "$p"); chmod o+x "$p" 2>/dev/null || true; done
  fi
  port=$(free_port)
  as_owner "$initdb" -D "$dir/data" -U gatehouse --auth=trust --encoding=UTF8 --no-sync >"$dir/initdb.log" 2>&1
  as_owner "$pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -p $port -k $dir -c fsync=off -c max_connections=300" start >&2
  echo "$port" >"$dir/port"
  echo "export GATEHOUSE_TEST_DATABASE_URL=postgres://gatehouse@127.0.0.1:$port/postgres?sslmode=disable"
  echo "export GATEHOUSE_TEST_PG_CTL=$pg_ctl"
  echo "export GATEHOUSE_TEST_PG_DATA=$dir/data"
}

stop() {
  [[ -d "$dir/data" ]] || return 0
  as_owner "$(find_bin pg_ctl)" -D "$dir/data" -m immediate stop >&2 || true
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
