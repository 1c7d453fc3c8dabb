#!/usr/bin/env python3
"""Prints the HTTP status code of a GET, without a newline: 000 if no answer.

    python3 scripts/ci/lib/http_status.py URL

The fallback of scripts/ci/services.sh's _probe_http where curl is missing.
Proxies from the environment are ignored (every probed server is local);
timeout 3 s. Always exits 0.
"""
import sys
import urllib.error
import urllib.request


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        print(opener.open(sys.argv[1], timeout=3).status, end="")
    except urllib.error.HTTPError as e:
        print(e.code, end="")
    except Exception:
        print("000", end="")


if __name__ == "__main__":
    main()
