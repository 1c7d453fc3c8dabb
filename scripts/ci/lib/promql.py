"""Just enough PromQL lexing to find metric names and label matchers.

Used by the ops checks (every metric and label a rule, rule test or
dashboard names is checked against the metric contract) and by the live
alerting test (every metric a rule or dashboard names must be exported).
Not a parser: it does not validate expressions (promtool does that).

    import promql
    promql.metric_refs('rate(accord_requests_total{verdict="agree"}[5m])')
    # -> [("accord_requests_total", [("verdict", "=", "agree")])]
    promql.metric_names(expr)   # -> {"accord_requests_total"}
"""
import re

KEYWORDS = {"and", "or", "unless", "by", "without", "on", "ignoring", "group_left",
            "group_right", "bool", "offset", "inf", "nan", "atan2"}
AGGREGATORS = {"sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values",
               "bottomk", "topk", "quantile", "limitk", "limit_ratio"}
LIST_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right"}
MATCH_OPS = ("=", "!=", "=~", "!~")


def lex(expr):
    """Tokens (kind, text): kind is str, range, var (a Grafana variable), id,
    num or op. Comments are dropped."""
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


def _matchers(toks, j):
    """Label matchers from toks[j] up to the closing brace: (list, index of
    the brace)."""
    matchers = []
    while toks[j] != ("op", "}"):
        if toks[j][0] == "id" and toks[j + 1][0] == "op" and toks[j + 1][1] in MATCH_OPS:
            matchers.append((toks[j][1], toks[j + 1][1], toks[j + 2][1]))
        j += 1
    return matchers, j


def metric_refs(expr):
    """(metric, [(label, op, value)]) for every selector in expr; metric is
    None for a selector without a metric name (unless it matches __name__)."""
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
            matchers, j = _matchers(toks, i + 1)
            name = [v for lab, _, v in matchers if lab == "__name__"]
            out.append((name[0] if name else None, matchers))
            i = j + 1
            continue
        if kind == "id":
            if nxt == ("op", "(") or val.lower() in KEYWORDS or (val in AGGREGATORS and nxt[0] == "id"):
                i += 1
                continue
            matchers = []
            if nxt == ("op", "{"):
                matchers, i = _matchers(toks, i + 2)
            out.append((val, matchers))
        i += 1
    return out


def metric_names(expr):
    """Metric names of every selector in expr that names one."""
    return {m for m, _ in metric_refs(expr) if m is not None}
