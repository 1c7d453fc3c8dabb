#!/usr/bin/env python3
"""accord's metric contract, read from src/export/contract_metrics.txt.

The same file is compiled into accord (src/export/metrics.rs reads it with
include_str!), so the checks here and the code share one list. Imported by
the ops checks:

    import contract
    contract.CONTRACT   # contract metric -> {label: set of values, or None}
    contract.EXTRAS     # metrics exported beyond the contract, same shape
    contract.KNOWN      # every series name (histograms expanded), same shape

and runnable on its own, to print the list or compare it with the metrics
table of a product specification in Markdown:

    python3 scripts/ci/lib/contract.py [--file PATH]
    python3 scripts/ci/lib/contract.py --spec SPEC.md

With --spec it exits 1 when the specification's metrics table names other
metrics, types, label names or enumerated label values than the file.
"""
import argparse
import os
import re
import sys

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
CONTRACT_FILE = os.path.join(ROOT, "src", "export", "contract_metrics.txt")
TYPES = {"counter", "gauge", "histogram"}
FLAGS = {"compared", "planned", "extra"}


class Metric:
    """One line of the contract file."""

    def __init__(self, name, kind, labels, flags):
        self.name = name
        self.kind = kind
        self.labels = labels  # {label: set of values, or None when free}
        self.flags = flags

    @property
    def compared(self):
        return "compared" in self.flags

    @property
    def planned(self):
        return "planned" in self.flags

    @property
    def extra(self):
        return "extra" in self.flags


def parse(text, where=CONTRACT_FILE):
    """Metrics of the contract file's text, in file order. Raises ValueError
    with file and line on a malformed line."""
    out = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        cols = line.split()
        if len(cols) != 4:
            raise ValueError(f"{where}:{n}: want NAME TYPE LABELS FLAGS, got {line!r}")
        name, kind, labels_col, flags_col = cols
        if not re.fullmatch(r"accord_[a-z_]+", name):
            raise ValueError(f"{where}:{n}: bad metric name {name!r}")
        if kind not in TYPES:
            raise ValueError(f"{where}:{n}: type {kind!r} is not one of {sorted(TYPES)}")
        labels = {}
        for lab in [] if labels_col == "-" else labels_col.split(","):
            key, _, values = lab.partition("=")
            labels[key] = set(values.split("|")) if values else None
        flags = set() if flags_col == "-" else set(flags_col.split(","))
        if not flags <= FLAGS:
            raise ValueError(f"{where}:{n}: unknown flag(s) {sorted(flags - FLAGS)}")
        out.append(Metric(name, kind, labels, flags))
    return out


def load(path=CONTRACT_FILE):
    with open(path) as fh:
        return parse(fh.read(), path)


METRICS = load()
CONTRACT = {m.name: m.labels for m in METRICS if not m.extra}
EXTRAS = {m.name: m.labels for m in METRICS if m.extra}
HISTOGRAMS = {m.name for m in METRICS if m.kind == "histogram"}
COMPARED = [m.name for m in METRICS if m.compared]
PLANNED = {m.name for m in METRICS if m.planned}


def series_names(metrics):
    """Series name -> labels, with histograms expanded to _bucket (plus an
    `le` label), _sum and _count."""
    out = {}
    for m, labels in metrics.items():
        if m in HISTOGRAMS:
            out[m + "_bucket"] = dict(labels, le=None)
            out[m + "_sum"] = dict(labels)
            out[m + "_count"] = dict(labels)
        else:
            out[m] = dict(labels)
    return out


# Written by Prometheus itself for every scrape target.
PROMETHEUS = {"up": {}}
TARGET_LABELS = {"job", "instance"}
KNOWN = series_names({**CONTRACT, **EXTRAS, **PROMETHEUS})


def spec_table(path):
    """The metrics table of a Markdown specification (the section whose
    heading is "Metrics"): name -> (type, {label: set of values, or None})."""
    text = open(path).read()
    sec = re.split(r"(?m)^## (?:\d+\. )?Metrics\s*$", text, maxsplit=1)[-1].split("\n## ", 1)[0]
    out = {}
    for row in re.findall(r"(?m)^\| `(accord_[a-z_]+)` \|([^|]*)\|([^|]*)\|", sec):
        name, kind, labels_cell = row
        kind = kind.split()[0] if kind.split() else ""
        # Label names, then `= value value ...` for an enumerated one; prose
        # after an em dash describes the metric.
        cell = labels_cell.split("—", 1)[0]
        labels = {}
        for m in re.finditer(r"`([a-z_]+)`(\s*=\s*((?:`[a-z_]+`\s*)+))?", cell):
            values = re.findall(r"`([a-z_]+)`", m.group(3) or "")
            labels[m.group(1)] = set(values) if values else None
        out[name] = (kind, labels)
    return out


def spec_differences(path, metrics=None):
    """Differences between a specification's metrics table and the contract
    part of METRICS (or of `metrics`). Label values are compared only where
    the specification enumerates them."""
    spec = spec_table(path)
    by_name = {m.name: m for m in (METRICS if metrics is None else metrics) if not m.extra}
    diffs = []
    names = set(spec) ^ set(by_name)
    if names:
        diffs.append(f"lists {sorted(names)} differently from the contract file")
    for name in sorted(set(spec) & set(by_name)):
        kind, labels = spec[name]
        m = by_name[name]
        if kind != m.kind:
            diffs.append(f"{name}: type {kind!r}, contract file {m.kind!r}")
        if set(labels) != set(m.labels):
            diffs.append(f"{name}: labels {sorted(labels)}, contract file {sorted(m.labels)}")
            continue
        for label, values in labels.items():
            if values is not None and values != m.labels[label]:
                diffs.append(f"{name}: {label} values {sorted(values)}, contract file {sorted(m.labels[label] or [])}")
    return diffs


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--file", default=CONTRACT_FILE, help="contract file (default: %(default)s)")
    ap.add_argument("--spec", help="compare with the metrics table of this Markdown specification")
    args = ap.parse_args()
    metrics = load(args.file)
    if args.spec:
        diffs = spec_differences(args.spec, metrics)
        for d in diffs:
            print(f"  x {args.spec}: {d}")
        print(f"{args.spec}: {'differs' if diffs else 'matches the contract file'}")
        return 1 if diffs else 0
    for m in metrics:
        labels = ",".join(k + ("=" + "|".join(sorted(v)) if v else "") for k, v in m.labels.items()) or "-"
        print(f"{m.name:42} {m.kind:9} {labels}  {','.join(sorted(m.flags)) or '-'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
