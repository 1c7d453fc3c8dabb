#!/usr/bin/env bash
# Static checks of accord's ops artifacts (issue 6), against the real tools.
#
#   bash scripts/ci/ops-static.sh
#
# Installs what it lacks (Debian 12: prometheus -> promtool,
# prometheus-alertmanager -> amtool + alertmanager, docker-compose 1.29; PyPI:
# check-jsonschema, PyYAML), then checks:
#   rules       promtool check rules, promtool test rules, the fast-`for:`
#               variant (scripts/ci/fast-rules.sh), alert hygiene (severity,
#               summary, description, runbook_url -> docs/runbooks.md anchor,
#               for:, guard, firing + quiet unit tests)
#   prometheus  promtool check config in a temp dir that mirrors the compose
#               mounts (rule_files resolve relative to the config file)
#   alertmgr    amtool check-config, routing (critical->pager,
#               warning->ticket), inhibitions on a real local Alertmanager
#               (127.0.0.1, random port, stopped afterwards)
#   compose     check-jsonschema (compose spec), docker-compose config -q,
#               Debian-1.29 compatibility, 127.0.0.1 ports, healthchecks,
#               pinned images, mount sources; Dockerfile shape
#   dashboards  schemaVersion 41, stable uid, no id, datasource + feature
#               variables, ${datasource} everywhere, $__rate_interval windows;
#               every PromQL expr extracted to target/ops/dashboard-queries.txt
#               and parsed by promtool
#   metrics     every metric named in rules, rule tests and dashboards is a
#               SPEC §5 contract metric, a listed extra, `up`, or a recording
#               rule; label names and enumerated label values are checked too
#   synthetic   a real Prometheus (127.0.0.1, random port, stopped afterwards)
#               scrapes a synthetic accord-shaped exporter with the fast-`for:`
#               rules: every rule evaluates without error, every dashboard
#               query evaluates and returns data (catches runtime errors such
#               as many-to-many matches that parsing cannot)
#
# Output: target/ops/ (logs, extracted queries). Prints a PASS/FAIL line per
# check and "ops-static: N passed, M failed"; exits 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
OUT=$ROOT/target/ops
mkdir -p "$OUT"

# ---------------------------------------------------------------------------
# Tools (idempotent: apt-get update only when something is missing).
# ---------------------------------------------------------------------------
SUDO=""
if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then SUDO="sudo"; fi

ensure_tools() {
  local pkgs=()
  command -v promtool >/dev/null || pkgs+=(prometheus)
  { command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null; } || pkgs+=(prometheus-alertmanager)
  command -v docker-compose >/dev/null || pkgs+=(docker-compose)
  command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
  if ((${#pkgs[@]})); then
    echo "ops-static: installing ${pkgs[*]}"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${pkgs[@]}" >/dev/null
  fi
  local py=()
  command -v check-jsonschema >/dev/null || py+=(check-jsonschema)
  python3 -c 'import yaml' 2>/dev/null || py+=(pyyaml)
  if ((${#py[@]})); then
    echo "ops-static: pip install ${py[*]}"
    python3 -m pip install -q "${py[@]}" 2>/dev/null \
      || python3 -m pip install -q --break-system-packages "${py[@]}"
    hash -r
  fi
  command -v check-jsonschema >/dev/null || PATH="$(python3 -m site --user-base)/bin:$PATH"
}
check_jsonschema() {
  # pyenv may need a rehash before the console script appears; the module
  # entry point always works.
  if command -v check-jsonschema >/dev/null; then check-jsonschema "$@"; else python3 -m check_jsonschema "$@"; fi
}
ensure_tools

# ---------------------------------------------------------------------------
# Step runner: each check runs in a subshell with `set -e`, output to a log;
# the summary is printed at the end.
# ---------------------------------------------------------------------------
declare -a RESULTS=()
PASSED=0 FAILED=0
step() {
  local name=$1; shift
  local log="$OUT/${name//[^A-Za-z0-9_.-]/_}.log"
  set +e
  ( set -e; "$@" ) >"$log" 2>&1
  local rc=$?
  set -e
  if [[ $rc -eq 0 ]]; then
    RESULTS+=("PASS  $name")
    PASSED=$((PASSED + 1))
    echo "PASS  $name"
  else
    RESULTS+=("FAIL  $name  (log: ${log#"$ROOT"/})")
    FAILED=$((FAILED + 1))
    echo "FAIL  $name"
    sed 's/^/      | /' "$log" | tail -n 40
  fi
}

# The Python half of the checks lives in one file generated here (the repo
# keeps a single script); subcommands: hygiene, compose, dockerfile,
# dashboards, queries-rules, metrics, inhibition.
PY=$OUT/ops_checks.py
cat >"$PY" <<'PYEOF'
import glob, json, os, re, socket, subprocess, sys, tempfile, time, urllib.request
import yaml

ROOT = os.getcwd()
OUT = os.path.join(ROOT, "target", "ops")
RULES = sorted(f for f in glob.glob("rules/*.yml") if not f.endswith(".test.yml"))
TESTS = sorted(glob.glob("rules/*.test.yml"))
DASHBOARDS = sorted(glob.glob("dashboards/*.json"))
RUNBOOK_BASE = "https://github.com/accord-dev/accord/blob/main/docs/runbooks.md#"

# SPEC §5 contract metrics -> label names (and enumerated values where the
# spec fixes them). Cross-checked against shared/SPEC.md when it is found.
CONTRACT = {
    "accord_records_total": {"feature": None, "layer": None},
    "accord_records_rejected_total": {"reason": {"malformed_json", "missing_field", "invalid_field",
                                                 "unknown_layer", "unknown_feature", "too_large"}},
    "accord_records_late_total": {"feature": None, "layer": None},
    "accord_layer_decisions_total": {"feature": None, "layer": None, "path": {"new", "old", "unknown"}},
    "accord_requests_total": {"feature": None, "path": {"new", "old", "mixed", "unknown"},
                              "verdict": {"agree", "degraded", "incomplete", "diverge"}},
    "accord_divergences_total": {"feature": None, "kind": {"path_mismatch", "exposure_without_capability",
                                                           "payload_version_mismatch", "snapshot_skew"},
                                 "upstream": None, "downstream": None},
    "accord_missing_layers_total": {"feature": None, "layer": None},
    "accord_layer_lag_seconds": {"feature": None, "layer": None},  # histogram
    "accord_open_joins": {},
    "accord_joins_evicted_total": {},
    "accord_watermark_delay_seconds": {"topic": None, "partition": None},
    "accord_consumer_lag_messages": {"topic": None, "partition": None},
    "accord_feature_info": {"feature": None, "owner": None, "class": None},
    "accord_feature_expiry_timestamp_seconds": {"feature": None},
    "accord_build_info": {"version": None},
}
HISTOGRAMS = {"accord_layer_lag_seconds"}
# Exported by the service beyond the SPEC table (agreed with the Rust side).
EXTRAS = {
    "accord_ready": {},
    "accord_kafka_rebalances_total": {},
    "accord_kafka_commits_total": {"result": {"ok", "error"}},
    "accord_records_replayed_suppressed_total": {},
}
# Written by Prometheus itself for every scrape target.
PROMETHEUS = {"up": {}}
TARGET_LABELS = {"job", "instance"}

KNOWN = {}
for src in (CONTRACT, EXTRAS, PROMETHEUS):
    for m, labels in src.items():
        if m in HISTOGRAMS:
            KNOWN[m + "_bucket"] = dict(labels, le=None)
            KNOWN[m + "_sum"] = dict(labels)
            KNOWN[m + "_count"] = dict(labels)
        else:
            KNOWN[m] = dict(labels)

failures = []


def fail(msg):
    failures.append(msg)
    print("  x " + msg)


def done(what):
    if failures:
        print(f"{what}: {len(failures)} problem(s)")
        sys.exit(1)
    print(f"{what}: ok")


def load_rules():
    groups = []
    for f in RULES:
        with open(f) as fh:
            groups += [(f, g) for g in (yaml.safe_load(fh) or {}).get("groups", [])]
    return groups


def alerts():
    return [(f, r) for f, g in load_rules() for r in g["rules"] if "alert" in r]


def records():
    return {r["record"] for f, g in load_rules() for r in g["rules"] if "record" in r}


# ---------------------------------------------------------------------------
# PromQL lexer: just enough to find metric names and label matchers.
# ---------------------------------------------------------------------------
KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}


def lex(expr):
    toks, i, n = [], 0, len(expr)
    while i < n:
        c = expr[i]
        if c.isspace():
            i += 1
        elif c == "#":
            while i < n and expr[i] != "\n":
                i += 1
        elif c in "\"'`":
            j = i + 1
            buf = []
            while j < n and expr[j] != c:
                if expr[j] == "\\" and c != "`":
                    j += 1
                buf.append(expr[j])
                j += 1
            toks.append(("str", "".join(buf)))
            i = j + 1
        elif c == "[":
            j = expr.index("]", i)
            toks.append(("range", expr[i + 1:j]))
            i = j + 1
        elif c == "$":
            m = re.match(r"\$\{?[A-Za-z0-9_:]+(:[A-Za-z]+)?\}?", expr[i:])
            toks.append(("var", m.group(0)))
            i += len(m.group(0))
        elif c.isalpha() or c in "_:":
            m = re.match(r"[A-Za-z_:][A-Za-z0-9_:]*", expr[i:])
            toks.append(("id", m.group(0)))
            i += len(m.group(0))
        elif c.isdigit() or c == ".":
            m = re.match(r"[0-9.][0-9A-Za-z_.]*([eE][+-]?[0-9]+)?", expr[i:])
            toks.append(("num", m.group(0)))
            i += len(m.group(0))
        else:
            two = expr[i:i + 2]
            if two in ("=~", "!~", "!=", "==", ">=", "<="):
                toks.append(("op", two))
                i += 2
            else:
                toks.append(("op", c))
                i += 1
    return toks


def metric_refs(expr):
    """Yields (metric, [(label, op, value)]) for every selector in expr."""
    toks = lex(expr)
    out, i = [], 0
    while i < len(toks):
        kind, val = toks[i]
        nxt = toks[i + 1] if i + 1 < len(toks) else (None, None)
        if kind == "id" and val in LIST_KEYWORDS and nxt == ("op", "("):
            while i < len(toks) and toks[i] != ("op", ")"):
                i += 1
            i += 1
            continue
        if kind == "op" and val == "{":  # selector without a metric name
            j = i + 1
            matchers = []
            while toks[j] != ("op", "}"):
                if toks[j][0] == "id" and toks[j + 1][0] == "op" and toks[j + 1][1] in ("=", "!=", "=~", "!~"):
                    matchers.append((toks[j][1], toks[j + 1][1], toks[j + 2][1]))
                j += 1
            name = [v for l, o, v in matchers if l == "__name__"]
            out.append((name[0] if name else None, matchers))
            i = j + 1
            continue
        if kind == "id":
            low = val.lower()
            if nxt == ("op", "(") or low in KEYWORDS or (val in AGGREGATORS and nxt[0] == "id"):
                i += 1
                continue
            matchers = []
            if nxt == ("op", "{"):
                j = i + 2
                while toks[j] != ("op", "}"):
                    if toks[j][0] == "id" and toks[j + 1][0] == "op" and toks[j + 1][1] in ("=", "!=", "=~", "!~"):
                        matchers.append((toks[j][1], toks[j + 1][1], toks[j + 2][1]))
                    j += 1
                i = j
            out.append((val, matchers))
        i += 1
    return out


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
            fail(f"{where}: unknown metric {metric!r} (not in SPEC §5, the extras, or a recording rule)")
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


# ---------------------------------------------------------------------------
def cmd_hygiene():
    """Alert hygiene: labels, annotations, for:, guard, runbook anchors, tests."""
    runbook = open("docs/runbooks.md").read()
    headings = set(re.findall(r"^## (\S+)\s*$", runbook, re.M))
    # Alerts allowed without a `... and <traffic>` guard: liveness must fire
    # on an idle stack; lag and watermark use an absolute floor instead.
    no_guard = {"AccordDown", "AccordNotReady", "AccordConsumerLagHigh", "AccordWatermarkDelayHigh"}
    names = []
    for f, r in alerts():
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
        if a not in no_guard and not re.search(r"\band\b", r["expr"]):
            fail(f"{a}: no minimum-traffic guard (`and ...`) in expr")
    if len(set(names)) != len(names):
        fail("duplicate alert names")
    for h in headings - set(names):
        fail(f"docs/runbooks.md section {h} has no alert")
    for f, g in load_rules():
        for r in g["rules"]:
            if "record" in r and not re.fullmatch(r"[a-z_]+:[a-z0-9_]+:[a-z0-9_]+", r["record"]):
                fail(f"recording rule {r['record']} is not level:metric:operations")
    # Unit tests: every alert has a firing and a quiet case.
    firing, quiet = set(), set()
    for t in TESTS:
        for tc in yaml.safe_load(open(t))["tests"]:
            for at in tc.get("alert_rule_test", []):
                (firing if at.get("exp_alerts") else quiet).add(at["alertname"])
    for a in names:
        if a not in firing:
            fail(f"{a}: no firing promtool test case")
        if a not in quiet:
            fail(f"{a}: no non-firing promtool test case")
    print(f"{len(names)} alerts, {len(records())} recording rules")
    done("hygiene")


def cmd_compose():
    text = open("docker-compose.yml").read()
    c = yaml.safe_load(text)
    if "name" in c:
        fail("top-level `name:` is rejected by docker-compose 1.29")
    services = c["services"]
    for s, svc in services.items():
        if "start_interval" in svc.get("healthcheck", {}):
            fail(f"{s}: healthcheck.start_interval is rejected by docker-compose 1.29")
    one_shot = {"kafka-init", "simulate"}
    for s, svc in services.items():
        for p in svc.get("ports", []):
            if not str(p).startswith("127.0.0.1:"):
                fail(f"{s}: port {p} is not bound to 127.0.0.1")
        dep = svc.get("depends_on", {})
        if isinstance(dep, list):
            fail(f"{s}: depends_on must use conditions")
        for d, cond in (dep or {}).items():
            if "required" in cond:
                fail(f"{s}: depends_on.{d}.required is rejected by docker-compose 1.29")
            if cond.get("condition") not in ("service_healthy", "service_completed_successfully"):
                fail(f"{s}: depends_on.{d} should wait for service_healthy / completed")
            elif cond["condition"] == "service_healthy" and "healthcheck" not in services[d]:
                fail(f"{s}: waits for {d} to be healthy but {d} has no healthcheck")
        if s not in one_shot and "healthcheck" not in svc:
            fail(f"{s}: no healthcheck")
        img = svc.get("image", "")
        if img and not svc.get("build") and (":" not in img or img.endswith(":latest")):
            fail(f"{s}: image {img!r} is not pinned")
        for v in svc.get("volumes", []):
            src = str(v).split(":")[0]
            if src.startswith("./") and not os.path.exists(src):
                if src == "./accord.toml":
                    print(f"  note: {src} does not exist yet (the catalog, written with the service)")
                else:
                    fail(f"{s}: mount source {src} does not exist")
    k = services["kafka"]
    if not re.fullmatch(r"apache/kafka:4\.\d+\.\d+", k["image"]):
        fail(f"kafka image should be a pinned apache/kafka 4.x tag, got {k['image']}")
    env = {key: str(val) for key, val in k["environment"].items()}
    for key, want in [("KAFKA_PROCESS_ROLES", "broker,controller"),
                      ("KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR", "1"),
                      ("KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR", "1"),
                      ("KAFKA_TRANSACTION_STATE_LOG_MIN_ISR", "1"),
                      ("KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS", "0")]:
        if env.get(key) != want:
            fail(f"kafka: {key} should be {want}, got {env.get(key)}")
    run = services["accord"]["command"]
    for want in (["--config", "/etc/accord/accord.toml"], ["--brokers", "kafka:9092"],
                 ["--topic", "decisions"], ["--listen", "0.0.0.0:9898"]):
        if " ".join(want) not in " ".join(run):
            fail(f"accord: command lacks {' '.join(want)}")
    sim = " ".join(services["simulate"]["command"])
    if not sim.startswith("simulate") or "--scenario mixed" not in sim:
        fail(f"simulate: unexpected command {sim}")
    prom = yaml.safe_load(open("deploy/prometheus.yml"))
    targets = [t for sc in prom["scrape_configs"] if sc["job_name"] == "accord"
               for st in sc["static_configs"] for t in st["targets"]]
    if targets != ["accord:9898"]:
        fail(f"deploy/prometheus.yml: job accord should scrape accord:9898, got {targets}")
    for f in glob.glob("deploy/grafana/provisioning/*/*.yml"):
        y = yaml.safe_load(open(f))
        if y.get("apiVersion") != 1:
            fail(f"{f}: apiVersion should be 1")
    done("compose")


def cmd_dockerfile():
    d = open("Dockerfile").read()
    for pat, what in [(r"^FROM rust:1-bookworm AS builder$", "builder stage FROM rust:1-bookworm AS builder"),
                      (r"cargo build --release --locked", "cargo build --release --locked"),
                      (r"^FROM debian:bookworm-slim$", "runtime stage FROM debian:bookworm-slim"),
                      (r"^USER (?!root|0\b)\S+", "a non-root USER"),
                      (r"COPY --from=builder \S+ /usr/local/bin/accord", "the accord binary copied from the builder")]:
        if not re.search(pat, d, re.M):
            fail(f"Dockerfile: missing {what}")
    ign = open(".dockerignore").read().split()
    if "target/" not in ign and "target" not in ign and "/target" not in ign:
        fail(".dockerignore should exclude target/")
    done("dockerfile")


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_targets():
    for f in DASHBOARDS:
        d = json.load(open(f))
        for p in all_panels(d.get("panels", [])):
            for t in p.get("targets", []):
                if "expr" in t:
                    yield f, d, p, t


def cmd_dashboards():
    uids = {}
    for f in DASHBOARDS:
        d = json.load(open(f))
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
                            l == "feature" and "$feature" in v for l, o, v in matchers):
                        fail(f"{where}: {m} is not filtered by feature=~\"$feature\"")
    if len(DASHBOARDS) < 3:
        fail(f"expected 3 dashboards, found {len(DASHBOARDS)}")
    print(f"{len(DASHBOARDS)} dashboards, {sum(1 for _ in dashboard_targets())} queries")
    done("dashboards")


def resolve(expr):
    """Grafana variables -> values that let Prometheus/promtool evaluate it."""
    e = expr.replace("${__rate_interval}", "1m").replace("$__rate_interval", "1m")
    e = e.replace("${__range}", "1h").replace("$__range", "1h")
    e = e.replace("${__interval}", "1m").replace("$__interval", "1m")
    e = re.sub(r"\$\{feature(:[a-z]+)?\}|\$feature\b", ".*", e)
    return e


def cmd_queries_rules():
    """Writes the query lists and a rules file wrapping each query."""
    raw, res, groups = [], [], []
    for f, d, p, t in dashboard_targets():
        one = " ".join(t["expr"].split())
        row = [d["uid"], str(p["id"]), p["title"], t["refId"]]
        raw.append("\t".join(row + [one]))
        res.append("\t".join(row + [resolve(one)]))
        groups.append({"name": f"{d['uid']} panel {p['id']} ({p['title']}) {t['refId']}",
                       "rules": [{"record": "ops_static:dashboard_query:parse", "expr": resolve(t["expr"])}]})
        if "$" in resolve(t["expr"]):
            fail(f"{d['uid']} panel {p['title']!r}: unresolved variable in {one}")
    hdr = "# dashboard uid\tpanel id\tpanel title\trefId\texpr\n"
    with open(os.path.join(OUT, "dashboard-queries.txt"), "w") as fh:
        fh.write("# PromQL of every dashboard target, Grafana variables unresolved.\n" + hdr + "\n".join(raw) + "\n")
    with open(os.path.join(OUT, "dashboard-queries.resolved.txt"), "w") as fh:
        fh.write("# Same, with $__rate_interval=1m, $__range=1h, $feature=.*\n" + hdr + "\n".join(res) + "\n")
    with open(os.path.join(OUT, "dashboard-queries.rules.yml"), "w") as fh:
        yaml.safe_dump({"groups": groups}, fh, sort_keys=False, width=10000)
    print(f"{len(raw)} queries -> target/ops/dashboard-queries.txt")
    done("queries")


def cmd_metrics():
    recs = records()
    for f, g in load_rules():
        for r in g["rules"]:
            check_expr_metrics(f"{f}: {r.get('record') or r.get('alert')}", r["expr"], recs)
    for t in TESTS:
        for tc in yaml.safe_load(open(t))["tests"]:
            for s in tc.get("input_series", []):
                check_expr_metrics(f"{t}: {tc.get('name')}: input series", s["series"], recs)
    for f, d, p, t in dashboard_targets():
        check_expr_metrics(f"{f}: panel {p['title']!r} {t['refId']}", resolve(t["expr"]), recs)
    # The contract list above must match SPEC §5 when the spec is at hand.
    for spec in [os.environ.get("ACCORD_SPEC", ""), "../shared/SPEC.md", "shared/SPEC.md", "/work/shared/SPEC.md"]:
        if spec and os.path.exists(spec):
            sec = open(spec).read().split("## 5. Metrics", 1)[-1].split("\n## ", 1)[0]
            spec_metrics = set(re.findall(r"^\| `(accord_[a-z_]+)`", sec, re.M))
            if spec_metrics != set(CONTRACT):
                fail(f"SPEC §5 ({spec}) lists {sorted(spec_metrics ^ set(CONTRACT))} differently from this check")
            else:
                print(f"contract list matches {spec}")
            break
    else:
        print("note: SPEC.md not found; contract list not re-checked")
    used = set()
    for f, d, p, t in dashboard_targets():
        used |= {m for m, _ in metric_refs(resolve(t["expr"]))}
    for f, g in load_rules():
        for r in g["rules"]:
            used |= {m for m, _ in metric_refs(r["expr"])}
    unused = sorted(m for m in KNOWN if m not in used and not m.endswith(("_sum", "_count")))
    if unused:
        print(f"note: not used by any rule or dashboard: {', '.join(unused)}")
    done("metrics")


def cmd_inhibition():
    """Real Alertmanager on 127.0.0.1: are the inhibit rules effective?"""
    binary = "/usr/bin/prometheus-alertmanager"
    if not os.path.exists(binary):
        binary = "alertmanager"
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as tmp:
        log = open(os.path.join(OUT, "alertmanager-inhibition.am.log"), "w")
        proc = subprocess.Popen([binary, "--config.file=deploy/alertmanager.yml", f"--storage.path={tmp}",
                                 f"--web.listen-address=127.0.0.1:{port}", "--cluster.listen-address="],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            deadline = time.time() + 30
            while True:
                try:
                    urllib.request.urlopen(base + "/-/ready", timeout=2)
                    break
                except Exception:
                    if time.time() > deadline or proc.poll() is not None:
                        fail("alertmanager did not become ready within 30s (see alertmanager-inhibition.am.log)")
                        done("inhibition")
                    time.sleep(0.2)

            def post(*alerts):
                body = json.dumps([{"labels": a, "annotations": {}} for a in alerts]).encode()
                req = urllib.request.Request(base + "/api/v2/alerts", data=body, method="POST",
                                             headers={"Content-Type": "application/json"})
                urllib.request.urlopen(req, timeout=5)

            def state():
                got = json.load(urllib.request.urlopen(base + "/api/v2/alerts", timeout=5))
                return {(a["labels"]["alertname"], a["labels"].get("feature", "")): bool(a["status"]["inhibitedBy"])
                        for a in got}

            def expect(want, phase):
                deadline = time.time() + 15
                while True:
                    st = state()
                    if all(st.get(k) == v for k, v in want.items()):
                        print(f"{phase}: ok {st}")
                        return
                    if time.time() > deadline:
                        fail(f"{phase}: want inhibited={want}, got {st}")
                        return
                    time.sleep(0.3)

            burn = {"alertname": "AccordExposedAgreementBurnRateFast", "feature": "checkout_v2", "severity": "critical"}
            pair1 = {"alertname": "AccordLayerPairDivergence", "feature": "checkout_v2", "kind": "path_mismatch",
                     "upstream": "api", "downstream": "worker", "severity": "warning"}
            drift1 = {"alertname": "AccordExposureParityDrift", "feature": "checkout_v2", "layer": "api",
                      "upstream": "frontend", "severity": "warning"}
            slow1 = {"alertname": "AccordExposedAgreementBurnRateSlow", "feature": "checkout_v2", "severity": "warning"}
            pair2 = {"alertname": "AccordLayerPairDivergence", "feature": "search.ranking", "kind": "snapshot_skew",
                     "upstream": "api", "downstream": "analytics", "severity": "warning"}
            lag = {"alertname": "AccordConsumerLagHigh", "topic": "decisions", "partition": "0", "severity": "warning"}
            other = {"alertname": "SomeOtherTeamAlert", "severity": "warning"}
            post(burn, pair1, drift1, slow1, pair2, lag, other)
            expect({("AccordExposedAgreementBurnRateFast", "checkout_v2"): False,
                    ("AccordLayerPairDivergence", "checkout_v2"): True,
                    ("AccordExposureParityDrift", "checkout_v2"): True,
                    ("AccordExposedAgreementBurnRateSlow", "checkout_v2"): True,
                    ("AccordLayerPairDivergence", "search.ranking"): False,
                    ("AccordConsumerLagHigh", ""): False,
                    ("SomeOtherTeamAlert", ""): False}, "burn-rate inhibits the same feature only")
            post({"alertname": "AccordDown", "job": "accord", "severity": "critical"})
            expect({("AccordDown", ""): False,
                    ("AccordExposedAgreementBurnRateFast", "checkout_v2"): True,
                    ("AccordLayerPairDivergence", "search.ranking"): True,
                    ("AccordConsumerLagHigh", ""): True,
                    ("SomeOtherTeamAlert", ""): False}, "AccordDown inhibits every other accord alert")
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
            log.close()
    done("inhibition")


def synthetic_exposition(elapsed):
    """accord-shaped /metrics text: every contract and extra metric, with
    counters growing linearly so every rate is non-zero."""
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

    metric("accord_records_total", "counter",
           [({"feature": f, "layer": l}, 100 * t) for f, ls in feats.items() for l in ls])
    metric("accord_records_rejected_total", "counter",
           [({"reason": r}, 2 * t) for r in ["malformed_json", "missing_field", "invalid_field",
                                              "unknown_layer", "unknown_feature", "too_large"]])
    metric("accord_records_late_total", "counter",
           [({"feature": f, "layer": l}, 1 * t) for f, ls in feats.items() for l in ls])
    metric("accord_layer_decisions_total", "counter",
           [({"feature": f, "layer": l, "path": p}, {"new": 20, "old": 75, "unknown": 5}[p] * t)
            for f, ls in feats.items() for l in ls for p in ("new", "old", "unknown")])
    metric("accord_requests_total", "counter",
           [({"feature": f, "path": p, "verdict": v}, 10 * t)
            for f in feats for p in ("new", "old", "mixed", "unknown")
            for v in ("agree", "degraded", "incomplete", "diverge")])
    metric("accord_divergences_total", "counter",
           [({"feature": f, "kind": k, "upstream": "api", "downstream": "worker"}, 1 * t)
            for f in feats for k in ("path_mismatch", "exposure_without_capability",
                                     "payload_version_mismatch", "snapshot_skew")])
    metric("accord_missing_layers_total", "counter",
           [({"feature": f, "layer": l}, 3 * t) for f, ls in feats.items() for l in ls])
    lines.append("# HELP accord_layer_lag_seconds synthetic")
    lines.append("# TYPE accord_layer_lag_seconds histogram")
    for f, ls in feats.items():
        for l in ls:
            cum = 0
            for le, n in (("0.1", 50), ("0.5", 30), ("1", 10), ("5", 8), ("30", 2), ("+Inf", 0)):
                cum += n
                lines.append(f'accord_layer_lag_seconds_bucket{{feature="{f}",layer="{l}",le="{le}"}} {cum * t}')
            lines.append(f'accord_layer_lag_seconds_sum{{feature="{f}",layer="{l}"}} {60 * t}')
            lines.append(f'accord_layer_lag_seconds_count{{feature="{f}",layer="{l}"}} {100 * t}')
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
    metric("accord_kafka_commits_total", "counter", [({"result": "ok"}, 5 * t), ({"result": "error"}, 0.1 * t)])
    metric("accord_records_replayed_suppressed_total", "counter", [({}, 0.2 * t)])
    return "\n".join(lines) + "\n"


def cmd_synthetic():
    """Real Prometheus (127.0.0.1) scraping a synthetic accord exporter with
    the shipped rules (fast `for:`): every rule must evaluate without error
    and every dashboard query must evaluate and return data."""
    import http.server, threading, urllib.parse
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
            for f, d, p, t in dashboard_targets():
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


{"hygiene": cmd_hygiene, "synthetic": cmd_synthetic, "compose": cmd_compose, "dockerfile": cmd_dockerfile,
 "dashboards": cmd_dashboards, "queries-rules": cmd_queries_rules, "metrics": cmd_metrics,
 "inhibition": cmd_inhibition}[sys.argv[1]]()
PYEOF
py() { python3 "$PY" "$@"; }

# ---------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------
check_prom_config() {
  # Mirror the compose mounts: /etc/prometheus/{prometheus.yml,rules/}.
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cp deploy/prometheus.yml "$tmp/prometheus.yml"
  cp -r rules "$tmp/rules"
  promtool check config "$tmp/prometheus.yml"
}

check_routes() {
  local cfg=deploy/alertmanager.yml
  amtool config routes test --config.file=$cfg --verify.receivers=pager severity=critical alertname=AccordDown
  amtool config routes test --config.file=$cfg --verify.receivers=pager severity=critical alertname=AccordExposedAgreementBurnRateFast feature=checkout_v2
  amtool config routes test --config.file=$cfg --verify.receivers=ticket severity=warning alertname=AccordLayerPairDivergence feature=checkout_v2
  amtool config routes test --config.file=$cfg --verify.receivers=ticket alertname=Unlabelled
  grep -Eq 'group_by: \[alertname, feature\]' $cfg
}

check_fast_rules() {
  scripts/ci/fast-rules.sh rules/accord.rules.yml "$OUT/accord.fast.rules.yml"
  promtool check rules "$OUT/accord.fast.rules.yml"
}

check_dashboard_queries() {
  py queries-rules
  promtool check rules "$OUT/dashboard-queries.rules.yml"
}

step "promtool check rules"          promtool check rules rules/accord.rules.yml
step "promtool test rules"           promtool test rules rules/accord.rules.test.yml
step "rules: fast for: variant"      check_fast_rules
step "rules: alert hygiene"          py hygiene
step "promtool check config"         check_prom_config
step "amtool check-config"           amtool check-config deploy/alertmanager.yml
step "alertmanager routing"          check_routes
step "alertmanager inhibition (live)" py inhibition
step "compose: compose-spec schema"  check_jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
step "compose: docker-compose config" docker-compose -f docker-compose.yml config -q
step "compose: conventions"          py compose
step "Dockerfile"                    py dockerfile
step "dashboards: JSON sanity"       py dashboards
step "dashboards: PromQL parses"     check_dashboard_queries
step "metrics: names and labels"     py metrics
step "synthetic Prometheus: rules + queries evaluate" py synthetic

echo
echo "== ops-static summary =="
printf '%s\n' "${RESULTS[@]}"
echo "queries for live tests: target/ops/dashboard-queries.txt (resolved: dashboard-queries.resolved.txt)"
echo "ops-static: $PASSED passed, $FAILED failed"
[[ $FAILED -eq 0 ]]
