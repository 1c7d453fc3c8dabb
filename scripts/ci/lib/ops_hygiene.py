#!/usr/bin/env python3
"""Alert hygiene of the shipped alerting rules (rules/*.yml).

    python3 scripts/ci/lib/ops_hygiene.py

Every alert has severity critical or warning; summary, a templated
description and runbook_url annotations; a for: duration; a runbook_url
that points at its own `## <Alert>` section of docs/runbooks.md (and every
such section has an alert); a minimum-traffic guard (`... and ...`) unless
it is a liveness or lag alert; a firing and a non-firing promtool test
case. Alert names are unique and recording rules are named
level:metric:operations. Prints one line per problem and "hygiene: ok" or
"hygiene: N problem(s)" (exit 1). Run from scripts/ci/ops-static.sh.
"""
import os
import re
import sys

from artifacts import ROOT, alerts, load_rules, records, rule_tests
from report import done, fail

RUNBOOK_BASE = "https://github.com/accord-dev/accord/blob/main/docs/runbooks.md#"
# Alerts allowed without a `... and <traffic>` guard: liveness must fire on
# an idle stack; lag and watermark use an absolute floor instead.
NO_GUARD = {"AccordDown", "AccordNotReady", "AccordConsumerLagHigh", "AccordWatermarkDelayHigh"}


def main():
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    with open(os.path.join(ROOT, "docs", "runbooks.md")) as fh:
        runbook = fh.read()
    headings = set(re.findall(r"^## (\S+)\s*$", runbook, re.M))
    names = []
    for _, r in alerts():
        a = r["alert"]
        names.append(a)
        sev = r.get("labels", {}).get("severity")
        if sev not in ("critical", "warning"):
            fail(f"{a}: severity must be critical or warning, got {sev!r}")
        ann = r.get("annotations", {})
        for k in ("summary", "description", "runbook_url"):
            if not ann.get(k):
                fail(f"{a}: missing annotation {k}")
        if "{{" not in ann.get("description", ""):
            fail(f"{a}: description is not templated")
        if not r.get("for"):
            fail(f"{a}: missing for:")
        url = ann.get("runbook_url", "")
        if url != RUNBOOK_BASE + a.lower():
            fail(f"{a}: runbook_url should be {RUNBOOK_BASE + a.lower()}, got {url}")
        if a not in headings:
            fail(f"{a}: docs/runbooks.md has no '## {a}' section")
        if a not in NO_GUARD and not re.search(r"\band\b", r["expr"]):
            fail(f"{a}: no minimum-traffic guard (`and ...`) in expr")
    if len(set(names)) != len(names):
        fail("duplicate alert names")
    for h in headings - set(names):
        fail(f"docs/runbooks.md section {h} has no alert")
    for _, g in load_rules():
        for r in g["rules"]:
            if "record" in r and not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", r["record"]):
                fail(f"recording rule {r['record']} is not level:metric:operations")
    # Unit tests: every alert has a firing and a quiet case.
    firing, quiet = set(), set()
    for _, tc in rule_tests():
        for at in tc.get("alert_rule_test", []):
            (firing if at.get("exp_alerts") else quiet).add(at["alertname"])
    for a in names:
        if a not in firing:
            fail(f"{a}: no firing promtool test case")
        if a not in quiet:
            fail(f"{a}: no non-firing promtool test case")
    print(f"{len(names)} alerts, {len(records())} recording rules")
    done("hygiene")


if __name__ == "__main__":
    main()
