#!/usr/bin/env python3
"""Compares accord's counters with a reference, for the broker outage test.

    python3 scripts/ci/lib/metrics_compare.py METRICS REF FIELDS

METRICS is accord's /metrics text. REF is either a simulator report.json
(its `expected` map of feature -> "path/verdict" -> requests, `records`
and `late_records`) or Prometheus text (e.g. `accord replay --format
prometheus` of the same records). FIELDS, comma-separated, among:
  requests  accord_requests_total per (feature, path, verdict), non-zero ones
  late      the sum of accord_records_late_total
  records   the sum of accord_records_total (valid records)
  open      accord_open_joins is 0 (in METRICS)
Prints a one-line summary, then one line per difference; exits 0 iff every
field is equal.
"""
import json
import re
import sys

LINE = re.compile(r'^(accord_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$')


def prom(text):
    """(requests by (feature, path, verdict), late, records, open joins)."""
    got, late, records, open_joins = {}, 0, 0, 0
    for line in text.splitlines():
        m = LINE.match(line)
        if not m:
            continue
        name, labels, v = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")), int(float(m.group(3)))
        if name == "accord_requests_total" and v:
            got[(labels["feature"], labels["path"], labels["verdict"])] = v
        elif name == "accord_records_late_total":
            late += v
        elif name == "accord_records_total":
            records += v
        elif name == "accord_open_joins":
            open_joins = v
    return got, late, records, open_joins


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    with open(sys.argv[1]) as fh:
        got, late, records, open_joins = prom(fh.read())
    with open(sys.argv[2]) as fh:
        ref_text = fh.read()
    if ref_text.lstrip().startswith("{"):
        rep = json.loads(ref_text)
        want = {tuple([f] + pv.split("/")): n for f, m in rep["expected"].items() for pv, n in m.items() if n}
        wlate, wrecords, name = rep["late_records"], rep["records"], "report"
    else:
        want, wlate, wrecords, _ = prom(ref_text)
        name = "replay"
    fields = sys.argv[3].split(",")
    out = []
    if "requests" in fields:
        for k in sorted(set(got) | set(want)):
            g, w = got.get(k, 0), want.get(k, 0)
            if g != w:
                out.append(f"  {k[0]:15} {k[1]:7} {k[2]:10} accord={g:6} {name}={w:6} ({g - w:+d})")
    if "late" in fields and late != wlate:
        out.append(f"  late records: accord={late} {name}={wlate} ({late - wlate:+d})")
    if "records" in fields and records != wrecords:
        out.append(f"  valid records: accord={records} {name}={wrecords} ({records - wrecords:+d})")
    if "open" in fields and open_joins != 0:
        out.append(f"  accord_open_joins = {open_joins}")
    print(f"requests accord={sum(got.values())} {name}={sum(want.values())}; records accord={records} "
          f"{name}={wrecords}; late accord={late} {name}={wlate}; open_joins={open_joins}")
    print("\n".join(out))
    sys.exit(1 if out else 0)


if __name__ == "__main__":
    main()
