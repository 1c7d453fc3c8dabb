#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# A healthy demo is quiet: 20 s of `accord demo` (in-process Kafka, the
# simulated rollout, the monitor on 127.0.0.1) print no WARN or ERROR line,
# at the default log level, while every verdict is being produced. A
# warning in a healthy run teaches operators to ignore warnings.
#
#   bash scripts/ci/demo-quiet-test.sh   (from the repo root, after
#                                         `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/demo-quiet/ (the
# demo's output, /metrics at the end). Knobs: ACCORD_BIN, DEMO_SECS
# (default 20).
set -euo pipefail
# Bounded as a whole, whoever runs it (.ci/run runs every *-test.sh as is).
if [[ -z "${KL_BOUNDED:-}" ]]; then
    KL_BOUNDED=1 exec timeout -k 30 180 bash "$0" "$@"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh
# shellcheck source=scripts/ci/lib/kafka_live.sh
source scripts/ci/lib/kafka_live.sh

SECONDS=0
SECS="${DEMO_SECS:-20}"
kl_init demo-quiet

PORT="$(pick_free_port)"
# The default log level, as a user runs it (ACCORD_LOG unset).
kl_spawn demo env -u ACCORD_LOG NO_COLOR=1 "$KL_BIN" demo --listen "127.0.0.1:$PORT"
t0=$SECONDS
if kl_wait_ready "$PORT" 30; then
    kl_pass "demo ready (/readyz 200) after $((SECONDS - t0))s"
else
    kl_fail "demo not ready within 30 s"
fi
sleep $((t0 + SECS > SECONDS ? t0 + SECS - SECONDS : 0))
kl_metrics "$PORT" >"$KL_ART/metrics.txt" || true
alive=1
kl_alive "${KL_PID[demo]}" || alive=""
rc=0
kl_stop demo 15 || rc=$?
if [[ -n "$alive" ]] && ((rc == 0)); then
    kl_pass "demo ran ${SECS}s and stopped cleanly on SIGTERM"
else
    kl_fail "demo exited early or uncleanly (alive at ${SECS}s: ${alive:-no}, exit $rc)"
fi
verdicts=""
for v in agree degraded incomplete diverge; do
    grep -q -E "^accord_requests_total\{.*verdict=\"$v\"\} [1-9]" "$KL_ART/metrics.txt" && verdicts="$verdicts$v "
done
if [[ "$verdicts" == *agree* && "$verdicts" == *diverge* && "$verdicts" == *degraded* && "$verdicts" == *incomplete* ]]; then
    kl_pass "the demo judged traffic meanwhile: verdicts $verdicts"
else
    kl_fail "the demo did not produce every verdict within ${SECS}s: ${verdicts:-none}"
fi
lines="$(kl_plain_log demo | wc -l)"
if noisy="$(kl_plain_log demo | grep -E '(^|[[:space:]])(WARN|ERROR)[[:space:]]')"; then
    kl_fail "the demo printed $(wc -l <<<"$noisy") WARN/ERROR lines in ${SECS}s (of $lines lines); first ones:"
    head -5 <<<"$noisy" | cut -c1-240
else
    kl_pass "no WARN or ERROR line in ${SECS}s of accord demo ($lines lines of output)"
fi
kl_finish
