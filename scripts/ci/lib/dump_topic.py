#!/usr/bin/env python3
"""Dumps a Kafka topic for test diagnostics (confluent-kafka, librdkafka 2.10+).

Usage: dump_topic.py BOOTSTRAP TOPIC OUT.jsonl [TIMEOUT_SECS=30]
Writes one JSON object per record: partition, offset, timestamp (ms),
key and value (decoded as UTF-8), in partition/offset order, and prints a
summary: records per partition, and duplicates (same partition, same
value) if any. Reads from the beginning without a consumer group commit.
"""
import json
import sys
import time
from collections import Counter

from confluent_kafka import Consumer, TopicPartition


def main():
    bootstrap, topic, out = sys.argv[1:4]
    timeout = float(sys.argv[4]) if len(sys.argv) > 4 else 30.0
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "dump-%d" % time.time_ns(),
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "session.timeout.ms": 6000,
    })
    md = c.list_topics(topic, timeout=10)
    parts = sorted(md.topics[topic].partitions)
    ends = {}
    for p in parts:
        lo, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
        ends[p] = hi
    c.assign([TopicPartition(topic, p, 0) for p in parts])
    recs = []
    last = {p: -1 for p in parts}
    deadline = time.time() + timeout
    idle_since = time.time()
    while time.time() < deadline:
        m = c.poll(0.5)
        if m is None:
            # Watermarks may lag the records (tansu): once every partition
            # reached its high watermark, stop after 3 s without records.
            # Before that, keep reading until the deadline: a broker that
            # reads its storage back after a restart (tansu on S3) can
            # pause longer than that between fetches.
            caught_up = all(last[p] + 1 >= ends[p] for p in parts)
            if caught_up and time.time() - idle_since > 3:
                break
            continue
        if m.error():
            continue
        idle_since = time.time()
        last[m.partition()] = m.offset()
        recs.append({
            "partition": m.partition(),
            "offset": m.offset(),
            "timestamp": m.timestamp()[1],
            "key": (m.key() or b"").decode("utf-8", "replace"),
            "value": (m.value() or b"").decode("utf-8", "replace"),
        })
    c.close()
    recs.sort(key=lambda r: (r["partition"], r["offset"]))
    with open(out, "w") as f:
        for r in recs:
            f.write(json.dumps(r) + "\n")
    per = Counter(r["partition"] for r in recs)
    dups = Counter((r["partition"], r["value"]) for r in recs)
    ndup = sum(n - 1 for n in dups.values() if n > 1)
    gaps = 0
    for p in parts:
        offs = [r["offset"] for r in recs if r["partition"] == p]
        if offs:
            gaps += (offs[-1] - offs[0] + 1) - len(offs)
    print("topic %s: %d records; per partition %s; high watermarks %s; duplicate values %d; offset gaps %d"
          % (topic, len(recs), dict(sorted(per.items())), ends, ndup, gaps))


if __name__ == "__main__":
    main()
