#!/usr/bin/env python3
"""Grafana dashboards (dashboards/*.json): JSON conventions and query lists.

    python3 scripts/ci/lib/ops_dashboards.py check
    python3 scripts/ci/lib/ops_dashboards.py queries

check: at least 3 dashboards; schemaVersion 41; a unique, stable uid and no
top-level id; a title; a `datasource` variable (type datasource, query
prometheus) and a `feature` query variable label_values(accord_feature_info,
feature) on ${datasource}; unique panel ids, a gridPos on every panel,
${datasource} on every panel and target; no empty expr; every range is
[$__rate_interval] (or [$__range]); every selector of a metric that has a
feature label is filtered by the feature variable.
queries: writes target/ops/dashboard-queries.txt (every target's PromQL,
variables unresolved), dashboard-queries.resolved.txt (variables resolved,
as artifacts.resolve does) and dashboard-queries.rules.yml (one recording
rule per query, for `promtool check rules` to parse them).
Prints one line per problem and "<check>: ok" or "<check>: N problem(s)"
(exit 1). Run from scripts/ci/ops-static.sh.
"""
import argparse
import os
import re

from artifacts import DASHBOARDS, OUT, all_panels, dashboard_targets, load_dashboard, resolve
from contract import KNOWN
from promql import metric_refs
from report import done, fail


def cmd_check():
    uids = {}
    for f in DASHBOARDS:
        d = load_dashboard(f)
        if d.get("schemaVersion") != 41:
            fail(f"{f}: schemaVersion {d.get('schemaVersion')} != 41")
        uid = d.get("uid")
        if not uid or not re.fullmatch(r"[A-Za-z0-9_-]{1,40}", uid):
            fail(f"{f}: missing or invalid uid")
        elif uid in uids:
            fail(f"{f}: uid {uid} also used by {uids[uid]}")
        uids[uid] = f
        if "id" in d:
            fail(f"{f}: top-level id must not be set (provisioning assigns it)")
        if not d.get("title"):
            fail(f"{f}: no title")
        vars_ = {v["name"]: v for v in d.get("templating", {}).get("list", [])}
        ds = vars_.get("datasource")
        if not ds or ds.get("type") != "datasource" or ds.get("query") != "prometheus":
            fail(f"{f}: needs a `datasource` variable of type datasource, query prometheus")
        fv = vars_.get("feature")
        q = fv and (fv.get("query") if isinstance(fv.get("query"), str) else fv.get("query", {}).get("query"))
        if not fv or fv.get("type") != "query" or "label_values(accord_feature_info, feature)" not in (q or ""):
            fail(f"{f}: needs a `feature` query variable label_values(accord_feature_info, feature)")
        elif fv.get("datasource", {}).get("uid") != "${datasource}":
            fail(f"{f}: feature variable must use ${{datasource}}")
        ids = set()
        for p in all_panels(d.get("panels", [])):
            if p.get("id") in ids:
                fail(f"{f}: duplicate panel id {p.get('id')}")
            ids.add(p.get("id"))
            if "gridPos" not in p:
                fail(f"{f}: panel {p.get('title')!r} has no gridPos")
            if p.get("type") == "row":
                continue
            if p.get("targets") and p.get("datasource", {}).get("uid") != "${datasource}":
                fail(f"{f}: panel {p.get('title')!r} datasource is not ${{datasource}}")
            for t in p.get("targets", []):
                where = f"{f}: panel {p.get('title')!r} target {t.get('refId')}"
                if t.get("datasource", {}).get("uid") != "${datasource}":
                    fail(f"{where}: datasource is not ${{datasource}}")
                expr = t.get("expr", "")
                if not expr.strip():
                    fail(f"{where}: empty expr")
                for rng in re.findall(r"\[([^\]]*)\]", expr):
                    if rng not in ("$__rate_interval", "$__range"):
                        fail(f"{where}: range [{rng}] should be [$__rate_interval] (or [$__range])")
                # Every selector of a metric with a feature label honours
                # the dashboard's feature variable.
                for m, matchers in metric_refs(expr):
                    if "feature" in KNOWN.get(m, {}) and not any(
                            lab == "feature" and "$feature" in v for lab, _, v in matchers):
                        fail(f"{where}: {m} is not filtered by feature=~\"$feature\"")
    if len(DASHBOARDS) < 3:
        fail(f"expected 3 dashboards, found {len(DASHBOARDS)}")
    print(f"{len(DASHBOARDS)} dashboards, {sum(1 for _ in dashboard_targets())} queries")
    done("dashboards")


def cmd_queries():
    """Writes the query lists and a rules file wrapping each query."""
    import yaml

    raw, res, groups = [], [], []
    for _, d, p, t in dashboard_targets():
        one = " ".join(t["expr"].split())
        row = [d["uid"], str(p["id"]), p["title"], t["refId"]]
        raw.append("\t".join(row + [one]))
        res.append("\t".join(row + [resolve(one)]))
        groups.append({"name": f"{d['uid']} panel {p['id']} ({p['title']}) {t['refId']}",
                       "rules": [{"record": "ops_static:dashboard_query:parse", "expr": resolve(t["expr"])}]})
        if "$" in resolve(t["expr"]):
            fail(f"{d['uid']} panel {p['title']!r}: unresolved variable in {one}")
    hdr = "# dashboard uid\tpanel id\tpanel title\trefId\texpr\n"
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "dashboard-queries.txt"), "w") as fh:
        fh.write("# PromQL of every dashboard target, Grafana variables unresolved.\n" + hdr + "\n".join(raw) + "\n")
    with open(os.path.join(OUT, "dashboard-queries.resolved.txt"), "w") as fh:
        fh.write("# Same, with $__rate_interval=1m, $__range=1h, $feature=.*\n" + hdr + "\n".join(res) + "\n")
    with open(os.path.join(OUT, "dashboard-queries.rules.yml"), "w") as fh:
        yaml.safe_dump({"groups": groups}, fh, sort_keys=False, width=10000)
    print(f"{len(raw)} queries -> target/ops/dashboard-queries.txt")
    done("queries")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("what", choices=["check", "queries"])
    {"check": cmd_check, "queries": cmd_queries}[ap.parse_args().what]()


if __name__ == "__main__":
    main()
