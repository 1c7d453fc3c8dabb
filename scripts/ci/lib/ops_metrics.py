#!/usr/bin/env python3
"""Metric names and labels used by the rules, rule tests and dashboards.

    python3 scripts/ci/lib/ops_metrics.py [--spec SPEC.md]

Every metric a rule, a rule test's input series or a dashboard query names
is in the metric contract (src/export/contract_metrics.txt, read by
contract.py: contract metrics and extras), is `up`, or is a recording rule;
every label matcher names a label the metric has (or job/instance), and a
matcher on a label with enumerated values uses only those values.
The contract file is also compared with the metrics table of the product
specification when one is found: --spec, $ACCORD_SPEC, ../shared/SPEC.md or
shared/SPEC.md (from the repository root).
Prints one line per problem and "metrics: ok" or "metrics: N problem(s)"
(exit 1). Run from scripts/ci/ops-static.sh.
"""
import argparse
import os
import re

import contract
from artifacts import ROOT, dashboard_targets, load_rules, records, resolve, rule_tests
from contract import KNOWN, TARGET_LABELS
from promql import metric_refs
from report import done, fail


def check_expr_metrics(where, expr, recs):
    for metric, matchers in metric_refs(expr):
        if metric is None:
            fail(f"{where}: selector without a metric name: {expr!r}")
            continue
        if metric.startswith("__name__"):
            continue
        if metric in recs:
            labels = None  # recording rules: labels vary, not checked
        elif metric in KNOWN:
            labels = KNOWN[metric]
        else:
            fail(f"{where}: unknown metric {metric!r} (not in the metric contract, the extras, or a recording rule)")
            continue
        if labels is None:
            continue
        for label, op, value in matchers:
            if label not in labels and label not in TARGET_LABELS:
                fail(f"{where}: {metric} has no label {label!r}")
                continue
            allowed = labels.get(label)
            if not allowed or "$" in value:
                continue
            if op in ("=", "!="):
                vals = [value] if value else []
            elif re.fullmatch(r"[A-Za-z0-9_|]+", value):
                vals = value.split("|")
            else:
                vals = []
            for v in vals:
                if v not in allowed:
                    fail(f"{where}: {metric}{{{label}{op}{value!r}}}: {v!r} is not one of {sorted(allowed)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--spec", help="product specification with the metrics table")
    args = ap.parse_args()
    recs = records()
    for f, g in load_rules():
        for r in g["rules"]:
            check_expr_metrics(f"{f}: {r.get('record') or r.get('alert')}", r["expr"], recs)
    for t, tc in rule_tests():
        for s in tc.get("input_series", []):
            check_expr_metrics(f"{t}: {tc.get('name')}: input series", s["series"], recs)
    for f, _, p, t in dashboard_targets():
        check_expr_metrics(f"{f}: panel {p['title']!r} {t['refId']}", resolve(t["expr"]), recs)
    # The contract file must match the specification's table when it is at hand.
    candidates = [args.spec or "", os.environ.get("ACCORD_SPEC", ""),
                  os.path.normpath(os.path.join(ROOT, "..", "shared", "SPEC.md")),
                  os.path.join(ROOT, "shared", "SPEC.md")]
    for spec in candidates:
        if spec and os.path.exists(spec):
            diffs = contract.spec_differences(spec)
            for d in diffs:
                fail(f"the metrics table of {spec} {d}" if d.startswith("lists ") else f"{spec}: {d}")
            if not diffs:
                print(f"contract list matches {spec}")
            break
    else:
        print("note: SPEC.md not found; contract list not re-checked")
    used = set()
    for *_, t in dashboard_targets():
        used |= {m for m, _ in metric_refs(resolve(t["expr"]))}
    for _, g in load_rules():
        for r in g["rules"]:
            used |= {m for m, _ in metric_refs(r["expr"])}
    unused = sorted(m for m in KNOWN if m not in used and not m.endswith(("_sum", "_count")))
    if unused:
        print(f"note: not used by any rule or dashboard: {', '.join(unused)}")
    done("metrics")


if __name__ == "__main__":
    main()
