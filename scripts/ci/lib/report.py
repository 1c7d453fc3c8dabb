"""Problem reporting for the one-shot checks run by scripts/ci/ops-static.sh.

Each check module runs one check per process: it calls fail() for every
problem found (printed at once, indented) and done() at the end, which
prints "<check>: ok" and returns, or "<check>: N problem(s)" and exits 1.
"""
import sys

failures = []


def fail(msg):
    failures.append(msg)
    print("  x " + msg)


def done(what):
    if failures:
        print(f"{what}: {len(failures)} problem(s)")
        sys.exit(1)
    print(f"{what}: ok")
