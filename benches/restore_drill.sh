#!/usr/bin/env bash
# Restore drill: how long a backup and a restore of a large store take.
#
#   benches/restore_drill.sh [PATIENTS] [RECORDS_PER_PATIENT]    (default 100000 10)
#
# Fills a fresh SQLite store with `clarity demo` (synthetic patients, one
# record body per record; the fill is not timed), then times, with the
# release binary: `clarity backup`, `clarity backup verify`, a restore into an
# empty SQLite store, and — when DRILL_POSTGRES_URL names a PostgreSQL
# database — a restore of the same archive into PostgreSQL (SQLite →
# PostgreSQL) and a backup from there. Prints one line per step and the sizes.
# Not part of scripts/test: at full scale it runs for many minutes.
set -euo pipefail
cd "$(dirname "$0")/.."

patients="${1:-100000}"
per_patient="${2:-10}"
target_dir="${CARGO_TARGET_DIR:-target}"
cargo build --release -p clarity-server --locked >&2
bin="$target_dir/release/clarity"
work=$(mktemp -d "${DRILL_DIR:-${TMPDIR:-/tmp}}/clarity-drill.XXXXXX")
pg_schema=""
cleanup() {
    rm -rf "$work"
    if [ -n "$pg_schema" ]; then
        psql "$DRILL_POSTGRES_URL" -qAtc "DROP SCHEMA IF EXISTS $pg_schema CASCADE" >/dev/null 2>&1 || true
    fi
}
trap cleanup EXIT
export CLARITY_LOG_LEVEL=warn
export CLARITY_LOG_FORMAT=text

timed() {
    local label=$1
    shift
    local start end
    start=$(date +%s.%N)
    "$@" >"$work/last.out"
    end=$(date +%s.%N)
    printf '%-28s %8.1f s   %s\n' "$label" "$(echo "$end - $start" | bc)" "$(tail -n 1 "$work/last.out")"
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(uname -sr)"
echo "scale:   $patients patients x $per_patient records = $((patients * per_patient)) records"

# The fill is not what is measured: `normal` durability makes it quicker.
timed "fill (clarity demo)" env CLARITY_STORE_SQLITE_SYNCHRONOUS=normal \
    "$bin" --data-dir "$work/source" demo --patients "$patients" --records-per-patient "$per_patient"
timed "backup (SQLite)" "$bin" --data-dir "$work/source" backup -o "$work/drill.cbak"
timed "backup verify" "$bin" --data-dir "$work/source" backup verify "$work/drill.cbak"
mkdir -p "$work/target"
cp "$work/source/keyring.json" "$work/target/keyring.json"
timed "restore (SQLite -> SQLite)" "$bin" --data-dir "$work/target" restore "$work/drill.cbak"

if [ -n "${DRILL_POSTGRES_URL:-}" ]; then
    pg_schema="drill_$(date +%s)_$$"
    timed "restore (SQLite -> PostgreSQL)" env CLARITY_STORE_BACKEND=postgres \
        CLARITY_STORE_POSTGRES_URL="$DRILL_POSTGRES_URL" CLARITY_STORE_POSTGRES_SCHEMA="$pg_schema" \
        "$bin" --data-dir "$work/target" restore "$work/drill.cbak"
    timed "backup (PostgreSQL)" env CLARITY_STORE_BACKEND=postgres \
        CLARITY_STORE_POSTGRES_URL="$DRILL_POSTGRES_URL" CLARITY_STORE_POSTGRES_SCHEMA="$pg_schema" \
        "$bin" --data-dir "$work/target" backup -o "$work/drill-pg.cbak"
fi

echo "sizes:   database $(du -sh "$work/source" | cut -f1), archive $(du -h "$work/drill.cbak" | cut -f1)"
