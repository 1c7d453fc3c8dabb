#!/usr/bin/env python3
"""High-watermark timeline of a topic, for test diagnostics.

Usage: hw_poll.py BOOTSTRAP TOPIC OUT SECS [INTERVAL=0.5]
Appends "epoch_ms p0=HW p1=HW ..." lines to OUT every INTERVAL seconds for
SECS seconds (a line "epoch_ms down" while the broker does not answer).
Shows when records reached the broker, e.g. how long producers took to
deliver what they buffered during an outage. (tansu's high watermark can
lag the records it holds by a few.)
"""
import sys
import time

from confluent_kafka import Consumer, TopicPartition


def main():
    bootstrap, topic, out = sys.argv[1:4]
    secs = float(sys.argv[4])
    interval = float(sys.argv[5]) if len(sys.argv) > 5 else 0.5
    c = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "hw-poll-%d" % time.time_ns(),
        "enable.auto.commit": False,
        "socket.connection.setup.timeout.ms": 2000,
        "reconnect.backoff.max.ms": 500,
        "log_level": 0,
    })
    end = time.time() + secs
    parts = None
    with open(out, "a", buffering=1) as f:
        while time.time() < end:
            t = int(time.time() * 1000)
            try:
                if parts is None:
                    md = c.list_topics(topic, timeout=2)
                    parts = sorted(md.topics[topic].partitions)
                hws = []
                for p in parts:
                    _, hi = c.get_watermark_offsets(TopicPartition(topic, p), timeout=2)
                    hws.append("p%d=%d" % (p, hi))
                f.write("%d %s\n" % (t, " ".join(hws)))
            except Exception as e:  # broker away: note it and go on
                f.write("%d down %s\n" % (t, type(e).__name__))
            time.sleep(interval)
    c.close()


if __name__ == "__main__":
    main()
