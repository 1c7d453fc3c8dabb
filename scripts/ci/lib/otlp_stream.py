#!/usr/bin/env python3
"""Decision records as OpenFeature flag-evaluation events, encoded with the official OTLP encoder.

    python3 scripts/ci/lib/otlp_stream.py encode DECISIONS.jsonl OUTDIR --mode split|logs|traces
                                                 [--partitions N] [--seed S]
    python3 scripts/ci/lib/otlp_stream.py verdicts REPORT.json LIVE.prom

encode: DECISIONS.jsonl is `accord simulate --output` (accord records in emit
order). Every decision becomes one flag evaluation in an OTLP export request
built with PyPI `opentelemetry-proto` (the generated protobuf classes of the
OpenTelemetry project), the way OpenFeature's OpenTelemetry hooks and the
Collector would deliver it:

  - as a log record (JavaScript `EventHook` style: `eventName`
    `feature_flag.evaluation`, attributes `feature_flag.key`,
    `feature_flag.result.variant` or the boolean value, `accord.*`) in an
    `ExportLogsServiceRequest`, or
  - as a span event (Go `TracesHook`: event `feature_flag.evaluation`, new
    attribute names; Java `TracesHook`: event `feature_flag`, older names;
    the `accord.*` fields on the event or on its span) in an
    `ExportTraceServiceRequest`.

--mode split: the frontend as log records (topic role `logs`), the other
layers as span events (role `spans`); logs: every layer as log records;
traces: every layer as span events. The request id is the trace id (16
bytes of SHA-256 of the simulated request id). The Collector is mimicked:
a batch is every record emitted within 200 ms, split into one export request
per trace id (its Kafka exporter's `partition_logs_by_trace_id` /
`partition_traces_by_id`), keyed by the trace id in hex; the partition is
the CRC32 of the key modulo N (librdkafka's `consistent` partitioner), so
the logs and the spans of a request land in partition p of both topics. The
message timestamp is the batch's flush time (its end), as the exporter's
producer stamps the send time: never before an evaluation's own time.

Items that are not evaluations are added and counted: log records without an
event name (and without a flag key), log records whose `event.name`
attribute names another event, span events of other names (`exception`,
`http.retry`), and now and then a message that holds no evaluation at all.
Spans without events are added as well: they are no items and count
nothing.

Writes, for each topic role R of the mode (OUTDIR is emptied of them first):
  R.produce.jsonl    for kafka_io.py produce (`partition`, `key`, `value_b64`,
                     `timestamp`), in emit order;
  R-pP.otlp.jsonl    the same export requests of partition P as OTLP/JSON, one
                     per line (`accord replay --input-format otlp_json`);
  R-pP.accord.jsonl  the evaluations of those requests as accord decision
                     records, in message order (`accord replay`).
Prints one JSON object of counts: decisions, evaluations, messages per role,
ignored items, messages without evaluations, evaluations per message (max),
the widest event-time spread within one message (ms).

verdicts: the simulator's report (its `expected` path/verdict counts per
feature, and `late_records`) against accord_requests_total and
accord_records_late_total of LIVE.prom; exits 1 on any difference.
"""
import argparse
import base64
import hashlib
import json
import os
import random
import re
import sys
import zlib
from datetime import datetime, timedelta, timezone

from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord, ResourceLogs, ScopeLogs
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

BATCH_MS = 200
EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
SCOPES = {
    "js": "@openfeature/open-telemetry-hooks",
    "go": "github.com/open-feature/go-sdk-contrib/hooks/open-telemetry",
    "java": "dev.openfeature.contrib.hooks.otel",
}
# Which OpenFeature hook each layer's service would run.
HOOK = {"frontend": "js", "api": "go", "worker": "java", "analytics": "go"}
SPAN_NAME = {"frontend": "documentLoad", "api": "POST /checkout", "worker": "process fulfilment job",
             "analytics": "ingest order event"}
ROLES = {"split": ("logs", "spans"), "logs": ("logs",), "traces": ("spans",)}
# OTLP/JSON writes trace and span ids as hex; proto3 JSON writes bytes as base64.
HEX_ID_FIELDS = ("traceId", "spanId", "parentSpanId")


def any_value(v):
    if isinstance(v, bool):
        return AnyValue(bool_value=v)
    if isinstance(v, int):
        return AnyValue(int_value=v)
    return AnyValue(string_value=str(v))


def kv(key, v):
    return KeyValue(key=key, value=any_value(v))


def ts_ms(r):
    t = r["ts"]
    if isinstance(t, int):
        return t
    return (datetime.fromisoformat(t.replace("Z", "+00:00")) - EPOCH) // timedelta(milliseconds=1)


class Encoder:
    def __init__(self, mode, partitions, seed):
        self.mode = mode
        self.partitions = partitions
        self.rng = random.Random(seed)
        self.ignored = 0
        self.no_eval_messages = 0
        self.messages = {r: 0 for r in ROLES[mode]}
        self.evaluations = 0
        self.max_per_message = 0
        self.max_spread_ms = 0
        self.n_batches = 0

    def role(self, layer):
        if self.mode == "logs" or (self.mode == "split" and layer == "frontend"):
            return "logs"
        return "spans"

    def span_id(self):
        return self.rng.getrandbits(64).to_bytes(8, "big") or b"\x01" * 8

    def nanos(self, ms):
        # Sub-millisecond digits that accord truncates.
        return ms * 1_000_000 + self.rng.randrange(1_000_000)

    def evaluation_attrs(self, r, hook, log):
        """The flag attributes and the accord-specific ones of one evaluation; the body for a log record."""
        new_names = hook != "java"
        attrs = [kv("feature_flag.key", r["feature"]),
                 kv("feature_flag.provider.name" if new_names else "feature_flag.provider_name", "flagd")]
        body = None
        st = r.get("flag_state")
        if isinstance(st, str):
            attrs.append(kv("feature_flag.result.variant" if new_names else "feature_flag.variant", st))
        elif isinstance(st, bool):
            if log and hook == "js" and self.rng.random() < 0.5:
                # The web hook puts the value in the body when the flag has no variant.
                body = any_value(st)
            else:
                attrs.append(kv("feature_flag.result.value", st))
        if "flags_revision" in r:
            attrs.append(kv("feature_flag.version", r["flags_revision"]))
        accord = []
        for f in ("selected_flow", "api_capability", "job_payload_version"):
            if f in r:
                accord.append(kv("accord." + f, r[f]))
        return attrs, accord, body

    @staticmethod
    def resource(r):
        hook = HOOK[r["layer"]]
        a = [kv("service.name", r["service"])]
        if "instance" in r:
            a.append(kv("service.instance.id", r["instance"]))
        if "build" in r:
            a.append(kv("service.version", r["build"]))
        a.append(kv("telemetry.sdk.language", {"js": "webjs", "go": "go", "java": "java"}[hook]))
        return Resource(attributes=a)

    @staticmethod
    def groups(recs):
        """Records by resource (service instance), in order of first appearance: one resource each."""
        out = {}
        for r in recs:
            out.setdefault((r["service"], r.get("instance"), r.get("build")), []).append(r)
        return list(out.values())

    def ignored_log(self, trace, t_ms):
        self.ignored += 1
        if self.rng.random() < 0.5:
            # An access log: no event name, no flag key.
            return LogRecord(time_unix_nano=self.nanos(t_ms), severity_number=9, severity_text="INFO",
                             body=AnyValue(string_value="GET /checkout 200"),
                             attributes=[kv("http.route", "/checkout"), kv("http.response.status_code", 200)],
                             trace_id=trace, span_id=self.span_id())
        # Another event, named by the older `event.name` attribute.
        return LogRecord(time_unix_nano=self.nanos(t_ms), attributes=[kv("event.name", "browser.page_view")],
                         trace_id=trace)

    def log_record(self, r, trace, style):
        attrs, accord, body = self.evaluation_attrs(r, style, True)
        t = self.nanos(ts_ms(r))
        if self.rng.random() < 0.2:
            # Some SDKs stamp only the observed time.
            times = {"observed_time_unix_nano": t}
        else:
            times = {"time_unix_nano": t, "observed_time_unix_nano": t + self.rng.randrange(20_000_000)}
        rec = LogRecord(severity_number=9, severity_text="INFO", attributes=attrs + accord, trace_id=trace,
                        span_id=self.span_id(), **times)
        if body is not None:
            rec.body.CopyFrom(body)
        if style == "js" or r["layer"] == "api":
            rec.event_name = "feature_flag.evaluation"
        elif r["layer"] == "worker":
            # An older logs SDK: the event name as an attribute.
            rec.attributes.append(kv("event.name", "feature_flag"))
        # else (analytics): no event name at all; the flag key makes it an evaluation.
        return rec

    def logs(self, trace, recs, extra):
        req = ExportLogsServiceRequest()
        for g in self.groups(recs):
            rl = ResourceLogs(resource=self.resource(g[0]))
            sl = ScopeLogs(scope=InstrumentationScope(name=SCOPES[HOOK[g[0]["layer"]]]))
            for r in g:
                if extra and self.rng.random() < 0.5:
                    sl.log_records.append(self.ignored_log(trace, ts_ms(r)))
                sl.log_records.append(self.log_record(r, trace, HOOK[r["layer"]]))
            rl.scope_logs.append(sl)
            req.resource_logs.append(rl)
        return req

    def spans(self, trace, recs, extra):
        req = ExportTraceServiceRequest()
        for g in self.groups(recs):
            rs = ResourceSpans(resource=self.resource(g[0]))
            hook = HOOK[g[0]["layer"]]
            ss = ScopeSpans(scope=InstrumentationScope(name=SCOPES[hook]))
            for r in g:
                attrs, accord, _ = self.evaluation_attrs(r, hook, False)
                t = self.nanos(ts_ms(r))
                span_attrs = [kv("http.request.method", "POST")]
                if self.rng.random() < 0.3:
                    # Set on the active span where the code path is chosen.
                    span_attrs += accord
                else:
                    attrs += accord
                sp = Span(trace_id=trace, span_id=self.span_id(), name=SPAN_NAME[r["layer"]], kind=2,
                          start_time_unix_nano=t - 2_000_000, end_time_unix_nano=t + 3_000_000,
                          attributes=span_attrs)
                name = "feature_flag" if hook == "java" else "feature_flag.evaluation"
                ev = sp.events.add(time_unix_nano=t, name=name)
                ev.attributes.extend(attrs)
                if extra:
                    self.ignored += 1
                    other = sp.events.add(time_unix_nano=t + 1_000)
                    if self.rng.random() < 0.5:
                        other.name = "exception"
                        other.attributes.append(kv("exception.type", "TimeoutError"))
                    else:
                        other.name = "http.retry"
                        other.attributes.append(kv("http.request.resend_count", 1))
                ss.spans.append(sp)
                if self.rng.random() < 0.1:
                    # A child span (a database call) with no events: no item at all.
                    ss.spans.append(Span(trace_id=trace, span_id=self.span_id(), parent_span_id=sp.span_id,
                                         name="SELECT orders", kind=3, start_time_unix_nano=t,
                                         end_time_unix_nano=t + 1_000_000))
            rs.scope_spans.append(ss)
            req.resource_spans.append(rs)
        return req

    def batch(self, recs, flush_ms, out):
        """One Collector batch: one export request per (role, trace id), in order of first record."""
        self.n_batches += 1
        msgs = {}
        for r in recs:
            trace = hashlib.sha256(r["request_id"].encode()).digest()[:16]
            msgs.setdefault((self.role(r["layer"]), trace), []).append(r)
        if self.n_batches % 40 == 0:
            # A trace whose batch holds no evaluation (a health check's access log).
            trace = hashlib.sha256(b"no-evaluation-%d" % self.n_batches).digest()[:16]
            role = "logs" if "logs" in ROLES[self.mode] else "spans"
            msgs[(role, trace)] = []
        for (role, trace), group in msgs.items():
            extra = self.rng.random() < 0.1
            if not group:
                self.no_eval_messages += 1
                if role == "logs":
                    req = ExportLogsServiceRequest()
                    rl = req.resource_logs.add(resource=Resource(attributes=[kv("service.name", "web-spa")]))
                    rl.scope_logs.add().log_records.append(self.ignored_log(trace, flush_ms - 1))
                else:
                    req = ExportTraceServiceRequest()
                    rs = req.resource_spans.add(resource=Resource(attributes=[kv("service.name", "checkout-api")]))
                    sp = rs.scope_spans.add().spans.add(trace_id=trace, span_id=self.span_id(), name="GET /healthz",
                                                        kind=2, start_time_unix_nano=(flush_ms - 2) * 1_000_000,
                                                        end_time_unix_nano=(flush_ms - 1) * 1_000_000)
                    sp.events.add(time_unix_nano=(flush_ms - 1) * 1_000_000, name="exception")
                    self.ignored += 1
                order = []
            elif role == "logs":
                req = self.logs(trace, group, extra)
                order = [r for g in self.groups(group) for r in g]
            else:
                req = self.spans(trace, group, extra)
                order = [r for g in self.groups(group) for r in g]
            key = trace.hex()
            part = zlib.crc32(key.encode()) % self.partitions
            self.messages[role] += 1
            self.evaluations += len(order)
            self.max_per_message = max(self.max_per_message, len(order))
            if order:
                times = [ts_ms(r) for r in order]
                self.max_spread_ms = max(self.max_spread_ms, max(times) - min(times))
            out.message(role, part, key, flush_ms, req, [accord_record(r, key) for r in order])


def accord_record(r, trace_hex):
    """What accord makes of the evaluation: the decision with the trace id as request id."""
    d = {k: v for k, v in r.items() if k != "ts"}
    d["request_id"] = trace_hex
    d["ts"] = ts_ms(r)
    return d


def hex_ids(v):
    if isinstance(v, dict):
        for k, x in v.items():
            if k in HEX_ID_FIELDS and isinstance(x, str):
                v[k] = base64.b64decode(x).hex()
            else:
                hex_ids(x)
    elif isinstance(v, list):
        for x in v:
            hex_ids(x)
    return v


def otlp_json(req):
    # OTLP/JSON: lowerCamelCase names, enums as integers, 64-bit integers as
    # strings, default values left out (as the Collector writes), ids in hex.
    d = json_format.MessageToDict(req, use_integers_for_enums=True)
    return json.dumps(hex_ids(d), separators=(",", ":"))


class Out:
    def __init__(self, outdir, roles, partitions):
        os.makedirs(outdir, exist_ok=True)
        for f in os.listdir(outdir):
            if re.match(r"^(logs|spans)[-.]", f):
                os.remove(os.path.join(outdir, f))
        self.produce = {r: open(os.path.join(outdir, "%s.produce.jsonl" % r), "w") for r in roles}
        self.otlp = {(r, p): open(os.path.join(outdir, "%s-p%d.otlp.jsonl" % (r, p)), "w")
                     for r in roles for p in range(partitions)}
        self.accord = {(r, p): open(os.path.join(outdir, "%s-p%d.accord.jsonl" % (r, p)), "w")
                       for r in roles for p in range(partitions)}

    def message(self, role, part, key, ts, req, records):
        payload = req.SerializeToString()
        self.produce[role].write(json.dumps({"partition": part, "key": key, "timestamp": ts,
                                             "value_b64": base64.b64encode(payload).decode()}) + "\n")
        self.otlp[(role, part)].write(otlp_json(req) + "\n")
        for r in records:
            self.accord[(role, part)].write(json.dumps(r, separators=(",", ":")) + "\n")

    def close(self):
        for f in [*self.produce.values(), *self.otlp.values(), *self.accord.values()]:
            f.close()


def encode(a):
    enc = Encoder(a.mode, a.partitions, a.seed)
    out = Out(a.outdir, ROLES[a.mode], a.partitions)
    decisions = 0
    batch, batch_end, emitted = [], None, None
    with open(a.decisions) as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            decisions += 1
            # Records come in emit order; a late record carries an early
            # event time, so the emit time is the newest event time so far.
            emitted = max(emitted or ts_ms(r), ts_ms(r))
            if batch_end is not None and emitted >= batch_end:
                enc.batch(batch, batch_end, out)
                batch = []
            if not batch:
                batch_end = (emitted // BATCH_MS + 1) * BATCH_MS
            batch.append(r)
    if batch:
        enc.batch(batch, batch_end, out)
    out.close()
    if enc.evaluations != decisions:
        sys.exit("encode: %d decisions but %d evaluations written" % (decisions, enc.evaluations))
    print(json.dumps({"decisions": decisions, "evaluations": enc.evaluations, "messages": enc.messages,
                      "ignored": enc.ignored, "messages_without_evaluations": enc.no_eval_messages,
                      "max_evaluations_per_message": enc.max_per_message,
                      "max_spread_ms_within_message": enc.max_spread_ms}))


LINE = re.compile(r'^(accord_requests_total|accord_records_late_total)\{([^}]*)\} ([0-9.eE+-]+)$')


def verdicts(a):
    with open(a.report) as fh:
        report = json.load(fh)
    got, late = {}, 0.0
    with open(a.live) as fh:
        for line in fh:
            m = LINE.match(line.strip())
            if not m:
                continue
            labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2)))
            if m.group(1) == "accord_records_late_total":
                late += float(m.group(3))
            elif float(m.group(3)):
                got[(labels["feature"], "%s/%s" % (labels["path"], labels["verdict"]))] = float(m.group(3))
    want = {(f, k): float(v) for f, kv_ in report["expected"].items() for k, v in kv_.items() if v}
    diffs = ["  %s %s live=%g report=%g" % (f, k, got.get((f, k), 0), want.get((f, k), 0))
             for f, k in sorted(set(got) | set(want)) if got.get((f, k), 0) != want.get((f, k), 0)]
    if late != report["late_records"]:
        diffs.append("  late records live=%g report=%d" % (late, report["late_records"]))
    print("requests live=%g report=%g; late live=%g report=%d; %d path/verdict series"
          % (sum(got.values()), sum(want.values()), late, report["late_records"], len(want)))
    if diffs:
        print("\n".join(diffs))
    sys.exit(1 if diffs else 0)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    e = sub.add_parser("encode")
    e.add_argument("decisions")
    e.add_argument("outdir")
    e.add_argument("--mode", choices=sorted(ROLES), required=True)
    e.add_argument("--partitions", type=int, default=4)
    e.add_argument("--seed", type=int, default=1)
    v = sub.add_parser("verdicts")
    v.add_argument("report")
    v.add_argument("live")
    a = ap.parse_args()
    encode(a) if a.cmd == "encode" else verdicts(a)


if __name__ == "__main__":
    main()
