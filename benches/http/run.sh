#!/usr/bin/env bash
# HTTP load benchmark: the release server on a fresh data directory filled by
# `clarity demo`, driven by wrk with keep-alive connections.
#
#   benches/http/run.sh [--patients N] [--records-per-patient N]
#                       [--connections N] [--duration SECONDS]
#                       [--postgres URL] [--binary PATH] [--perf FILE]
#                       [--perf-phase get_patient|get_record|post_record]
#                       [--call-graph fp|dwarf]
#                       [--syscalls] [--allocations] [--log-level LEVEL]
#                       [--hello]
#
# --perf records a CPU profile of the server (perf record -g, 999 Hz) during
# one phase (--perf-phase, the first by default) into FILE; read it with
# `perf report -i FILE`. --call-graph dwarf records stacks perf can follow
# through libc and Rust's inlined async code (frame pointers, the default,
# stop at the first libc call); its files are large, so keep it to a few
# seconds (--duration).
#
# --syscalls counts the server's system calls (strace -f -c) during that
# same phase and prints them per request: a count that holds on a noisy
# machine. strace slows the server, so take rates from a run without it.
#
# Every phase also prints the server's CPU time and context switches per
# request (perf stat's task-clock and context-switches, counted for the
# server's threads only), when perf is installed.
#
# --allocations counts the server's calls to malloc during that phase
# (a perf uprobe on libc's malloc; it slows the server, so take rates from
# a run without it) and prints them per request.
#
# --hello also drives the goals' ceiling, a bare hyper server (the `hello`
# binary of benches/, two workers), with the same wrk settings, script and
# paths for as long, after Clarity's phases; it prints its rate and each
# phase's rate as a fraction of it (the read goal is set as that ratio).
#
# --log-level sets the server's log level (default warn: no per-request
# line; production's info writes one access-log line per request).
#
# --binary runs a given `clarity` build instead of building this checkout's
# (to compare two builds in one sitting).
#
# Phases: GET /v1/patients/{id} and GET /v1/records/{id} over random rows the
# demo clinician may read, then POST /v1/patients/{id}/records (1 KiB body).
# Prints requests/s, p50/p99/p99.9, errors and the server's RSS per phase,
# and where the phase's time went by stage (the server's stage histograms,
# through benches/http/stages.py), then checks that the audit log holds
# exactly one successful read event per 200 the server answered (from its
# own /metrics), and that every chain verifies. Needs wrk (Debian: wrk), sqlite3 or psql, python3.
set -euo pipefail
cd "$(dirname "$0")/../.."

patients=10000
records=3
connections=64
duration=20
postgres=""
bin=""
perf_out=""
perf_phase=get_patient
call_graph=fp
syscalls=""
allocations=""
log_level=warn
hello=""
while [ $# -gt 0 ]; do
    case "$1" in
        --patients) patients="$2"; shift 2 ;;
        --records-per-patient) records="$2"; shift 2 ;;
        --connections) connections="$2"; shift 2 ;;
        --duration) duration="$2"; shift 2 ;;
        --postgres) postgres="$2"; shift 2 ;;
        --binary) bin="$2"; shift 2 ;;
        --perf) perf_out="$2"; shift 2 ;;
        --perf-phase) perf_phase="$2"; shift 2 ;;
        --call-graph) call_graph="$2"; shift 2 ;;
        --syscalls) syscalls=1; shift ;;
        --allocations) allocations=1; shift ;;
        --log-level) log_level="$2"; shift 2 ;;
        --hello) hello=1; shift ;;
        *) echo "unknown argument: $1" >&2; exit 2 ;;
    esac
done
command -v wrk >/dev/null || { echo "wrk is required (Debian: apt-get install wrk)" >&2; exit 1; }

target="${CARGO_TARGET_DIR:-target}"
if [ -z "$bin" ]; then
    cargo build --release -p clarity-server --locked >&2
    bin="$target/release/clarity"
fi
if [ -n "$hello" ]; then
    cargo build --release -p clarity-benches --bin hello --locked >&2
fi
work=$(mktemp -d)
data="$work/data"
server_pid=""
hello_pid=""
schema=""
cleanup() {
    [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null || true
    [ -n "$hello_pid" ] && kill "$hello_pid" 2>/dev/null || true
    if [ -n "$schema" ]; then
        psql "$postgres" -qAtc "DROP SCHEMA IF EXISTS $schema CASCADE" >/dev/null 2>&1 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

export CLARITY_LOG_LEVEL="$log_level"
# One client address and one account drive the whole load: lift their limits.
export CLARITY_RATE_LIMIT_ADDRESS_PER_SEC=10000000 CLARITY_RATE_LIMIT_ADDRESS_BURST=10000000
export CLARITY_RATE_LIMIT_READ_PER_SEC=10000000 CLARITY_RATE_LIMIT_READ_BURST=10000000
export CLARITY_RATE_LIMIT_WRITE_PER_SEC=10000000 CLARITY_RATE_LIMIT_WRITE_BURST=10000000
if [ -n "$postgres" ]; then
    schema="bench_$(date +%s)_$$"
    export CLARITY_STORE_BACKEND=postgres CLARITY_STORE_POSTGRES_URL="$postgres" CLARITY_STORE_POSTGRES_SCHEMA="$schema"
    backend=postgres
else
    backend=sqlite
fi
sql() {
    if [ -n "$postgres" ]; then
        psql "$postgres" -qAt -c "SET search_path TO $schema" -c "$1"
    else
        sqlite3 "$data/clarity.db" "$1"
    fi
}
uuid_of() { # hex column → uuid text
    if [ -n "$postgres" ]; then echo "$1::text"; else
        echo "lower(substr(hex($1),1,8)||'-'||substr(hex($1),9,4)||'-'||substr(hex($1),13,4)||'-'||substr(hex($1),17,4)||'-'||substr(hex($1),21))"
    fi
}

echo "== filling: $patients patients x $records records ($backend)" >&2
start=$(date +%s)
demo_out=$("$bin" --data-dir "$data" demo --patients "$patients" --records-per-patient "$records")
echo "   took $(( $(date +%s) - start )) s" >&2
email=$(printf '%s\n' "$demo_out" | awk '$1 == "clinician" {print $2}')
password=$(printf '%s\n' "$demo_out" | sed -n 's/.*password "\([^"]*\)".*/\1/p')

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$bin" --data-dir "$data" serve --listen "127.0.0.1:$port" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$port/health/ready" >/dev/null && break; sleep 0.1; done
base="http://127.0.0.1:$port"
token=$(curl -fs "$base/v1/auth/login" -H 'content-type: application/json' \
    -d "{\"email\":\"$email\",\"password\":\"$password\"}" | python3 -c 'import json,sys; print(json.load(sys.stdin)["access_token"])')

sql "SELECT '/v1/patients/' || $(uuid_of id) FROM patients WHERE erased_at IS NULL" >"$work/patients.txt"
sql "SELECT '/v1/records/' || $(uuid_of id) FROM records" >"$work/records.txt"
sql "SELECT '/v1/patients/' || $(uuid_of id) || '/records' FROM patients WHERE erased_at IS NULL" >"$work/post.txt"
body=$(python3 -c 'import json; print(json.dumps({"kind":"note","data":{"text":"x"*1000}}))')

metric() { # the server's count of answers for a route and status
    curl -fs "$base/metrics" | python3 -c '
import sys, re
route, method, status = sys.argv[1:]
total = 0
for line in sys.stdin:
    if line.startswith("clarity_http_requests_total{") and f"route=\"{route}\"" in line \
       and f"method=\"{method}\"" in line and f"status=\"{status}\"" in line:
        total += int(float(line.rsplit(" ", 1)[1]))
print(total)' "$@"
}
rate_of() { # requests per second of a wrk RESULT line
    python3 -c 'import sys; f = dict(kv.split("=") for kv in sys.argv[1].split()[1:]); print(int(f["requests"]) / (int(f["duration_us"]) / 1e6))' "$1"
}
rates=""
rss_kb() { awk '/VmRSS/ {print $2}' "/proc/$server_pid/status"; }

phase() { # name paths-file [body]
    local name=$1 paths=$2 phase_body=${3:-}
    if [ -n "$perf_out" ] && [ "$name" = "$perf_phase" ]; then
        perf record -F 999 --call-graph "$call_graph" -p "$server_pid" -o "$perf_out" -- sleep "$duration" >/dev/null 2>&1 &
        perf_out=""
    fi
    local strace_pid=""
    if [ -n "$syscalls" ] && [ "$name" = "$perf_phase" ]; then
        command -v strace >/dev/null || { echo "--syscalls needs strace (Debian: strace)" >&2; exit 1; }
        strace -f -c -qq -p "$server_pid" -o "$work/strace.txt" &
        strace_pid=$!
        sleep 0.5
    fi
    local stat_pid="" events="task-clock,context-switches"
    if [ -n "$allocations" ] && [ "$name" = "$perf_phase" ]; then
        local libc
        libc=$(ldd "$bin" | awk '/libc.so/ {print $3}')
        perf probe -l 2>/dev/null | grep -q 'probe_libc:malloc' || perf probe -q -x "$libc" malloc
        events="$events,probe_libc:malloc"
    fi
    if command -v perf >/dev/null; then
        perf stat -x, -e "$events" -p "$server_pid" -o "$work/$name.stat" &
        stat_pid=$!
    fi
    curl -fs "$base/metrics" >"$work/$name.before"
    CLARITY_TOKEN="$token" CLARITY_PATHS="$paths" CLARITY_BODY="$phase_body" \
        wrk -t1 -c"$connections" -d"${duration}s" --latency -s benches/http/paths.lua "$base" >"$work/$name.wrk"
    local line
    line=$(grep '^RESULT' "$work/$name.wrk")
    rates="$rates $name=$(rate_of "$line")"
    if [ -n "$strace_pid" ]; then
        kill -INT "$strace_pid"
        wait "$strace_pid" || true
        python3 - "$line" "$work/strace.txt" <<'PY'
import sys
fields = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
requests = int(fields["requests"])
rows = []
for row in open(sys.argv[2]):
    parts = row.split()
    if len(parts) >= 5 and parts[0][0].isdigit() and parts[-1] != "total":
        rows.append((int(parts[3]), parts[-1]))
total = sum(calls for calls, _ in rows)
top = ", ".join(f"{name} {calls / requests:.2f}" for calls, name in sorted(rows, reverse=True)[:8])
print(f"   syscalls per request: {total / requests:.2f} ({top}) over {requests} requests")
PY
    fi
    python3 - "$name" "$line" "$(rss_kb)" "$duration" <<'PY'
import sys
name, line, rss, duration = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
f = dict(kv.split("=") for kv in line.split()[1:])
secs = int(f["duration_us"]) / 1e6
errors = sum(int(f[k]) for k in f if k.startswith("errors_"))
print(f"{name:<14} {int(f['requests'])/secs:>9.0f} req/s  p50 {int(f['p50_us'])/1000:.2f} ms  "
      f"p99 {int(f['p99_us'])/1000:.2f} ms  p99.9 {int(f['p999_us'])/1000:.2f} ms  "
      f"errors {errors}  rss {rss/1024:.0f} MiB")
PY
    if [ -n "$stat_pid" ]; then
        kill -INT "$stat_pid"
        wait "$stat_pid" || true
        python3 - "$line" "$work/$name.stat" <<'PY'
import sys
fields = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
requests = int(fields["requests"])
counts = {}
for row in open(sys.argv[2]):
    parts = row.strip().split(",")
    if len(parts) > 2 and parts[0] and parts[0][0].isdigit():
        counts[parts[2]] = float(parts[0])
out = []
if "task-clock" in counts:  # milliseconds of CPU
    out.append(f"server CPU {counts['task-clock'] * 1000 / requests:.1f} us")
if "context-switches" in counts:
    out.append(f"context switches {counts['context-switches'] / requests:.2f}")
if "probe_libc:malloc" in counts:
    out.append(f"mallocs {counts['probe_libc:malloc'] / requests:.1f}")
print("   per request: " + ", ".join(out) + f" over {requests} requests (whole phase, curl of /metrics included)")
PY
    fi
    curl -fs "$base/metrics" >"$work/$name.after"
    python3 benches/http/stages.py "$work/$name.before" "$work/$name.after"
}

idle_rss=$(rss_kb)
echo "backend=$backend patients=$patients records/patient=$records connections=$connections duration=${duration}s cores=$(nproc)"
echo "server RSS idle after fill: $((idle_rss / 1024)) MiB"
reads_before=$(sql "SELECT count(*) FROM audit_events WHERE subtype IN ('patient.read', 'record.read') AND outcome = '0'")
ok_before=$(( $(metric '/v1/patients/{id}' GET 200) + $(metric '/v1/records/{id}' GET 200) ))
phase get_patient "$work/patients.txt"
phase get_record "$work/records.txt"
phase post_record "$work/post.txt" "$body"

# Every 200 the server sent for a read has exactly one successful read event.
sleep 1
reads_after=$(sql "SELECT count(*) FROM audit_events WHERE subtype IN ('patient.read', 'record.read') AND outcome = '0'")
ok_after=$(( $(metric '/v1/patients/{id}' GET 200) + $(metric '/v1/records/{id}' GET 200) ))
events=$((reads_after - reads_before)); answered=$((ok_after - ok_before))
echo "audit: $events successful read events for $answered successful reads"
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true; server_pid=""
"$bin" --data-dir "$data" audit verify >"$work/verify.txt" 2>&1 || { cat "$work/verify.txt"; echo "FAIL: audit chains do not verify"; exit 1; }
echo "audit chains verify"
[ "$events" -eq "$answered" ] || { echo "FAIL: audit events and successful reads differ"; exit 1; }

if [ -n "$hello" ]; then
    hello_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "$target/release/hello" "127.0.0.1:$hello_port" &
    hello_pid=$!
    for _ in $(seq 1 100); do curl -fs "http://127.0.0.1:$hello_port/" >/dev/null && break; sleep 0.1; done
    CLARITY_TOKEN="$token" CLARITY_PATHS="$work/patients.txt" CLARITY_BODY="" \
        wrk -t1 -c"$connections" -d"${duration}s" --latency -s benches/http/paths.lua "http://127.0.0.1:$hello_port" >"$work/hello.wrk"
    kill "$hello_pid"; wait "$hello_pid" 2>/dev/null || true; hello_pid=""
    python3 - "$(grep '^RESULT' "$work/hello.wrk")" $rates <<'PY'
import sys
f = dict(kv.split("=") for kv in sys.argv[1].split()[1:])
hello = int(f["requests"]) / (int(f["duration_us"]) / 1e6)
print(f"hello          {hello:>9.0f} req/s  p99 {int(f['p99_us'])/1000:.2f} ms (bare hyper, same wrk settings)")
for kv in sys.argv[2:]:
    name, rate = kv.split("=")
    print(f"   {name} / hello = {float(rate) / hello:.3f}")
PY
fi
