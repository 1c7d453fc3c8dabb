#!/usr/bin/env python3
"""Partition count of a topic, from `tansu topic list` JSON on stdin.

    tansu topic list --broker URL | python3 scripts/ci/lib/topic_partitions.py NAME [DEFAULT]

Prints the number of partitions of topic NAME; if there is no such topic,
prints DEFAULT when given, nothing otherwise. Used by scripts/ci/services.sh
(create_topic: an existing topic must have the requested count) and its
self-test.
"""
import json
import sys


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    name = sys.argv[1]
    for t in json.load(sys.stdin):
        if t.get("name") == name:
            print(len(t.get("partitions") or []))
            return
    if len(sys.argv) == 3:
        print(sys.argv[2])


if __name__ == "__main__":
    main()
