"""The repository's ops artifacts, as the CI checks read them.

Alerting and recording rules (rules/*.yml), their promtool unit tests
(rules/*.test.yml) and the Grafana dashboards (dashboards/*.json), with the
helpers every check needs: the rule groups, the alerts, the recording rule
names, every dashboard query target, and Grafana variables resolved to
values that Prometheus and promtool can evaluate. Paths are relative to the
repository root (found from this file). Imported, not run.
"""
import glob
import json
import os
import re

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
OUT = os.path.join(ROOT, "target", "ops")


def _glob(pattern):
    return sorted(os.path.relpath(p, ROOT) for p in glob.glob(os.path.join(ROOT, pattern)))


RULES = [f for f in _glob("rules/*.yml") if not f.endswith(".test.yml")]
TESTS = _glob("rules/*.test.yml")
DASHBOARDS = _glob("dashboards/*.json")


def load_yaml(path):
    # PyYAML is imported here: the dashboard helpers need only the standard
    # library (the live alerting test does not install PyYAML).
    import yaml

    with open(os.path.join(ROOT, path)) as fh:
        return yaml.safe_load(fh)


def load_rules():
    """(file, group) for every rule group of every rules file."""
    groups = []
    for f in RULES:
        groups += [(f, g) for g in (load_yaml(f) or {}).get("groups", [])]
    return groups


def alerts():
    return [(f, r) for f, g in load_rules() for r in g["rules"] if "alert" in r]


def records():
    return {r["record"] for f, g in load_rules() for r in g["rules"] if "record" in r}


def rule_tests():
    """(file, test case) for every promtool test case."""
    return [(t, tc) for t in TESTS for tc in load_yaml(t)["tests"]]


def load_dashboard(path):
    with open(os.path.join(ROOT, path)) as fh:
        return json.load(fh)


def all_panels(panels):
    for p in panels:
        yield p
        yield from all_panels(p.get("panels", []))


def dashboard_targets():
    """(file, dashboard, panel, target) for every target with an expr."""
    for f in DASHBOARDS:
        d = load_dashboard(f)
        for p in all_panels(d.get("panels", [])):
            for t in p.get("targets", []):
                if "expr" in t:
                    yield f, d, p, t


def resolve(expr):
    """Grafana variables -> values that let Prometheus/promtool evaluate it:
    $__rate_interval=1m, $__range=1h, $__interval=1m, $feature=.*"""
    e = expr.replace("${__rate_interval}", "1m").replace("$__rate_interval", "1m")
    e = e.replace("${__range}", "1h").replace("$__range", "1h")
    e = e.replace("${__interval}", "1m").replace("$__interval", "1m")
    e = re.sub(r"\$\{feature(:[a-z]+)?\}|\$feature\b", ".*", e)
    return e


def dashboard_queries():
    """(dashboard uid, panel title, refId, resolved expr on one line) for
    every non-empty dashboard query."""
    out = []
    for _, d, p, t in dashboard_targets():
        if t.get("expr", "").strip():
            out.append((d["uid"], p.get("title", ""), t.get("refId", ""), " ".join(resolve(t["expr"]).split())))
    return out
