#!/usr/bin/env bash
# Start-to-ready benchmark: how long the release server takes from its start
# on an empty data directory (SQLite, a new keyring, migrations, the first
# admin's setup code) until GET /health/ready answers 200.
#
#   benches/startup.sh [RUNS]        (default 20)
#
# Each run uses a fresh directory; the readiness probe polls every 1 ms over
# one keep-alive connection, so a figure is late by at most about 1 ms.
# Prints each run and the minimum, median and maximum. Needs python3.
set -euo pipefail
cd "$(dirname "$0")/.."

runs="${1:-20}"
target="${CARGO_TARGET_DIR:-target}"
cargo build --release -p clarity-server --locked >&2
export STARTUP_BIN="$target/release/clarity" STARTUP_RUNS="$runs"

python3 - <<'PY'
import http.client, os, socket, statistics, subprocess, tempfile, time

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]

def ready(port):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
        c.request("GET", "/health/ready")
        ok = c.getresponse().status == 200
        c.close()
        return ok
    except OSError:
        return False

times = []
for n in range(int(os.environ["STARTUP_RUNS"])):
    with tempfile.TemporaryDirectory() as work:
        port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("STARTUP_")}
        env["CLARITY_LOG_LEVEL"] = "warn"
        log = open(os.path.join(work, "server.log"), "w+b")
        start = time.perf_counter()
        server = subprocess.Popen(
            [os.environ["STARTUP_BIN"], "--data-dir", os.path.join(work, "data"),
             "serve", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL, stderr=log, env=env)
        try:
            while not ready(port):
                if server.poll() is not None:
                    log.seek(0)
                    raise SystemExit("the server exited before it was ready: "
                                     + log.read().decode(errors="replace")[-2000:])
                if time.perf_counter() - start > 30:
                    raise SystemExit("not ready after 30 s")
                time.sleep(0.001)
            elapsed = (time.perf_counter() - start) * 1000
        finally:
            server.terminate()
            server.wait()
        times.append(elapsed)
        print(f"run {n + 1}: {elapsed:.1f} ms")
print(f"start to ready over {len(times)} runs: min {min(times):.1f} ms, "
      f"median {statistics.median(times):.1f} ms, max {max(times):.1f} ms")
PY
