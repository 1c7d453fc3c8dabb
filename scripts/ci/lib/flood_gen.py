#!/usr/bin/env python3
"""Flood generator for scripts/ci/flood-memory-test.sh.

Writes JSON-lines decision records to stdout:
  - FLOOD never-completing requests: one `frontend` record each for
    checkout_v2 (`flood-N`, new flow), so their joins never complete;
  - after every EVERY flood records, one complete valid request
    (`valid-N`): four records frontend/api/worker/analytics, all on v2,
    agreeing;
Event times start at BASE_MS and advance by 1 ms per STEP records, so the
watermark moves slowly (5.2 M records span ~104 s of event time) and flood
joins are closed by max_open_joins (eviction), not by a 30 s window.

Usage: flood_gen.py FLOOD EVERY STEP BASE_MS META_FILE [DELAY_SECS=0]
Sleeps DELAY_SECS first (so the reader's baseline memory can be sampled),
writes, then keeps stdout open DELAY_SECS more (so the reader's memory with
all input read, before end of input, can be sampled too). META_FILE gets a
JSON object: flood, valid_requests, valid_records, records, bytes,
start/end of writing (epoch seconds) and checkpoints {flood records
written: bytes written up to there} every 1,000,000 flood records. Output
is built in big chunks (one write per ~4 MB): over 1 M records/s on one
core, so accord's reading is the bottleneck.
"""
import json
import sys
import time


def main():
    flood, every, step, base_ms = (int(a) for a in sys.argv[1:5])
    meta_file = sys.argv[5]
    delay = float(sys.argv[6]) if len(sys.argv) > 6 else 0.0
    if delay > 0:
        time.sleep(delay)
    start = time.time()
    out = sys.stdout.buffer
    fl = '{"request_id":"flood-%d","layer":"frontend","feature":"checkout_v2","ts":%d,"selected_flow":"v2"}\n'
    valid = (
        '{"request_id":"valid-%(n)d","layer":"frontend","feature":"checkout_v2","ts":%(ts)d,'
        '"flag_state":true,"selected_flow":"v2","flags_revision":"r42"}\n'
        '{"request_id":"valid-%(n)d","layer":"api","feature":"checkout_v2","ts":%(ts)d,'
        '"flag_state":true,"api_capability":"v2","selected_flow":"v2","job_payload_version":2,"flags_revision":"r42"}\n'
        '{"request_id":"valid-%(n)d","layer":"worker","feature":"checkout_v2","ts":%(ts)d,'
        '"job_payload_version":2,"flags_revision":"r42"}\n'
        '{"request_id":"valid-%(n)d","layer":"analytics","feature":"checkout_v2","ts":%(ts)d,'
        '"selected_flow":"v2","flags_revision":"r42"}\n'
    )
    checkpoint_every = 1_000_000
    checkpoints = {}
    sent = 0  # records written so far (drives event time)
    nbytes = 0
    nvalid = 0
    i = 0
    parts = []
    while i < flood:
        n = min(every, flood - i)
        block = "".join([fl % (i + k, base_ms + (sent + k) // step) for k in range(n)])
        parts.append(block)
        nbytes += len(block)  # ASCII: characters == bytes
        i += n
        sent += n
        if i % checkpoint_every == 0 or i == flood:
            checkpoints[i] = nbytes
        if i < flood:  # a valid request after every block but the last
            v = valid % {"n": nvalid, "ts": base_ms + sent // step}
            parts.append(v)
            nbytes += len(v)
            nvalid += 1
            sent += 4
        if len(parts) >= 400:
            out.write("".join(parts).encode())
            parts = []
    if parts:
        out.write("".join(parts).encode())
    out.flush()
    end = time.time()
    meta = {
        "flood": flood,
        "valid_requests": nvalid,
        "valid_records": nvalid * 4,
        "records": sent,
        "bytes": nbytes,
        "start": start,
        "end": end,
        "checkpoints": checkpoints,
    }
    with open(meta_file, "w") as f:
        json.dump(meta, f)
    if delay > 0:
        time.sleep(delay)
    out.close()


if __name__ == "__main__":
    try:
        main()
    except BrokenPipeError:
        sys.exit(1)
