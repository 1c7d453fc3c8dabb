#!/usr/bin/env python3
"""Figures and checks of the flood memory test (scripts/ci/flood-memory-test.sh).

    python3 scripts/ci/lib/flood_analysis.py SAMPLES META SUMMARY T0_MS T1_MS \\
        MAX_OPEN MAX_RSS_MIB FLAT_MIB

SAMPLES: lines "ms_since_start VmRSS_kB VmHWM_kB rchar" sampled from accord
while it ran; META: flood_gen.py's meta file (checkpoints: flood records ->
bytes written); SUMMARY: `accord replay --format summary` output; T0/T1:
start and end of the run (epoch ms); MAX_OPEN: the catalog's
max_open_joins; MAX_RSS_MIB, FLAT_MIB: the bounds.
Checks: peak RSS (VmHWM) < MAX_RSS_MIB; RSS after 3 M and 5 M flood
records minus RSS after 1 M < FLAT_MIB (memory flat once the open-join cap
is reached); the summary judged every valid request agree and every flood
request incomplete, counted every request and record, nothing late or
rejected. Figures: RSS before input and at each checkpoint, bytes per open
join, records/s.
Output, one per line: "fig|NAME|VALUE" and "check|1|MESSAGE" (pass) or
"check|0|MESSAGE" (fail), for the shell script to report; exit 0 unless an
input is unreadable.
"""
import json
import sys


def mib(kb):
    return "%.1f MiB" % (kb / 1024)


def fig(name, value):
    print("fig|%s|%s" % (name, value))


def check(ok, msg):
    print("check|%d|%s" % (1 if ok else 0, msg))


def main():
    if len(sys.argv) != 9:
        sys.exit(__doc__)
    samples_f, meta_f, summary_f, t0, t1, max_open, max_rss_mib, flat_mib = sys.argv[1:9]
    t0, t1, max_open = int(t0), int(t1), int(max_open)
    max_rss, flat = float(max_rss_mib) * 1024, float(flat_mib) * 1024  # kB
    with open(samples_f) as fh:
        samples = [tuple(int(x) for x in line.split()) for line in fh if line.strip()]
    with open(meta_f) as fh:
        meta = json.load(fh)
    with open(summary_f) as fh:
        s = json.load(fh)
    cps = {int(k): v for k, v in meta["checkpoints"].items()}

    # Baseline: before the generator writes (it sleeps 1 s), accord has read
    # nothing from stdin (rchar counts only the catalog and libraries).
    base = [r for (_, r, _, c) in samples if c < 65536]
    baseline = min(base) if base else samples[0][1]
    peak_rss = max(r for (_, r, _, _) in samples)
    peak_hwm = max(h for (_, _, h, _) in samples)
    fig("RSS before input", mib(baseline))

    def rss_after(n):
        """RSS of the first sample at which accord has read the first n flood
        records (rchar >= bytes up to there; reads are 1 MiB buffered)."""
        want = cps[n]
        for (t, r, _, c) in samples:
            if c >= want:
                return t, r
        return None, None

    at = {}
    for n in sorted(cps):
        t, r = rss_after(n)
        if r is not None:
            at[n] = r
    for n in sorted(at):
        fig("RSS after %.1f M flood records" % (n / 1e6), mib(at[n]))
    fig("peak RSS (VmHWM)", "%s (max sampled VmRSS %s)" % (mib(peak_hwm), mib(peak_rss)))
    check(peak_hwm < max_rss, "peak RSS %s < bound %s" % (mib(peak_hwm), mib(max_rss)))

    if 1_000_000 in at:
        plateau = at[1_000_000]
        per_join = (plateau - baseline) * 1024 / max_open
        fig("bytes per open join", "%.0f B ((RSS after 1 M %s - before input %s) / %d open joins; "
            "includes one remembered closed key each)" % (per_join, mib(plateau), mib(baseline), max_open))
        fig("unbounded-growth estimate",
            "%.0f MiB for %d joins at that rate" % (per_join * meta["flood"] / 2**20, meta["flood"]))
        for n in (3_000_000, 5_000_000):
            if n in at:
                grow = at[n] - plateau
                check(grow < flat, "RSS flat after the cap: after %.0f M flood records %s, after 1 M %s "
                      "(growth %+.1f MiB, %.1f bytes per further flood record; limit %s)"
                      % (n / 1e6, mib(at[n]), mib(plateau), grow / 1024, grow * 1024 / (n - 1_000_000), mib(flat)))
    else:
        check(False, "no RSS sample after 1 M flood records (flood too small or samples missing)")

    # The generator's writes finish when accord has read all but a pipe
    # buffer (back-pressure), so its write time is accord's time to take the
    # input.
    secs = meta["end"] - meta["start"]
    fig("records/s", "%.0f (%d records, %.1f MB read and judged in %.1f s; whole run %.1f s incl. 2 x 1 s "
        "generator pauses)" % (meta["records"] / max(secs, 0.001), meta["records"], meta["bytes"] / 1e6, secs,
                               (t1 - t0) / 1000))

    f = s["features"]["checkout_v2"]
    new = f["paths"]["new"]
    fl, va = meta["flood"], meta["valid_requests"]
    fig("valid requests sent", "%d (%d records)" % (va, meta["valid_records"]))
    fig("summary", "requests %d, records %d, late %d, verdicts %s, new %s"
        % (s["requests"], s["records"], s["late"], f["verdicts"], new))
    check(new["agree"] == va, "valid requests judged agree: new/agree %d == %d sent" % (new["agree"], va))
    check(f["verdicts"]["agree"] == va and f["verdicts"]["diverge"] == 0 and f["verdicts"]["degraded"] == 0,
          "no other verdict for valid traffic: verdicts %s" % f["verdicts"])
    check(new["incomplete"] == fl,
          "every flood join judged incomplete (evicted or closed at end): new/incomplete %d == %d"
          % (new["incomplete"], fl))
    check(s["requests"] == fl + va, "requests %d == flood %d + valid %d" % (s["requests"], fl, va))
    check(s["records"] == meta["records"] and s["late"] == 0 and sum(s["rejected"].values()) == 0,
          "records %d == %d sent, late %d, rejected %d"
          % (s["records"], meta["records"], s["late"], sum(s["rejected"].values())))


if __name__ == "__main__":
    main()
