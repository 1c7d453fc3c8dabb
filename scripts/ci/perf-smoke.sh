#!/usr/bin/env bash
# A short, bounded throughput run for CI: prints the figures of
# docs/performance.md on a small stream, so a regression shows up in the log.
# It never asserts timings (CI machines are shared and noisy); it fails only
# if the tool itself fails or overruns its time limit.
#
#   scripts/ci/perf-smoke.sh [RECORDS] [OPEN_JOINS]
#
# Defaults: 200000 records (replay, the bare loop, accord run at 1 and 2
# judging threads, the statistics topic, two topics against one, memory per
# instance at 4 and 200 partitions; 4 partitions at least) and 200000 open
# joins for the memory figure. Verdict latency (l) is left out: it needs
# minutes of paced load. Output also goes to
# $ACCORD_CI_ARTIFACTS/perf-smoke.txt when that is set.
set -euo pipefail
cd "$(dirname "$0")/../.."

records=${1:-200000}
open_joins=${2:-200000}
for n in "$records" "$open_joins"; do
  if [[ ! $n =~ ^[0-9]+$ ]]; then
    echo "perf-smoke: '$n' is not a count" >&2
    exit 2
  fi
done

cargo build --release --locked --example throughput
out=${ACCORD_CI_ARTIFACTS:-$(mktemp -d)}/perf-smoke.txt
mkdir -p "$(dirname "$out")"
timeout 600 ./target/release/examples/throughput \
  --records "$records" --open-joins "$open_joins" --partitions 4 --repeat 2 --only abcdstim \
  --judge-threads 1,2 --instance-partitions 4,200 | tee "$out"
echo "perf-smoke: figures only, no assertion (see docs/performance.md); log in $out"
