#!/bin/sh
# First start: initdb with the password file, then create POSTGRES_DB, as the
# official image's entrypoint does; every start: exec the command given.
set -eu
if [ "$(id -u)" = 0 ]; then
    exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
    user="${POSTGRES_USER:-postgres}"
    # shellcheck disable=SC2086 # the initdb arguments are words on purpose
    initdb -D "$PGDATA" --username="$user" --pwfile="${POSTGRES_PASSWORD_FILE:?POSTGRES_PASSWORD_FILE is required}" \
        ${POSTGRES_INITDB_ARGS:-} >/dev/null
    echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
    db="${POSTGRES_DB:-$user}"
    if [ "$db" != postgres ]; then
        pg_ctl -D "$PGDATA" -w -o "-c listen_addresses=''" start >/dev/null
        psql -v ON_ERROR_STOP=1 -q --username="$user" --dbname=postgres \
            -c "CREATE DATABASE \"$db\""
        pg_ctl -D "$PGDATA" -w -m fast stop >/dev/null
    fi
    echo "docker-entrypoint: initialised $PGDATA"
fi
exec "$@"
