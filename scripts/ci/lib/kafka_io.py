#!/usr/bin/env python3
"""Produces and reads back test records for the real-broker tests (confluent-kafka).

    python3 scripts/ci/lib/kafka_io.py produce BOOTSTRAP TOPIC RECORDS.jsonl [-X KEY=VALUE]...
    python3 scripts/ci/lib/kafka_io.py dump BOOTSTRAP TOPIC OUTDIR [--timeout S] [-X KEY=VALUE]...

produce: RECORDS.jsonl holds one object per line: `partition` (int), `key`,
`value` (the record, a string) or `value_b64` (binary, e.g. protobuf, in
base64) and `timestamp` (the Kafka message timestamp, epoch ms). Records go
out in file order, one in flight at a time per partition, so each partition
holds them in file order. Prints the count.

dump: reads the topic from the beginning (no group commit) and writes
OUTDIR/p<partition>.jsonl, each record's value on one line in offset order:
the broker's content, one file per partition, for `accord replay OUTDIR/p*`.
Stops once every partition reached the high watermark seen at the start and
nothing more came for 3 s (the high watermark can lag on some brokers).
Prints "records N; per partition {...}; duplicate values D".

-X passes librdkafka properties (TLS, SASL) to the client.
"""
import argparse
import base64
import json
import os
import sys
import time
from collections import Counter

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition


def props(pairs):
    out = {}
    for p in pairs or []:
        k, sep, v = p.partition("=")
        if not sep or not k:
            sys.exit("-X wants KEY=VALUE, got %r" % p)
        out[k.strip()] = v.strip()
    return out


def produce(args):
    errors = []

    def delivered(err, _msg):
        if err is not None:
            errors.append(str(err))

    conf = {"bootstrap.servers": args.bootstrap, "linger.ms": 5, "max.in.flight.requests.per.connection": 1,
            "message.timeout.ms": 60000}
    conf.update(props(args.X))
    p = Producer(conf)
    n = 0
    with open(args.records) as fh:
        for line in fh:
            if not line.strip():
                continue
            r = json.loads(line)
            value = base64.b64decode(r["value_b64"]) if "value_b64" in r else r["value"].encode()
            while True:
                try:
                    p.produce(args.topic, value=value, key=r["key"].encode(),
                              partition=int(r["partition"]), timestamp=int(r["timestamp"]), on_delivery=delivered)
                    break
                except BufferError:
                    p.poll(0.1)
            n += 1
            p.poll(0)
    left = p.flush(60)
    if left or errors:
        sys.exit("produce: %d records not delivered, errors: %s" % (left, errors[:3]))
    print("produced %d records to %s" % (n, args.topic))


def dump(args):
    conf = {"bootstrap.servers": args.bootstrap, "group.id": "kafka-io-dump-%d" % time.time_ns(),
            "enable.auto.commit": False, "auto.offset.reset": "earliest", "session.timeout.ms": 6000}
    conf.update(props(args.X))
    c = Consumer(conf)
    md = c.list_topics(args.topic, timeout=15)
    t = md.topics.get(args.topic)
    if t is None or t.error is not None or not t.partitions:
        sys.exit("dump: topic %s not found: %s" % (args.topic, t.error if t else "absent"))
    parts = sorted(t.partitions)
    ends = {p: c.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)[1] for p in parts}
    c.assign([TopicPartition(args.topic, p, 0) for p in parts])
    recs = {p: [] for p in parts}
    last = {p: -1 for p in parts}
    deadline = time.time() + args.timeout
    idle_since = time.time()
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            caught_up = all(last[p] + 1 >= ends[p] for p in parts)
            if caught_up and time.time() - idle_since > 3:
                break
            continue
        if m.error():
            raise KafkaException(m.error())
        idle_since = time.time()
        last[m.partition()] = m.offset()
        recs[m.partition()].append((m.offset(), (m.value() or b"").decode("utf-8", "replace")))
    c.close()
    os.makedirs(args.outdir, exist_ok=True)
    values = Counter()
    for p in parts:
        with open(os.path.join(args.outdir, "p%d.jsonl" % p), "w") as fh:
            for _, v in sorted(recs[p]):
                fh.write(v + "\n")
                values[(p, v)] += 1
    dup = sum(n - 1 for n in values.values() if n > 1)
    total = sum(len(r) for r in recs.values())
    print("records %d; per partition %s; high watermarks at start %s; duplicate values %d"
          % (total, {p: len(recs[p]) for p in parts}, ends, dup))
    if total == 0:
        sys.exit("dump: no record read from %s" % args.topic)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    pp = sub.add_parser("produce")
    pp.add_argument("bootstrap")
    pp.add_argument("topic")
    pp.add_argument("records")
    pp.add_argument("-X", action="append")
    dp = sub.add_parser("dump")
    dp.add_argument("bootstrap")
    dp.add_argument("topic")
    dp.add_argument("outdir")
    dp.add_argument("--timeout", type=float, default=60.0)
    dp.add_argument("-X", action="append")
    args = ap.parse_args()
    produce(args) if args.cmd == "produce" else dump(args)


if __name__ == "__main__":
    main()
