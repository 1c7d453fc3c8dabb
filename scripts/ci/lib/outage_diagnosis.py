#!/usr/bin/env python3
"""Diagnosis of lost or late records after a broker outage, from timelines.

    python3 scripts/ci/lib/outage_diagnosis.py METRICS_TIMELINE HW_TIMELINE RESTART_MS

Run by scripts/ci/broker-outage-test.sh only when its exactness checks
fail. METRICS_TIMELINE has lines "epoch_ms records=N late=N requests=N
open_joins=N wm_delay p0=S p1=S ..." (watermark delay per partition),
HW_TIMELINE hw_poll.py's "epoch_ms p0=HW ..." lines, RESTART_MS the epoch
ms at which the broker came back. For each partition whose watermark
delay fell from above 5 s to at most 2.5 s after the restart (the
watermark jumped to the wall clock), prints when that happened, since when
the broker held all that partition's records, and how many records accord
had counted then and how many late records followed: records in the
broker that were not consumed yet when the watermark jumped come in late.
Prints nothing when no watermark jumped; always exits 0 unless an input
is unreadable.
"""
import re
import sys


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    mt, hw, up = sys.argv[1], sys.argv[2], int(sys.argv[3])
    jump = {}  # partition -> first time after the restart the watermark delay fell to <= 2.5 s from > 5 s
    prev = {}
    totals = []  # (t, records, late)
    with open(mt) as fh:
        for line in fh:
            t = int(line.split()[0])
            m = re.search(r'records=(\d+) late=(\d+)', line)
            if m:
                totals.append((t, int(m.group(1)), int(m.group(2))))
            for p, d in re.findall(r' p(\d+)=([0-9.]+)', line):
                d = float(d)
                if d == 0:  # gauge not set yet (partition just assigned)
                    continue
                if t > up and p not in jump and prev.get(p, 0) > 5 and d <= 2.5:
                    jump[p] = t
                prev[p] = d
    final, reached = {}, {}
    try:
        with open(hw) as fh:
            rows = [(int(line.split()[0]), dict(re.findall(r'p(\d+)=(\d+)', line))) for line in fh
                    if "down" not in line]
    except OSError:
        rows = []
    for _, d in rows:
        for p, v in d.items():
            final[p] = max(final.get(p, 0), int(v))
    for t, d in rows:
        for p, v in d.items():
            if p not in reached and int(v) >= final[p]:
                reached[p] = t
    end_rec, end_late = (totals[-1][1], totals[-1][2]) if totals else (0, 0)
    for p in sorted(jump, key=int):
        j = (jump[p] - up) / 1000
        rec, late = next(((r, lt) for (t, r, lt) in totals if t >= jump[p]), (end_rec, end_late))
        r = "+%.1fs" % ((reached[p] - up) / 1000) if p in reached else "unknown"
        print("  * partition %s: watermark jumped to wall clock - allowed_lateness at +%.1fs after the restart; "
              "the broker had held all its records since %s; accord had then counted %d of %d records, "
              "late records %d -> %d afterwards%s" % (p, j, r, rec, end_rec, late, end_late,
              " (records in the broker, not yet consumed: the idle rule ignored consumer lag)"
              if p in reached and reached[p] < jump[p] and rec < end_rec else ""))


if __name__ == "__main__":
    main()
