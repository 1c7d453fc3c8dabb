#!/usr/bin/env python3
"""Splits a topic dump into one JSON-lines file per partition.

    python3 scripts/ci/lib/split_dump.py DUMP.jsonl DIR

DUMP.jsonl is dump_topic.py's output (one object per record, with
`partition` and `value`). Writes DIR/p<partition>.jsonl holding each
record's value, one per line, in dump order (dump_topic.py writes
partition/offset order), for `accord replay DIR/p*.jsonl`: the broker's
content judged offline, partition by partition.
"""
import json
import sys


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    files = {}
    try:
        with open(sys.argv[1]) as dump:
            for line in dump:
                r = json.loads(line)
                p = r["partition"]
                if p not in files:
                    files[p] = open("%s/p%d.jsonl" % (sys.argv[2], p), "w")
                files[p].write(r["value"] + "\n")
    finally:
        for f in files.values():
            f.close()


if __name__ == "__main__":
    main()
