#!/usr/bin/env bash
# Throwaway PostgreSQL 15 for the consent tests.
#   eval "$(.ci/postgres.sh start)"   installs Debian's postgresql if missing, inits a data folder
#                                     (PG below), starts it on 127.0.0.1:${VFX_PG_PORT:-54329} and prints
#                                     `export VFX_TEST_PG_URL=postgresql://vfx@127.0.0.1:PORT/vfx`
#   .ci/postgres.sh stop              stops it (the data folder stays; remove it to reset)
# PostgreSQL refuses to run as root, so as root the cluster belongs to the `postgres` user, and its
# folder is one that user can reach: /tmp/vfx-ci-pg-<hash of this checkout's path>, because a checkout
# inside a private folder (`mktemp -d` makes them 0700) cannot be entered by it. Otherwise .ci-pg/ here.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
if [ "$(id -u)" = 0 ]; then
    PG="/tmp/vfx-ci-pg-$(printf %s "$ROOT" | sha256sum | cut -c1-12)"
else
    PG="$ROOT/.ci-pg"
fi
DATA="$PG/data"
PORT="${VFX_PG_PORT:-54329}"

bin_dir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
    if [ -z "$dir" ] || [ ! -x "$dir/postgres" ]; then
        echo "postgres.sh: installing postgresql (apt)" >&2
        export DEBIAN_FRONTEND=noninteractive
        apt-get update -qq >&2 && apt-get install -y -qq postgresql >&2
        dir=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n1)
    fi
    echo "$dir"
}

as_owner() {
    if [ "$(id -u)" = 0 ]; then (cd / && runuser -u postgres -- "$@"); else "$@"; fi  # cd /: it may not enter ours
}

start() {
    local bin; bin=$(bin_dir)
    if [ -L "$PG" ] || { [ -e "$PG" ] && [ "$(stat -c %U "$PG")" != postgres ] && [ "$(stat -c %U "$PG")" != "$(id -un)" ]; }; then
        echo "postgres.sh: $PG is a link or someone else's; remove it" >&2; exit 1
    fi
    mkdir -p "$PG"
    if [ "$(id -u)" = 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        chmod 700 "$PG"
        chown postgres "$PG"
    fi
    if [ ! -f "$DATA/PG_VERSION" ]; then
        as_owner "$bin/initdb" -D "$DATA" -U postgres --auth=trust -E UTF8 >"$PG/initdb.log" 2>&1 \
            || { cat "$PG/initdb.log" >&2; exit 1; }
    fi
    if ! as_owner "$bin/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
        as_owner "$bin/pg_ctl" -D "$DATA" -l "$PG/server.log" -w -t 60 \
            -o "-p $PORT -c listen_addresses=127.0.0.1 -c unix_socket_directories=$PG -c max_connections=100 -c fsync=off" \
            start >&2 || { tail -n 20 "$PG/server.log" >&2; exit 1; }
    fi
    local psql=("$bin/psql" -h 127.0.0.1 -p "$PORT" -U postgres -v ON_ERROR_STOP=1 -qtA)
    "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_roles WHERE rolname='vfx'" | grep -q 1 \
        || "${psql[@]}" -d postgres -c "CREATE ROLE vfx LOGIN SUPERUSER" >&2
    "${psql[@]}" -d postgres -c "SELECT 1 FROM pg_database WHERE datname='vfx'" | grep -q 1 \
        || "${psql[@]}" -d postgres -c "CREATE DATABASE vfx OWNER vfx" >&2
    echo "export VFX_TEST_PG_URL=postgresql://vfx@127.0.0.1:$PORT/vfx"
}

stop() {
    local bin; bin=$(bin_dir)
    [ -f "$DATA/PG_VERSION" ] && as_owner "$bin/pg_ctl" -D "$DATA" -m fast -w stop >&2 || true
}

case "${1:-start}" in
    start) start ;;
    stop) stop ;;
    *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac
