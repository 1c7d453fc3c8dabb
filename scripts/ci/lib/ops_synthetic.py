#!/usr/bin/env python3
"""The shipped rules and dashboard queries, evaluated by a real Prometheus.

    python3 scripts/ci/lib/ops_synthetic.py

Serves an accord-shaped synthetic /metrics on 127.0.0.1 (every exported
metric of the contract file, src/export/contract_metrics.txt, with its
type, labels and enumerated label values; counters grow linearly so every
rate is non-zero) and starts Prometheus on 127.0.0.1 with 1 s scrape and
evaluation intervals and target/ops/accord.fast.rules.yml (the shipped
rules with `for:` shortened, written by scripts/ci/fast-rules.sh). Once
Prometheus has at least 6 scrapes (at most 60 s): every rule evaluates
without error, and every dashboard query (variables resolved as in
artifacts.resolve) evaluates and returns data. Catches runtime errors that
parsing cannot, such as many-to-many matches. Prometheus is stopped
afterwards (log: target/ops/synthetic.prometheus.log).
Prints one line per problem and "synthetic: ok" or "synthetic: N
problem(s)" (exit 1). Run from scripts/ci/ops-static.sh.
"""
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import yaml

from artifacts import OUT, dashboard_targets, resolve
from contract import METRICS
from report import done, fail, failures

LABEL_VALUES = {m.name: m.labels for m in METRICS}


def values(metric, label):
    """The enumerated values of a label, in a stable order."""
    return sorted(LABEL_VALUES[metric][label])


def synthetic_exposition(elapsed):
    """accord-shaped /metrics text: every exported contract and extra
    metric, with counters growing linearly so every rate is non-zero."""
    feats = {"checkout_v2": ["frontend", "api", "worker", "analytics"],
             "search.ranking": ["frontend", "api", "analytics"]}
    t = max(elapsed, 0.001)
    lines = []

    def metric(name, typ, samples):
        lines.append(f"# HELP {name} synthetic")
        lines.append(f"# TYPE {name} {typ}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{v}"' for k, v in labels.items())
            lines.append(f"{name}{{{lab}}} {value}" if lab else f"{name} {value}")

    weight = {"new": 20, "old": 75}
    metric("accord_records_total", "counter",
           [({"feature": f, "layer": la}, 100 * t) for f, ls in feats.items() for la in ls])
    metric("accord_records_rejected_total", "counter",
           [({"reason": r}, 2 * t) for r in values("accord_records_rejected_total", "reason")])
    metric("accord_records_late_total", "counter",
           [({"feature": f, "layer": la}, 1 * t) for f, ls in feats.items() for la in ls])
    metric("accord_layer_decisions_total", "counter",
           [({"feature": f, "layer": la, "path": p}, weight.get(p, 5) * t)
            for f, ls in feats.items() for la in ls for p in values("accord_layer_decisions_total", "path")])
    metric("accord_requests_total", "counter",
           [({"feature": f, "path": p, "verdict": v}, 10 * t)
            for f in feats for p in values("accord_requests_total", "path")
            for v in values("accord_requests_total", "verdict")])
    metric("accord_divergences_total", "counter",
           [({"feature": f, "kind": k, "upstream": "api", "downstream": "worker"}, 1 * t)
            for f in feats for k in values("accord_divergences_total", "kind")])
    metric("accord_missing_layers_total", "counter",
           [({"feature": f, "layer": la}, 3 * t) for f, ls in feats.items() for la in ls])
    lines.append("# HELP accord_layer_lag_seconds synthetic")
    lines.append("# TYPE accord_layer_lag_seconds histogram")
    for f, ls in feats.items():
        for la in ls:
            cum = 0
            for le, n in (("0.1", 50), ("0.5", 30), ("1", 10), ("5", 8), ("30", 2), ("+Inf", 0)):
                cum += n
                lines.append(f'accord_layer_lag_seconds_bucket{{feature="{f}",layer="{la}",le="{le}"}} {cum * t}')
            lines.append(f'accord_layer_lag_seconds_sum{{feature="{f}",layer="{la}"}} {60 * t}')
            lines.append(f'accord_layer_lag_seconds_count{{feature="{f}",layer="{la}"}} {100 * t}')
    metric("accord_open_joins", "gauge", [({}, 1234)])
    metric("accord_joins_evicted_total", "counter", [({}, 0.5 * t)])
    metric("accord_watermark_delay_seconds", "gauge",
           [({"topic": "decisions", "partition": str(p)}, 6) for p in range(3)])
    metric("accord_consumer_lag_messages", "gauge",
           [({"topic": "decisions", "partition": str(p)}, 10 * p) for p in range(3)])
    metric("accord_feature_info", "gauge",
           [({"feature": "checkout_v2", "owner": "payments", "class": "state-machine"}, 1),
            ({"feature": "search.ranking", "owner": "search", "class": "decision"}, 1)])
    metric("accord_feature_expiry_timestamp_seconds", "gauge",
           [({"feature": "checkout_v2"}, 1801353600), ({"feature": "search.ranking"}, 1814313600)])
    metric("accord_build_info", "gauge", [({"version": "0.0.0-synthetic"}, 1)])
    metric("accord_ready", "gauge", [({}, 1)])
    metric("accord_kafka_rebalances_total", "counter", [({}, 0.1 * t)])
    metric("accord_kafka_commits_total", "counter",
           [({"result": r}, (5 if r == "ok" else 0.1) * t) for r in values("accord_kafka_commits_total", "result")])
    metric("accord_records_replayed_suppressed_total", "counter", [({}, 0.2 * t)])
    metric("accord_stale_revision_records_total", "counter",
           [({"feature": f, "layer": la}, 2 * t) for f, ls in feats.items() for la in ls])
    metric("accord_records_clock_skewed_total", "counter",
           [({"feature": f, "layer": la}, 0.5 * t) for f, ls in feats.items() for la in ls])
    metric("accord_otlp_items_ignored_total", "counter", [({}, 0.3 * t)])
    metric("accord_stream_topic_waits_expired_total", "counter",
           [({"topic": "decisions", "partition": str(p)}, 0.1 * t) for p in range(3)])
    metric("accord_stats_published_bytes_total", "counter", [({}, 500 * t)])
    metric("accord_view_age_seconds", "gauge", [({}, 4)])
    metric("accord_view_instances", "gauge", [({}, 3)])
    return "\n".join(lines) + "\n"


def check_coverage():
    """The synthetic exposition has exactly the exported metrics of the
    contract file, with their types and label names."""
    want = {m.name: (m.kind, set(m.labels)) for m in METRICS if not m.planned}
    got = {}
    for line in synthetic_exposition(1.0).splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            got[name] = (kind, set())
        elif not line.startswith("#"):
            name, _, rest = line.partition("{")
            base = name.split()[0]
            if base not in got:
                base = base.rsplit("_", 1)[0]  # histogram _bucket/_sum/_count
            names = (kv.split("=")[0] for kv in rest.split("}")[0].split(","))
            got[base][1].update(k for k in names if k and k != "le")
    for name in sorted(set(want) | set(got)):
        if want.get(name) != got.get(name):
            fail(f"synthetic exporter: {name} is {got.get(name)}, the contract file says {want.get(name)}")
    if failures:
        done("synthetic")


def cmd_synthetic():
    """Real Prometheus (127.0.0.1) scraping a synthetic accord exporter with
    the shipped rules (fast `for:`): every rule must evaluate without error
    and every dashboard query must evaluate and return data."""
    start = time.time()

    class Exporter(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = synthetic_exposition(time.time() - start).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain; version=0.0.4")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *a):
            pass

    exporter = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Exporter)
    threading.Thread(target=exporter.serve_forever, daemon=True).start()
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        cfg = os.path.join(tmp, "prometheus.yml")
        with open(cfg, "w") as fh:
            yaml.safe_dump({
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [os.path.join(OUT, "accord.fast.rules.yml")],
                "scrape_configs": [{"job_name": "accord", "static_configs": [
                    {"targets": [f"127.0.0.1:{exporter.server_address[1]}"]}]}],
            }, fh)
        log = open(os.path.join(OUT, "synthetic.prometheus.log"), "w")
        proc = subprocess.Popen(["prometheus", f"--config.file={cfg}", f"--storage.tsdb.path={tmp}/data",
                                 f"--web.listen-address=127.0.0.1:{port}"], stdout=log, stderr=subprocess.STDOUT)

        def api(path, **params):
            url = base + path + ("?" + urllib.parse.urlencode(params) if params else "")
            return json.load(urllib.request.urlopen(url, timeout=10))

        try:
            deadline = time.time() + 60
            while True:  # ready, and enough samples for rates and rules
                try:
                    up = api("/api/v1/query", query='count_over_time(up{job="accord"}[1m])')["data"]["result"]
                    if up and float(up[0]["value"][1]) >= 6:
                        break
                except Exception:
                    pass
                if time.time() > deadline or proc.poll() is not None:
                    fail("prometheus did not scrape the synthetic exporter within 60s (synthetic.prometheus.log)")
                    done("synthetic")
                time.sleep(0.5)
            time.sleep(2)
            for g in api("/api/v1/rules")["data"]["groups"]:
                for r in g["rules"]:
                    if r.get("health") != "ok":
                        fail(f"rule {r['name']} health {r.get('health')}: {r.get('lastError')}")
            n = empty = 0
            for _, d, p, t in dashboard_targets():
                n += 1
                q = resolve(t["expr"])
                where = f"{d['uid']} panel {p['title']!r} {t['refId']}"
                try:
                    res = api("/api/v1/query", query=q)
                except urllib.error.HTTPError as e:
                    fail(f"{where}: {e.code} {e.read().decode()[:300]}")
                    continue
                data = res["data"]["result"]
                if res["data"]["resultType"] == "vector" and not data:
                    empty += 1
                    fail(f"{where}: no data from synthetic metrics: {q}")
            print(f"{n} dashboard queries evaluated, {empty} empty; all rules healthy" if not failures else "")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
            exporter.shutdown()
    done("synthetic")


def main():
    if len(sys.argv) != 1:
        sys.exit(__doc__)
    check_coverage()
    cmd_synthetic()


if __name__ == "__main__":
    main()
