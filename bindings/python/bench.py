"""Calls per second of a cached authenticated read through the Python
package: get_record with a valid access token (token check, session check,
policy decision, decryption, durable audit event), on SQLite.

    pip install ./bindings/python
    python bindings/python/bench.py [--seconds 10] [--threads 1] [--op get_record|authenticate]

`--op authenticate` measures the token check alone (no audit write), which
isolates what the binding adds from the durable audit write every read pays.

Compare with `cargo bench -p clarity-benches --bench service` (the same read
in Rust) and bindings/node/bench.js; figures in docs/BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time

import clarity

PASSWORD = "benchmarks deserve good passwords too"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--op", choices=["get_record", "authenticate"], default="get_record")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir, clarity.Clarity({"data_dir": data_dir}) as c:
        c.create_user_as_operator("perf@example.org", PASSWORD, ["clinician"])
        token = c.login("perf@example.org", PASSWORD)["access_token"]
        patient = c.create_patient(
            token,
            {"mrn": "BENCH-1", "given_name": "Bench", "family_name": "Mark",
             "birth_date": "1980-01-01", "sex": "other"},
        )
        record = c.create_record(token, patient["id"], "observation", {"code": "8867-4", "heart_rate": 72})
        if args.op == "get_record":
            def call() -> None:
                c.get_record(token, record["id"])
        else:
            def call() -> None:
                c.authenticate(token)

        for _ in range(200):  # warm up: token cache, connections
            call()

        counts = [0] * args.threads
        deadline = time.perf_counter() + args.seconds

        def work(n: int) -> None:
            while time.perf_counter() < deadline:
                call()
                counts[n] += 1

        start = time.perf_counter()
        threads = [threading.Thread(target=work, args=(n,)) for n in range(args.threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.perf_counter() - start
        total = sum(counts)
        print(
            f"python {args.op} (cached token, sqlite, {args.threads} thread(s)): "
            f"{total / elapsed:,.0f} calls/s ({total} calls in {elapsed:.1f} s, "
            f"{elapsed / total * 1e6:.1f} µs per call)"
        )


if __name__ == "__main__":
    main()
