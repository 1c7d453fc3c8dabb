#!/usr/bin/env python3
"""Is accord's live /metrics equal to `accord replay --format prometheus` of the same records?

    python3 scripts/ci/lib/counters_equal.py LIVE.prom REPLAY.prom... [--require SERIES_PREFIX]... [--skip NAME]...

Compares every series of the judging counters (the ones both `run` and
`replay` export: records, rejects, late, layer decisions, requests,
divergences, missing layers, stale revisions, ignored OTLP items, skewed
clocks), series by series, and wants `accord_open_joins` 0 in LIVE (every
join closed, so no verdict is still to come). --require names a series
prefix that must be non-zero in REPLAY (so a test cannot pass on a stream
that lacks what it is about). Several REPLAY files (replays of separate
streams, e.g. one per partition) are summed series by series. --skip leaves
the counter NAME out of the comparison (for a replay that cannot have it).
Prints one summary line, then one line per difference; exits 0 iff all is
equal.
"""
import argparse
import re
import sys

COUNTERS = (
    "accord_records_total",
    "accord_records_rejected_total",
    "accord_records_late_total",
    "accord_layer_decisions_total",
    "accord_requests_total",
    "accord_divergences_total",
    "accord_missing_layers_total",
    "accord_stale_revision_records_total",
    "accord_otlp_items_ignored_total",
    "accord_records_clock_skewed_total",
)
LINE = re.compile(r"^([a-z_:]+)(\{[^}]*\})? ([0-9.eE+-]+|NaN)$")


def parse(path):
    out = {}
    with open(path) as fh:
        for line in fh:
            m = LINE.match(line.strip())
            if m:
                labels = ",".join(sorted(re.findall(r'\w+="[^"]*"', m.group(2) or "")))
                out[m.group(1) + ("{%s}" % labels if labels else "")] = float(m.group(3))
    return out


def total(series, name):
    return sum(v for k, v in series.items() if k == name or k.startswith(name + "{"))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("live")
    ap.add_argument("replay", nargs="+")
    ap.add_argument("--require", action="append", default=[])
    ap.add_argument("--skip", action="append", default=[], choices=COUNTERS)
    a = ap.parse_args()
    live, ref = parse(a.live), {}
    for path in a.replay:
        for k, v in parse(path).items():
            ref[k] = ref.get(k, 0.0) + v
    diffs = []
    keys = {k for k in set(live) | set(ref) if k.split("{")[0] in COUNTERS and k.split("{")[0] not in a.skip}
    for k in sorted(keys):
        lv, rv = live.get(k, 0.0), ref.get(k, 0.0)
        if lv != rv:
            diffs.append("  %s live=%g replay=%g (%+g)" % (k, lv, rv, lv - rv))
    open_joins = live.get("accord_open_joins")
    if open_joins != 0:
        diffs.append("  accord_open_joins live=%s (want 0)" % open_joins)
    for prefix in a.require:
        if total(ref, prefix.split("{")[0]) == 0 or not any(k.startswith(prefix) and v for k, v in ref.items()):
            diffs.append("  %s is 0 in the replay: the stream lacks what this test is about" % prefix)
    print("requests live=%g replay=%g; records live=%g replay=%g; late live=%g replay=%g; "
          "clock-skewed live=%g replay=%g; rejected live=%g replay=%g; open joins %s"
          % (total(live, "accord_requests_total"), total(ref, "accord_requests_total"),
             total(live, "accord_records_total"), total(ref, "accord_records_total"),
             total(live, "accord_records_late_total"), total(ref, "accord_records_late_total"),
             total(live, "accord_records_clock_skewed_total"), total(ref, "accord_records_clock_skewed_total"),
             total(live, "accord_records_rejected_total"), total(ref, "accord_records_rejected_total"), open_joins))
    if diffs:
        print("\n".join(diffs))
    sys.exit(1 if diffs else 0)


if __name__ == "__main__":
    main()
