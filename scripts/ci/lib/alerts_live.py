#!/usr/bin/env python3
"""Queries and waits of the live alerting test (scripts/ci/alerts-live-test.sh).

    python3 scripts/ci/lib/alerts_live.py COMMAND ARGS...

PROM is a Prometheus base URL, AM an Alertmanager base URL, FILE the
webhook_sink.py notification file, TIMEOUT seconds. Every wait is bounded
by its TIMEOUT; every command prints what it saw and exits 0 when its
condition holds, 1 otherwise. Standard library only. Commands:

  wait-firing PROM TIMEOUT ALERT...   the alerts fire in Prometheus
  firing-exactly PROM [ALERT...]      exactly these alerts fire (none if
                                      no ALERT is given)
  pair-labels PROM                    AccordLayerPairDivergence for
                                      checkout_v2 fires for frontend/api with
                                      kinds path_mismatch and
                                      exposure_without_capability
  rules-healthy PROM                  rules were evaluated, all healthy
  wait-query PROM TIMEOUT QUERY       QUERY returns a non-empty result
  expect-nonempty PROM QUERY          QUERY returns a non-empty result now
  expect-empty PROM QUERY             QUERY returns an empty result now
  pending-alerts PROM                 prints the alert names ever pending in
                                      the last 15m ("none" if none)
  alertmanagers PROM                  prints the number of Alertmanagers
                                      Prometheus has discovered
  firing-names ALERTS.json            prints the firing alert names in a
                                      saved /api/v1/alerts answer
  am-inhibited AM ALERT TIMEOUT       every ALERT in that Alertmanager is
                                      inhibited
  wait-webhook FILE TIMEOUT SPEC...   every SPEC was notified (firing); SPEC
                                      is PREFIX,RECEIVER,ALERT,k=v;k=v with
                                      v alternatives as a|b
  webhook-summary FILE                prints the notifications, grouped
  webhook-empty FILE                  nothing was notified
  active-times PROM T0 FILE           prints when each alert became active
                                      and reached the webhook, relative to
                                      epoch seconds T0
  list-queries                        prints every dashboard query, resolved
  dashboard-queries PROM EXPECTED_EMPTY.tsv OUT.json
                                      every dashboard query returns data, or
                                      is listed in EXPECTED_EMPTY.tsv (uid
                                      TAB panel title TAB refId TAB reason);
                                      results saved to OUT.json
  metric-names PROM METRICS.txt       every metric a rule or dashboard names
                                      is in METRICS.txt (accord's /metrics),
                                      `up`, or a recording rule
"""
import datetime
import inspect
import json
import re
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from artifacts import dashboard_queries
from promql import metric_names
from webhook_sink import notifications

OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url, timeout=10):
    with OPENER.open(url, timeout=timeout) as r:
        return json.load(r)


def query(prom, q):
    return get(prom + "/api/v1/query?" + urllib.parse.urlencode({"query": q}))["data"]


def webhook_has(path, prefix, receiver, alertname, status, labels):
    """0 if some POST under PREFIX to RECEIVER carries an alert named
    ALERTNAME with STATUS and LABELS (k=v, v may be a|b alternatives), else 1."""
    for n in notifications(path):
        b = n["body"]
        if not n["path"].startswith(prefix) or not isinstance(b, dict) or b.get("receiver") != receiver:
            continue
        for a in b.get("alerts", []):
            lab = a.get("labels", {})
            if lab.get("alertname") == alertname and a.get("status") == status and all(
                    lab.get(k) in v.split("|") for k, v in labels.items()):
                return 0
    return 1


def cmd_wait_webhook(path, timeout, *specs):
    """specs: PREFIX,RECEIVER,ALERTNAME,k=v;k=v ... ; waits until all are seen."""
    deadline = time.time() + float(timeout)
    parsed = []
    for s in specs:
        prefix, receiver, alertname, labels = (s.split(",", 3) + [""])[:4]
        parsed.append((prefix, receiver, alertname,
                       dict(kv.split("=", 1) for kv in labels.split(";") if kv)))
    while True:
        missing = [p for p in parsed if webhook_has(path, p[0], p[1], p[2], "firing", p[3])]
        if not missing:
            for p in parsed:
                print(f"  webhook got {p[2]} {p[3]} via {p[0]} receiver {p[1]}")
            return 0
        if time.time() > deadline:
            for p in missing:
                print(f"  webhook never got {p[2]} {p[3]} via {p[0]} receiver {p[1]} within {timeout}s")
            return 1
        time.sleep(0.5)


def cmd_webhook_summary(path):
    seen = {}
    for n in notifications(path):
        b = n["body"]
        if not isinstance(b, dict):
            continue
        for a in b.get("alerts", []):
            lab = a.get("labels", {})
            pair = f" {lab['upstream']}/{lab['downstream']} {lab.get('kind', '')}" \
                if "upstream" in lab and "kind" in lab else ""
            key = f"{n['path']:<18} {b.get('receiver'):<7} {a.get('status'):<8} {lab.get('alertname')}" \
                  f" {lab.get('feature', '')}{pair}"
            seen[key] = seen.get(key, 0) + 1
    for k in sorted(seen):
        print(f"  {k}  (x{seen[k]})")
    if not seen:
        print("  (no notifications)")


def cmd_webhook_empty(path):
    ns = notifications(path)
    for n in ns:
        print(f"  unexpected notification on {n['path']}: {json.dumps(n['body'])[:400]}")
    return 1 if ns else 0


def firing(prom):
    return [a for a in get(prom + "/api/v1/alerts")["data"]["alerts"] if a["state"] == "firing"]


def cmd_wait_firing(prom, timeout, *names):
    deadline = time.time() + float(timeout)
    while True:
        got = {a["labels"]["alertname"] for a in firing(prom)}
        if set(names) <= got:
            return 0
        if time.time() > deadline:
            print(f"  not firing within {timeout}s: {sorted(set(names) - got)} (firing: {sorted(got)})")
            return 1
        time.sleep(0.5)


def cmd_firing_exactly(prom, *names):
    got = {}
    for a in firing(prom):
        lab = a["labels"]
        got.setdefault(lab["alertname"], []).append(
            ",".join(f"{k}={v}" for k, v in sorted(lab.items()) if k not in ("alertname", "severity")))
    for n in sorted(got):
        print(f"  firing: {n}  {'; '.join(sorted(got[n]))}")
    extra, missing = set(got) - set(names), set(names) - set(got)
    if extra:
        print(f"  unexpected: {sorted(extra)}")
    if missing:
        print(f"  missing: {sorted(missing)}")
    return 1 if extra or missing else 0


def cmd_pair_labels(prom):
    """AccordLayerPairDivergence for checkout_v2 carries the frontend/api pair."""
    pairs = {(a["labels"].get("kind"), a["labels"].get("upstream"), a["labels"].get("downstream"))
             for a in firing(prom)
             if a["labels"]["alertname"] == "AccordLayerPairDivergence" and a["labels"].get("feature") == "checkout_v2"}
    print(f"  pairs firing: {sorted(pairs)}")
    want = {("path_mismatch", "frontend", "api"), ("exposure_without_capability", "frontend", "api")}
    return 0 if want <= pairs else 1


def cmd_am_inhibited(am, alertname, timeout):
    """Every ALERTNAME alert in this Alertmanager is suppressed by inhibition."""
    deadline = time.time() + float(timeout)
    while True:
        alerts = [a for a in get(am + "/api/v2/alerts") if a["labels"].get("alertname") == alertname]
        ok = alerts and all(a["status"]["inhibitedBy"] for a in alerts)
        if ok or time.time() > deadline:
            for a in alerts:
                print(f"  {alertname} {a['labels'].get('upstream')}/{a['labels'].get('downstream')} "
                      f"{a['labels'].get('kind')}: state={a['status']['state']} "
                      f"inhibitedBy={len(a['status']['inhibitedBy'])}")
            if not alerts:
                print(f"  no {alertname} in {am}")
            return 0 if ok else 1
        time.sleep(0.5)


def cmd_rules_healthy(prom):
    bad = n = 0
    for g in get(prom + "/api/v1/rules")["data"]["groups"]:
        for r in g["rules"]:
            n += 1
            if r.get("health") != "ok":
                bad += 1
                print(f"  rule {r['name']}: health {r.get('health')} {r.get('lastError')}")
    print(f"  {n} rules evaluated, {bad} unhealthy")
    return 1 if bad or not n else 0


def cmd_wait_query(prom, timeout, q):
    """Waits until Q returns a non-empty result."""
    deadline = time.time() + float(timeout)
    while True:
        try:
            if query(prom, q)["result"]:
                return 0
        except Exception:
            pass
        if time.time() > deadline:
            print(f"  no result within {timeout}s: {q}")
            return 1
        time.sleep(0.5)


def cmd_expect_nonempty(prom, q):
    res = query(prom, q)["result"]
    for s in res:
        print(f"  {s['metric']} = {s['value'][1]}")
    if not res:
        print(f"  empty: {q}")
    return 0 if res else 1


def cmd_expect_empty(prom, q):
    res = query(prom, q)["result"]
    for s in res:
        print(f"  {s['metric']} = {s['value'][1]}")
    return 1 if res else 0


def cmd_dashboard_queries(prom, expected_empty_file, out_json):
    expected = {}
    for line in open(expected_empty_file):
        if line.strip() and not line.startswith("#"):
            uid, title, ref, reason = line.rstrip("\n").split("\t", 3)
            expected[(uid, title, ref)] = reason
    results, bad, empty_ok, zero_only = [], 0, 0, 0
    qs = dashboard_queries()
    for uid, title, ref, q in qs:
        key = (uid, title, ref)
        row = {"dashboard": uid, "panel": title, "refId": ref, "expr": q}
        try:
            data = query(prom, q)
        except urllib.error.HTTPError as e:
            row["error"] = f"{e.code} {e.read().decode()[:300]}"
            print(f"  ERROR {uid} / {title} / {ref}: {row['error']}")
            bad += 1
            results.append(row)
            continue
        res = data["result"]
        row["resultType"] = data["resultType"]
        row["series"] = len(res) if data["resultType"] in ("vector", "matrix") else 1
        row["result"] = res
        if data["resultType"] in ("vector", "matrix") and not res:
            if key in expected:
                empty_ok += 1
                print(f"  empty (expected: {expected[key]}): {uid} / {title} / {ref}")
            else:
                bad += 1
                print(f"  EMPTY {uid} / {title} / {ref}: {q}")
        else:
            if key in expected:
                print(f"  note: listed as expected-empty but returned data: {uid} / {title} / {ref}")
            vals = [s["value"][1] for s in res] if data["resultType"] == "vector" else [res[1]]
            if all(v in ("0", "NaN") for v in vals):
                zero_only += 1
                print(f"  data (only 0/NaN values): {uid} / {title} / {ref}")
        results.append(row)
    for key in expected:
        if key not in {(u, t, r) for u, t, r, _ in qs}:
            print(f"  stale expected-empty entry (no such query): {key}")
            bad += 1
    json.dump(results, open(out_json, "w"), indent=1)
    print(f"  {len(qs)} dashboard queries: {len(qs) - bad - empty_ok} returned data "
          f"({zero_only} of them only 0/NaN), {empty_ok} expected-empty, {bad} failed")
    return 1 if bad or not qs else 0


def cmd_metric_names(prom, metrics_file):
    live = set()
    for line in open(metrics_file):
        line = line.strip()
        if line.startswith("# TYPE "):
            live.add(line.split()[2])
        elif line and not line.startswith("#"):
            live.add(re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", line).group(0))
    records, used = set(), {}
    for g in get(prom + "/api/v1/rules")["data"]["groups"]:
        for r in g["rules"]:
            if r["type"] == "recording":
                records.add(r["name"])
            for m in metric_names(r["query"]):
                used.setdefault(m, set()).add(f"rule {r['name']}")
    for uid, title, _, q in dashboard_queries():
        for m in metric_names(q):
            used.setdefault(m, set()).add(f"dashboard {uid} / {title}")
    scrape = {"up"}  # written by Prometheus for every target
    bad = 0
    for m in sorted(used):
        if m in live or m in records or m in scrape:
            continue
        bad += 1
        print(f"  {m}: not in accord's /metrics nor a recording rule; used by {sorted(used[m])[:3]}")
    raw = sorted(m for m in used if m not in records)
    print(f"  {len(used)} names used ({len(raw)} raw metrics, {len(used) - len(raw)} recording rules), {bad} unknown")
    unused = sorted(m for m in live if m.startswith("accord_") and m not in used
                    and not m.endswith(("_sum", "_count")) and m + "_bucket" not in used)
    if unused:
        print(f"  note: exported but used by no rule or dashboard: {', '.join(unused)}")
    return 1 if bad or not used else 0


def cmd_list_queries():
    print("# dashboard uid\tpanel title\trefId\texpr ($__rate_interval=1m, $__range=1h, $feature=.*)")
    for row in dashboard_queries():
        print("\t".join(row))


def cmd_active_times(prom, t0, path):
    t0 = float(t0)
    seen = {}
    for a in get(prom + "/api/v1/alerts")["data"]["alerts"]:
        at = datetime.datetime.fromisoformat(a["activeAt"][:26].rstrip("Z") + "+00:00").timestamp()
        n = a["labels"]["alertname"]
        seen[n] = min(seen.get(n, at), at)
    first = {}
    for n in notifications(path):
        if isinstance(n["body"], dict):
            for a in n["body"].get("alerts", []):
                k = (n["path"], a["labels"].get("alertname"))
                first[k] = min(first.get(k, n["received_at"]), n["received_at"])
    for n, at in sorted(seen.items(), key=lambda x: x[1]):
        hooks = ", ".join(f"{p} +{t - t0:.1f}s" for (p, an), t in sorted(first.items()) if an == n)
        print(f"  {n:<38} active +{at - t0:5.1f}s  webhook: {hooks or '-'}")


def cmd_pending_alerts(prom):
    res = query(prom, 'count by (alertname) (max_over_time(ALERTS{alertstate="pending"}[15m]))')["result"]
    print(" ".join(r["metric"]["alertname"] for r in res) or "none")


def cmd_alertmanagers(prom):
    print(len(get(prom + "/api/v1/alertmanagers")["data"]["activeAlertmanagers"]))


def cmd_firing_names(alerts_json):
    with open(alerts_json) as fh:
        d = json.load(fh)
    print(" ".join(sorted({a["labels"]["alertname"] for a in d["data"]["alerts"] if a["state"] == "firing"})))


COMMANDS = {name[4:].replace("_", "-"): fn for name, fn in globals().items() if name.startswith("cmd_")}


def main():
    if len(sys.argv) < 2 or sys.argv[1] not in COMMANDS:
        sys.exit(__doc__)
    fn, args = COMMANDS[sys.argv[1]], sys.argv[2:]
    try:
        inspect.signature(fn).bind(*args)
    except TypeError as e:
        sys.exit(f"{sys.argv[1]}: {e}\n\n{__doc__}")
    return fn(*args) or 0


if __name__ == "__main__":
    sys.exit(main())
