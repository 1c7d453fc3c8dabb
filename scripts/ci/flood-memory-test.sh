#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# Flood memory test: a flood of 5,000,000 never-completing
# request ids with max_open_joins = 200000. Resident memory stays below a
# stated bound and flat once the cap is reached, and accord keeps judging
# the valid traffic interleaved with the flood.
#
#   scripts/ci/lib/flood_gen.py | accord replay - --config <flood catalog> --format summary
#
# The generator writes 5 M single-record (frontend only) checkout_v2
# requests `flood-N`, and after every 100 of them one complete agreeing
# request `valid-N` (frontend/api/worker/analytics, all v2): 49,999 valid
# requests, 5,199,996 records. Event times advance 1 ms per 50 records, so
# the 200,000 open joins span ~4 s of event time, far inside the 30 s window:
# flood joins leave by eviction (oldest start first), not by window.
# While accord runs, VmRSS/VmHWM are sampled from /proc every 0.5 s, with
# the bytes accord has read (/proc/PID/io rchar), so RSS is known after 1 M,
# 3 M and 5 M flood records.
#
# Checks:
#   - accord exits 0 within FLOOD_MAX_SECS (default 180 s);
#   - peak RSS (VmHWM) < FLOOD_MAX_RSS_MIB (default 200 MiB). Justification,
#     from measurement (accord 0.1.0, 2 cores, Debian 12): RSS plateaus at
#     ~101 MiB from ~0.9 M flood records on, ~5.5 MiB before any input, so
#     ~500 bytes per open join. That figure carries, per open join: the join
#     slot (~80 B) with its records Vec (4 x 40 B facts, sized for the
#     expected layers) and request id, its index entry and expiry-heap entry,
#     plus one remembered closed key (max_closed_keys defaults to
#     max_open_joins: 200,000 tombstones with their hash map and expiry heap)
#     and allocator/hash-table slack (power-of-two capacities). 200 MiB is 2x
#     the measured plateau; unbounded growth would need ~2.4 GiB for 5 M
#     joins (5 M x 500 B). (The plateau was measured with the replay engine's
#     arrival-order queue trimmed; a queue that keeps 24 B per join ever
#     opened in `replay` adds ~90 MiB over this flood, which the flatness
#     check below reports.)
#   - flat: RSS after 5 M (and 3 M) flood records minus RSS after 1 M is
#     below FLOOD_FLAT_MIB (default 16 MiB, i.e. < ~4 bytes per further flood
#     record): memory does not grow with the number of ids once the cap is
#     reached;
#   - the summary: checkout_v2 new/agree == valid requests sent, new/incomplete
#     == flood requests (every flood join judged incomplete: evicted, or
#     closed at end of input), requests == flood + valid, records == all
#     records sent, nothing late or rejected.
#
#   bash scripts/ci/flood-memory-test.sh     (from the repo root, after
#                                             `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/flood-memory/
# (catalog, summary.json, rss-samples.txt, generator meta, accord stderr,
# figures). Knobs (environment): ACCORD_BIN, FLOOD_N (default 5000000),
# FLOOD_MAX_SECS, FLOOD_MAX_RSS_MIB, FLOOD_FLAT_MIB.
# Prints one PASS/FAIL line per check, the figures, and "flood-memory: N
# passed, M failed" as the last line. The figures and checks are computed by
# scripts/ci/lib/flood_analysis.py.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CI_NAME=flood-memory
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh

SECONDS=0
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
FLOOD="${FLOOD_N:-5000000}"
EVERY=100        # flood records between two valid requests
STEP=50          # records per 1 ms of event time
MAX_OPEN=200000
MAX_SECS="${FLOOD_MAX_SECS:-180}"
MAX_RSS_MIB="${FLOOD_MAX_RSS_MIB:-200}"
FLAT_MIB="${FLOOD_FLAT_MIB:-16}"

ART="$ACCORD_CI_ARTIFACTS/flood-memory"
rm -rf "$ART"
mkdir -p "$ART"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/accord-flood.XXXXXX")"

CI_FIGURES="$ART/figures.txt"

GEN_PID=""
ACC_PID=""
cleanup() {
    local rc=$?
    set +e
    results_on_exit "$rc"
    stop_pid "$GEN_PID" 5
    stop_pid "$ACC_PID" 5
    stop_all_services
    rm -rf "$WORK"
    exit "$CI_EXIT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

[[ -x "$BIN" ]] || { echo "no $BIN: run 'cargo build --release' first" >&2; exit 2; }
PY="$(ci_python)" || { apt_install python3; PY=python3; }
[[ -r /proc/self/status ]] || { echo "needs /proc" >&2; exit 2; }

# Flood catalog: accord.toml with max_open_joins = 200000 (window 30s,
# allowed_lateness 5s and max_closed_keys' default kept).
CATALOG="$ART/catalog.toml"
"$PY" "$CI_LIB/test_catalog.py" max-open-joins "$ROOT/accord.toml" "$CATALOG" "$MAX_OPEN"
"$BIN" check-config "$CATALOG"

# ------------------------------------------------------------------- run --
mkfifo "$WORK/in"
log "generator: $FLOOD flood ids, a valid request every $EVERY, accord replay with max_open_joins=$MAX_OPEN"
"$PY" "$CI_LIB/flood_gen.py" "$FLOOD" "$EVERY" "$STEP" 1790000000000 "$ART/generator-meta.json" 1 \
    >"$WORK/in" 2>"$ART/generator.err" &
GEN_PID=$!
"$BIN" replay - --config "$CATALOG" --format summary <"$WORK/in" >"$ART/summary.json" 2>"$ART/accord.err" &
ACC_PID=$!
T0=$(date +%s%3N)

# samples: ms since start, VmRSS kB, VmHWM kB, bytes read by accord
: >"$ART/rss-samples.txt"
deadline=$((T0 + MAX_SECS * 1000))
timed_out=""
while pid_alive "$ACC_PID"; do
    now=$(date +%s%3N)
    if ((now > deadline)); then timed_out=1; break; fi
    rss=$(awk '/^VmRSS:/ { print $2 }' "/proc/$ACC_PID/status" 2>/dev/null || true)
    hwm=$(awk '/^VmHWM:/ { print $2 }' "/proc/$ACC_PID/status" 2>/dev/null || true)
    rchar=$(awk '/^rchar:/ { print $2 }' "/proc/$ACC_PID/io" 2>/dev/null || true)
    [[ -n "$rss" && -n "$rchar" ]] && echo "$((now - T0)) $rss $hwm $rchar" >>"$ART/rss-samples.txt"
    sleep 0.5
done
if [[ -n "$timed_out" ]]; then
    fail "accord replay still running after ${MAX_SECS}s"
    stop_pid "$GEN_PID" 5; GEN_PID=""
    stop_pid "$ACC_PID" 5; ACC_PID=""
    results_summary
    exit 1
fi
acc_rc=0
wait "$ACC_PID" || acc_rc=$?
ACC_PID=""
T1=$(date +%s%3N)
gen_rc=0
wait "$GEN_PID" || gen_rc=$?
GEN_PID=""
if ((acc_rc == 0 && gen_rc == 0)); then
    pass "generator and accord replay finished in $(((T1 - T0) / 1000)).$(((T1 - T0) % 1000 / 100))s (bound ${MAX_SECS}s)"
else
    fail "accord replay exit $acc_rc, generator exit $gen_rc"
    tail -5 "$ART/accord.err" "$ART/generator.err"
    results_summary
    exit 1
fi

# --------------------------------------------------------------- figures --
# flood_analysis.py: RSS at the checkpoints, peak, bytes per open join,
# throughput, and the summary checks. Prints "fig|name|value" and
# "check|0/1|message".
"$PY" "$CI_LIB/flood_analysis.py" "$ART/rss-samples.txt" "$ART/generator-meta.json" "$ART/summary.json" \
    "$T0" "$T1" "$MAX_OPEN" "$MAX_RSS_MIB" "$FLAT_MIB" >"$WORK/analysis.txt" 2>"$ART/analysis.err" \
    || fail "analysis failed: $(tail -1 "$ART/analysis.err")"
while IFS='|' read -r kind a b; do
    case "$kind" in
        fig) fig "$a" "$b" ;;
        check) if [[ "$a" == 1 ]]; then pass "$b"; else fail "$b"; fi ;;
    esac
done <"$WORK/analysis.txt"

summary_extra() {
    echo "figures ($CI_FIGURES):"
    cat "$CI_FIGURES"
}
results_summary
results_ok
