#!/usr/bin/env python3
"""A webhook receiver for Alertmanager notifications, for the live alerting test.

    python3 scripts/ci/lib/webhook_sink.py PORT FILE

Listens on 127.0.0.1:PORT until killed and appends every POST to FILE as
one JSON line {"path", "received_at" (epoch seconds), "body"} (the body
parsed as JSON, or as text if it is not JSON); answers 200 to every POST
and to GET (a readiness probe). FILE is created at start. Also imported:
notifications(FILE) reads the lines back.
"""
import http.server
import json
import os
import sys
import time


def notifications(path):
    """Every notification recorded in path, oldest first ([] if none)."""
    out = []
    if os.path.exists(path):
        with open(path) as fh:
            for line in fh:
                if line.strip():
                    out.append(json.loads(line))
    return out


def serve(port, path):
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self):
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            try:
                body = json.loads(raw)
            except ValueError:
                body = raw.decode("utf-8", "replace")
            with open(path, "a") as fh:
                fh.write(json.dumps({"path": self.path, "received_at": time.time(), "body": body}) + "\n")
                fh.flush()
            self.send_response(200)
            self.end_headers()

        def do_GET(self):  # readiness probe
            self.send_response(200)
            self.end_headers()

        def log_message(self, *a):
            pass

    open(path, "a").close()
    http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler).serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    serve(sys.argv[1], sys.argv[2])
