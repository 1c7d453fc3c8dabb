#!/usr/bin/env python3
"""A decision stream with bad clocks, for the live-vs-replay test on a real broker.

    python3 scripts/ci/lib/clock_stream.py OUT.jsonl PARTITIONS REQUESTS_PER_PARTITION START_MS

Writes one object per line for kafka_io.py produce: `partition`, `key`,
`timestamp` (the Kafka message timestamp: the record's intended event time)
and `value` (the record). Requests are checkout_v2 (frontend, api, worker,
analytics), 200 ms apart in event time from START_MS, each in one partition.
Every 5th request has a layer whose client stamps `ts` in microseconds,
every 7th a layer whose client clock is an hour ahead, every 11th a layer
that sends no `ts`; a few requests are late stragglers. Prints the counts.

How the stream makes `run` and `replay` agree. A `ts` more than
max_clock_skew ahead of the record's reference time counts as absent, and
the record then takes another time:
  - live, the reference is the message timestamp, and the record takes it;
  - in replay, the reference is the wall clock when the replay started, and
    the record takes the event time of the record before it in its file
    (one file per partition, in offset order).
So (1) every message timestamp equals its record's intended event time, and
START_MS lies within the last hour, more than a minute ago: a ts an hour
ahead (or in microseconds) is then more than a minute ahead of both the
message timestamp and the wall clock, and a good ts is ahead of neither;
and (2) a record with a bad or no `ts` always directly follows, in its
partition, a record with the same event time (another layer of the same
request, stamped at the same instant), so "the previous record's time" and
"the message timestamp" are the same number. No partition starts with such
a record (the head-of-file rule of replay would differ).
"""
import json
import sys

LAYERS = ("frontend", "api", "worker", "analytics")
HOUR_MS = 3_600_000


def record(rid, layer, ts, path_new):
    r = {"request_id": rid, "layer": layer, "feature": "checkout_v2", "flags_revision": "r1"}
    if ts is not None:
        r["ts"] = ts
    r["flag_state"] = path_new
    r["api_capability"] = "v2" if path_new else "v1"
    r["selected_flow"] = "v2" if path_new else "v1"
    r["job_payload_version"] = 2 if path_new else 1
    return r


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    out, parts, per, start = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    lines = []
    stats = {"records": 0, "requests": 0, "micro_ts": 0, "hour_ahead": 0, "no_ts": 0, "stragglers": 0}
    for p in range(parts):
        stragglers = []
        for i in range(per):
            n = p * per + i
            rid = "clock-%d-%d" % (p, i)
            t = start + i * 200 + p
            new = n % 2 == 0
            # The layer whose clock is bad follows another layer stamped at
            # the same instant t (never the request's first record).
            bad = {}
            if i > 0 and n % 5 == 0:
                bad[LAYERS[1 + n % 3]] = "micro"
            elif i > 0 and n % 7 == 0:
                bad[LAYERS[1 + n % 3]] = "hour"
            elif i > 0 and n % 11 == 0:
                bad[LAYERS[1 + n % 3]] = "none"
            for layer in LAYERS:
                if i > 0 and n % 13 == 0 and layer == "analytics":
                    # Arrives 20 s of event time later in the partition,
                    # after its join closed: late in both.
                    stragglers.append((i + 100, rid, t, new))
                    continue
                kind = bad.get(layer)
                if kind == "micro":
                    ts = t * 1000
                elif kind == "hour":
                    ts = t + HOUR_MS
                elif kind == "none":
                    ts = None
                else:
                    ts = t
                if kind:
                    stats["micro_ts" if kind == "micro" else "hour_ahead" if kind == "hour" else "no_ts"] += 1
                lines.append({"partition": p, "key": rid, "timestamp": t, "value": record(rid, layer, ts, new)})
                stats["records"] += 1
            stats["requests"] += 1
            while stragglers and stragglers[0][0] <= i:
                _, srid, st, snew = stragglers.pop(0)
                lines.append({"partition": p, "key": srid, "timestamp": st,
                              "value": record(srid, "analytics", st, snew)})
                stats["records"] += 1
                stats["stragglers"] += 1
    with open(out, "w") as fh:
        for line in lines:
            line["value"] = json.dumps(line["value"], separators=(",", ":"))
            fh.write(json.dumps(line) + "\n")
    print(json.dumps(stats))


if __name__ == "__main__":
    main()
