#!/usr/bin/env python3
"""Test catalogs derived from the shipped accord.toml, for the live tests.

    python3 scripts/ci/lib/test_catalog.py short-windows IN OUT
    python3 scripts/ci/lib/test_catalog.py alerts-live IN OUT EXPIRES_CHECKOUT EXPIRES_OTHERS
    python3 scripts/ci/lib/test_catalog.py max-open-joins IN OUT N

short-windows (broker outage test): the default window 30s -> 5s and
search.ranking's 10s -> 4s, allowed_lateness 5s kept, so verdicts come
within seconds.
alerts-live (live alerting test; IN already has the [monitor] window and
allowed_lateness shortened by the caller): search.ranking's window -> 4s,
any other per-feature window -> 5s; checkout_v2's planned expiry date ->
EXPIRES_CHECKOUT, every other feature's -> EXPIRES_OTHERS (YYYY-MM-DD).
max-open-joins (flood memory test): max_open_joins -> N; the 30s window and
the default max_closed_keys are kept.
Each variant fails (assertion, exit 1) when accord.toml no longer has the
shape it rewrites, so a change there cannot silently make a test catalog
that tests something else. Callers validate OUT with `accord check-config`.
"""
import re
import sys


def short_windows(src):
    out = re.sub(r'(?m)^window = "30s"', 'window = "5s"', src, count=1)
    out = re.sub(r'(?m)^allowed_lateness = "5s"', 'allowed_lateness = "5s"', out, count=1)
    out = re.sub(r'(?m)^window = "10s"', 'window = "4s"', out, count=1)
    assert out.count('window = "5s"') == 1 and out.count('window = "4s"') == 1 and 'allowed_lateness = "5s"' in out, out
    return out


def alerts_live(text, exp_c, exp_s):
    head, *feats = re.split(r"(?m)^(?=\[\[feature\]\])", text)
    out = [head]
    for f in feats:
        key = re.search(r'(?m)^key = "([^"]+)"', f).group(1)
        if key == "search.ranking":
            f = re.sub(r'(?m)^window = "[^"]*"', 'window = "4s"', f)
        elif re.search(r'(?m)^window = ', f):
            f = re.sub(r'(?m)^window = "[^"]*"', 'window = "5s"', f)
        f = re.sub(r'(?m)^expires = "[^"]*"', f'expires = "{exp_c if key == "checkout_v2" else exp_s}"', f)
        out.append(f)
    return "".join(out)


def max_open_joins(src, n):
    out, count = re.subn(r'(?m)^max_open_joins = \d+', 'max_open_joins = ' + n, src)
    assert count == 1 and 'window = "30s"' in out and 'max_closed_keys' not in out, out
    return out


VARIANTS = {"short-windows": short_windows, "alerts-live": alerts_live, "max-open-joins": max_open_joins}
ARGS = {"short-windows": 0, "alerts-live": 2, "max-open-joins": 1}


def main():
    if len(sys.argv) < 4 or sys.argv[1] not in VARIANTS or len(sys.argv) != 4 + ARGS[sys.argv[1]]:
        sys.exit(__doc__)
    variant, src, dst, extra = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
    with open(src) as fh:
        text = fh.read()
    out = VARIANTS[variant](text, *extra)
    with open(dst, "w") as fh:
        fh.write(out)


if __name__ == "__main__":
    main()
