#!/usr/bin/env python3
"""Per-stage latency of one benchmark phase, from two scrapes of /metrics.

    stages.py BEFORE AFTER

BEFORE and AFTER are the server's /metrics text before and after the phase.
For each stage of clarity_stage_duration_seconds, and for each route of
clarity_http_request_duration_seconds (the server's own time for a whole
request, from its head read to its answer handed to the connection), it
prints how many passes the phase made, their mean, the bucket bounds under
which 50 %, 99 %, 99.9 % and 99.99 % of them fell, and the bound of the
slowest (the buckets double, so a bound says "at most", within a factor of
two).
"""
import re
import sys

LINE = re.compile(
    r'^clarity_(stage|http_request)_duration_seconds_(bucket|sum|count)\{(.*)\} (\S+)$')
LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def read(path):
    """{stage: {"sum": s, "count": n, "buckets": [(le, cumulative)]}}"""
    stages = {}
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if not m:
                continue
            family, kind, labels, value = m.groups()
            fields = dict(LABEL.findall(labels))
            stage = fields["stage"] if family == "stage" else fields["route"]
            entry = stages.setdefault(stage, {"sum": 0.0, "count": 0, "buckets": []})
            if kind == "bucket":
                entry["buckets"].append((float(fields["le"]), float(value)))
            else:
                entry[kind] = float(value)
    return stages


def bound(buckets, count, q):
    """The smallest bucket bound holding a share q of the passes."""
    for le, cumulative in buckets:
        if cumulative >= q * count:
            return le
    return float("inf")


def show(seconds):
    if seconds == float("inf"):
        return "   > max"
    return f"{seconds * 1e6:>8.0f}" if seconds < 1e-3 else f"{seconds * 1e3:>6.1f}ms"


def main():
    before, after = read(sys.argv[1]), read(sys.argv[2])
    print(f"   {'stage or route':<27} {'passes':>8} {'mean µs':>8} {'p50 ≤':>8} {'p99 ≤':>8} "
          f"{'p99.9 ≤':>8} {'p99.99 ≤':>8} {'max ≤':>8}")
    for stage, a in after.items():
        b = before.get(stage, {"sum": 0.0, "count": 0, "buckets": []})
        count = a["count"] - b["count"]
        if count <= 0 or stage == "/metrics":
            continue
        was = dict(b["buckets"])
        buckets = [(le, c - was.get(le, 0.0)) for le, c in a["buckets"]]
        mean = (a["sum"] - b["sum"]) / count
        print(f"   {stage:<27} {count:>8.0f} {mean * 1e6:>8.0f} "
              + " ".join(show(bound(buckets, count, q)) for q in (0.5, 0.99, 0.999, 0.9999, 1.0)))


if __name__ == "__main__":
    main()
