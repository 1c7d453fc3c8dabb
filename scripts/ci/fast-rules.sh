#!/usr/bin/env bash
# Test-only rule override for live end-to-end tests.
#
#   scripts/ci/fast-rules.sh IN.rules.yml OUT.rules.yml [DURATION]
#
# Copies IN to OUT with every alert's `for:` set to DURATION (default 10s) so
# a live Prometheus with a short evaluation_interval fires alerts within
# seconds instead of minutes. Range windows ([5m], [1h], ...), thresholds and
# traffic guards are left exactly as shipped: the live test exercises the real
# expressions, only the pending period is shortened. Never deploy OUT.
set -euo pipefail

if [[ $# -lt 2 || $# -gt 3 ]]; then
  echo "usage: $0 IN.rules.yml OUT.rules.yml [DURATION]" >&2
  exit 2
fi
in=$1 out=$2 dur=${3:-10s}
if [[ ! $dur =~ ^[0-9]+(ms|s|m|h)$ ]]; then
  echo "fast-rules: bad duration '$dur' (want e.g. 10s)" >&2
  exit 2
fi

sed -E "s/^([[:space:]]+)for:[[:space:]]*[0-9]+(ms|s|m|h|d|w|y)[[:space:]]*(#.*)?\$/\\1for: ${dur}/" "$in" >"$out"

# Every alert must have been rewritten (a `for:` in an unexpected shape would
# otherwise keep its production value silently).
alerts=$(grep -cE '^[[:space:]]*-[[:space:]]+alert:' "$out" || true)
fast=$(grep -cE "^[[:space:]]+for: ${dur}\$" "$out" || true)
other=$(grep -E '^[[:space:]]+for:' "$out" | grep -cvE "for: ${dur}\$" || true)
if [[ $alerts -ne $fast || $other -ne 0 ]]; then
  echo "fast-rules: $alerts alerts but $fast rewritten 'for:' lines ($other left unchanged) in $out" >&2
  exit 1
fi
echo "fast-rules: wrote $out ($alerts alerts, for: $dur)"
