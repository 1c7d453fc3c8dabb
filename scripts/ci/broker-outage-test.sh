#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# Broker outage test: a broker stop/start during consumption, and all
# records are judged once the broker is back -- accord logs the problem,
# reports not-ready, resumes, loses nothing, and does not spin a core while
# waiting. Against a REAL broker, everything on 127.0.0.1:
#
#   accord simulate (mixed, 200 records/s, 50 s) -> tansu (S3 storage on a
#   local moto server, so topics, records and committed offsets survive the
#   broker's restart) -> accord run (4-partition topic, short windows)
#
#   ~10 s into the traffic the broker is stopped (SIGTERM) for 30 s, then
#   started again on the same port with the same storage.
#
# Checks:
#   - during the outage /readyz answers 503 (within 15 s of the stop), accord
#     stays alive, and its CPU over the outage (utime+stime from
#     /proc/PID/stat) is below 0.2 cores; the figure is printed;
#   - accord's log names the broker problem;
#   - after the restart /readyz is 200 again;
#   - once `simulate` has finished: accord_requests_total per (feature, path,
#     verdict) equals the simulator's report.json `expected` map exactly,
#     late records equal its `late_records`, accord_open_joins is 0;
#   - accord's live counters equal `accord replay` of the records the broker
#     actually holds (topic dumped after the run, one file per partition):
#     requests, late and valid records -- nothing lost, nothing counted
#     twice. This separates accord from the producer side: the simulator's
#     producer is not idempotent, so retries across the stop may duplicate a
#     few records in the topic (idempotence on tansu lost acked records
#     instead); the dump summary and "broker content vs report" show that.
# On a failure a precise diff is printed, plus a diagnosis from the
# timelines in the artifacts (readyz, metrics with per-partition watermark
# delay, the topic's high watermarks) and the log.
#
# accord runs with --handover-topic: the 30 s outage outlives the consumer
# session (6 s), so librdkafka revokes the assignment and accord re-joins
# after the restart; tansu drops offset-commit metadata, so
# without the handover topic the records between the committed offset and
# the last processed one are judged twice (OUTAGE_HANDOVER_TOPIC=0 shows it).
#
#   bash scripts/ci/broker-outage-test.sh       (from the repo root, after
#                                                `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/broker-outage/
# (accord log, simulate log and report, /metrics snapshots, readyz, metrics
# and high-watermark timelines, topic dump and its replay, outage log lines,
# figures), service logs under .../services/.
# Knobs (environment): ACCORD_BIN (default target/release/accord),
# OUTAGE_SECS (default 30), OUTAGE_AFTER_SECS (default 10), OUTAGE_RATE
# (records/s, default 200), OUTAGE_DURATION_SECS (simulate, default 50),
# OUTAGE_MAX_CORES (default 0.2), OUTAGE_HANDOVER_TOPIC (default 1: pass
# --handover-topic to accord; 0: do not).
# Prints one PASS/FAIL line per check, the figures, and "broker-outage: N
# passed, M failed" as the last line. The Python helpers are
# scripts/ci/lib/{test_catalog,hw_poll,dump_topic,split_dump,metrics_compare,
# outage_diagnosis}.py.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CI_NAME=broker-outage
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh

SECONDS=0
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
# The high-watermark poll and the topic dump read the broker with the
# Python Kafka client (lib/hw_poll.py, lib/dump_topic.py): installed here,
# not left to the scripts that run later and install it too.
"$(ci_python)" -c 'import confluent_kafka' 2>/dev/null \
    || pip_install "${ACCORD_CONFLUENT_KAFKA_SPEC:-confluent-kafka>=2.10,<3}" \
    || { echo "broker-outage: could not install confluent-kafka" >&2; exit 2; }
OUTAGE_SECS="${OUTAGE_SECS:-30}"
OUTAGE_AFTER="${OUTAGE_AFTER_SECS:-10}"
RATE="${OUTAGE_RATE:-200}"
DURATION="${OUTAGE_DURATION_SECS:-50}"
MAX_CORES="${OUTAGE_MAX_CORES:-0.2}"
HZ="$(getconf CLK_TCK)"

ART="$ACCORD_CI_ARTIFACTS/broker-outage"
rm -rf "$ART"
mkdir -p "$ART"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/accord-outage.XXXXXX")"

CI_FIGURES="$ART/figures.txt"
summary_extra() {
    echo "figures ($CI_FIGURES):"
    cat "$CI_FIGURES"
}
finish() {
    results_summary
    results_ok && exit 0
    exit 1
}

# ------------------------------------------------------------- processes --
# Our own processes (accord, simulate) are stopped before the services
# (broker, S3 stub), so accord's shutdown commit still reaches the broker.
ACCORD_PID=""
SIM_PID=""
POLL_PID=""
HW_PID=""
cleanup() {
    local rc=$?
    set +e
    results_on_exit "$rc"
    stop_pid "$POLL_PID" 2
    stop_pid "$HW_PID" 2
    stop_pid "$SIM_PID" 5
    stop_pid "$ACCORD_PID" 15
    stop_all_services
    [[ -z "${TPORT:-}" ]] || cp -f "$ACCORD_CI_ARTIFACTS/services/tansu-$TPORT.log" "$ART/" 2>/dev/null
    rm -rf "$WORK"
    exit "$CI_EXIT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# cpu_ticks PID: utime + stime in clock ticks (fields 14 and 15 of stat).
cpu_ticks() {
    local stat
    stat="$(cat "/proc/$1/stat")" || return 1
    stat="${stat##*) }" # fields from 3 on (comm may hold spaces)
    # shellcheck disable=SC2086
    set -- $stat
    echo $((${12} + ${13}))
}

metrics() { curl -s --noproxy '*' --max-time 5 "http://127.0.0.1:$APORT/metrics"; }

# ------------------------------------------------------------------ setup --
[[ -x "$BIN" ]] || { echo "no $BIN: run 'cargo build --release' first" >&2; exit 2; }
command -v curl >/dev/null || apt_install curl
install_tansu
install_s3_stub

# Test catalog: accord.toml with short windows so verdicts come in seconds.
CATALOG="$ART/catalog.toml"
ci_py test_catalog short-windows "$ROOT/accord.toml" "$CATALOG"
"$BIN" check-config "$CATALOG"

TPORT="$(pick_free_port)"
APORT="$(pick_free_port)"
DATA="$WORK/tansu-data"
TOPIC="outage-$$-$RANDOM"
GROUP="accord-outage-$$-$RANDOM"
start_tansu_persistent "$TPORT" "$DATA"
create_topic "$TOPIC" 4 "$TPORT"
EXTRA=()
if [[ "${OUTAGE_HANDOVER_TOPIC:-1}" == 1 ]]; then
    create_topic "$TOPIC-handover" 1 "$TPORT"
    EXTRA+=(--handover-topic "$TOPIC-handover")
fi
fig "broker" "tansu 127.0.0.1:$TPORT (s3 storage, $(tr '\n' ' ' <"$DATA/tansu-storage.txt"))"
fig "topic / group" "$TOPIC (4 partitions) / $GROUP"

log "starting accord run"
NO_COLOR=1 ACCORD_LOG=info "$BIN" run --config "$CATALOG" --brokers "127.0.0.1:$TPORT" --topic "$TOPIC" \
    --group "$GROUP" --listen "127.0.0.1:$APORT" "${EXTRA[@]}" >"$ART/accord.log" 2>&1 &
ACCORD_PID=$!
if wait_http "http://127.0.0.1:$APORT/readyz" 60 200; then
    pass "accord ready (/readyz 200) after ${SECONDS}s"
else
    fail "accord not ready within 60 s"; tail -20 "$ART/accord.log"; finish
fi

# /readyz timeline, every 0.5 s, for the whole test: "epoch_ms status".
# Also a metrics timeline every second: epoch_ms, valid records, late
# records, closed requests, open joins.
(
    n=0
    while :; do
        printf '%s %s\n' "$(date +%s%3N)" "$(_probe_http "http://127.0.0.1:$APORT/readyz")" >>"$ART/readyz-timeline.txt"
        if ((n++ % 2 == 0)); then
            metrics 2>/dev/null | awk -v t="$(date +%s%3N)" '
                /^accord_records_total\{/ { r += $2 } /^accord_records_late_total\{/ { l += $2 }
                /^accord_requests_total\{/ { q += $2 } /^accord_open_joins / { o = $2 }
                /^accord_watermark_delay_seconds\{/ { match($0, /partition="[0-9]+"/); w = w " p" substr($0, RSTART + 11, RLENGTH - 12) "=" $2 }
                END { print t, "records=" r + 0, "late=" l + 0, "requests=" q + 0, "open_joins=" o + 0, "wm_delay" w }' \
                >>"$ART/metrics-timeline.txt"
        fi
        sleep 0.5
    done
) 2>/dev/null &
POLL_PID=$!

log "starting accord simulate: mixed, $RATE records/s for ${DURATION}s"
"$BIN" simulate --brokers "127.0.0.1:$TPORT" --topic "$TOPIC" --rate "$RATE" --duration "${DURATION}s" \
    --scenario mixed --config "$CATALOG" --report "$ART/report.json" \
    >"$ART/simulate.log" 2>&1 &
SIM_PID=$!
SIM_T0=$(now_ms)
# The topic's high watermarks every 0.5 s (diagnostics: when records reached
# the broker after the restart).
# (Not ci_py: $! must be the Python process itself, for stop_pid.)
"$(ci_python)" "$CI_LIB/hw_poll.py" "127.0.0.1:$TPORT" "$TOPIC" "$ART/hw-timeline.txt" \
    "$((DURATION + OUTAGE_SECS + 150))" 0.5 >/dev/null 2>&1 &
HW_PID=$!

sleep "$OUTAGE_AFTER"
pid_alive "$SIM_PID" || { fail "simulate exited before the outage"; cat "$ART/simulate.log"; finish; }
metrics >"$ART/metrics-before-outage.txt" || true
REC_BEFORE=$(awk '/^accord_records_total\{/{s+=$2} END{print s+0}' "$ART/metrics-before-outage.txt")
fig "records judged before stop" "$REC_BEFORE"

# ---------------------------------------------------------------- outage --
log "stopping the broker (SIGTERM)"
STOP_T0=$(now_ms)
stop_tansu
OUT_T0=$(now_ms)
CPU0=$(cpu_ticks "$ACCORD_PID")
fig "broker stop took" "$((OUT_T0 - STOP_T0))ms"
log "broker down; outage of ${OUTAGE_SECS}s"

first_503=""
alive=1
deadline=$((OUT_T0 + OUTAGE_SECS * 1000))
while (($(now_ms) < deadline)); do
    if ! pid_alive "$ACCORD_PID"; then alive=""; break; fi
    if [[ -z "$first_503" ]]; then
        code="$(_probe_http "http://127.0.0.1:$APORT/readyz")"
        if [[ "$code" == 503 ]]; then
            first_503=$(($(now_ms) - STOP_T0))
            curl -s --noproxy '*' --max-time 3 "http://127.0.0.1:$APORT/readyz" >"$ART/readyz-during-outage.txt" || true
        fi
    fi
    sleep 0.5
done
OUT_T1=$(now_ms)
if [[ -n "$alive" ]]; then
    CPU1=$(cpu_ticks "$ACCORD_PID")
    CORES=$(python3 -c "import sys; t,h,ms=map(float,sys.argv[1:]); print(f'{t/h/(ms/1000):.4f}')" \
        "$((CPU1 - CPU0))" "$HZ" "$((OUT_T1 - OUT_T0))")
    fig "accord CPU during outage" "$CORES cores ($((CPU1 - CPU0)) ticks at ${HZ} Hz over $((OUT_T1 - OUT_T0)) ms)"
    pass "accord alive through the ${OUTAGE_SECS}s outage"
    if python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < float(sys.argv[2]) else 1)" "$CORES" "$MAX_CORES"; then
        pass "accord CPU during the outage $CORES cores < $MAX_CORES"
    else
        fail "accord CPU during the outage $CORES cores >= $MAX_CORES (spinning while the broker is away)"
    fi
else
    fail "accord died during the outage"; tail -30 "$ART/accord.log"; finish
fi
if [[ -n "$first_503" ]] && ((first_503 <= 15000)); then
    fig "readyz 503 after stop" "${first_503}ms ($(head -c 200 "$ART/readyz-during-outage.txt" | tr -d '\n'))"
    pass "/readyz answered 503 during the outage (${first_503} ms after the stop began)"
else
    fail "/readyz did not answer 503 within 15 s of the broker stop (first 503 after: ${first_503:-never} ms)"
fi
metrics >"$ART/metrics-during-outage.txt" || true

# --------------------------------------------------------------- restart --
log "restarting the broker on 127.0.0.1:$TPORT with the same storage"
start_tansu_persistent "$TPORT" "$DATA"
UP_T0=$(now_ms)
if wait_http "http://127.0.0.1:$APORT/readyz" 60 200; then
    fig "readyz 200 after restart" "$(($(now_ms) - UP_T0))ms"
    pass "/readyz back to 200 after the broker restart"
else
    fail "/readyz not 200 within 60 s of the broker restart"
fi

# Outage log lines (between the stop and the restart, plus recovery lines).
sed -E 's/\x1b\[[0-9;]*m//g' "$ART/accord.log" \
    | grep -E -i 'broker|kafka|transport|connect|rebalanc|partition|commit' >"$ART/outage-log-lines.txt" || true
if grep -q -i -E 'WARN.*(kafka|broker).*(refused|down|unreachable|disconnect|transport)|WARN.*(refused|all broker|unreachable|disconnect).*(kafka|broker)' \
        "$ART/outage-log-lines.txt"; then
    pass "accord logged the broker problem ($(grep -c -i WARN "$ART/accord.log") WARN lines in all)"
else
    fail "no accord log line names the broker problem"
fi
echo "--- accord log lines about the outage (first 12 of $(wc -l <"$ART/outage-log-lines.txt")):"
awk 'NR <= 12 { print substr($0, 1, 300) }' "$ART/outage-log-lines.txt"
echo "---"

# ------------------------------------------------------------ exactness --
log "waiting for simulate to finish"
sim_rc=0
deadline=$((SIM_T0 + (DURATION + OUTAGE_SECS + 120) * 1000))
while pid_alive "$SIM_PID" && (($(now_ms) < deadline)); do sleep 0.5; done
if pid_alive "$SIM_PID"; then
    fail "simulate still running $(($(now_ms) - SIM_T0)) ms after it started"; finish
fi
wait "$SIM_PID" || sim_rc=$?
SIM_PID=""
fig "simulate ran" "$(($(now_ms) - SIM_T0))ms (exit $sim_rc)"
if ((sim_rc != 0)) || [[ ! -s "$ART/report.json" ]]; then
    fail "simulate failed (exit $sim_rc)"; tail -20 "$ART/simulate.log"; finish
fi
pass "simulate delivered everything (exit 0, report written)"
fig "simulate report" "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["requests"], "requests,", r["records"], "records,", r["late_records"], "late")' "$ART/report.json")"

# compare METRICS REF FIELDS: REF is report.json or Prometheus text; FIELDS
# (comma-separated) among requests, late, records, open. Prints a one-line
# summary and a diff; exit 0 iff every field is equal.
compare() { ci_py metrics_compare "$@"; }

# The broker's content, judged offline by `accord replay` (one file per
# partition): what "lose nothing, count nothing twice" means for the records
# the broker actually holds. It differs from report.json when the producer
# duplicated records (retries across the stop, no idempotence) or the broker
# lost some.
REF=""
if timeout 60 "$(ci_python)" "$CI_LIB/dump_topic.py" "127.0.0.1:$TPORT" "$TOPIC" "$ART/topic-dump.jsonl" 30 \
        >"$ART/topic-dump-summary.txt" 2>&1; then
    fig "broker holds" "$(cat "$ART/topic-dump-summary.txt")"
    ci_py split_dump "$ART/topic-dump.jsonl" "$WORK"
    if "$BIN" replay "$WORK"/p*.jsonl --config "$CATALOG" --format prometheus >"$ART/replay-of-topic.prom" 2>"$ART/replay-of-topic.err"; then
        REF="$ART/replay-of-topic.prom"
        if compare "$REF" "$ART/report.json" requests,late,records >"$ART/broker-vs-report.txt"; then
            fig "broker content vs report" "equal (replay of the topic gives exactly report.json)"
            BROKER_EQ_REPORT=1
        else
            fig "broker content vs report" "differs (producer/broker side):"
            sed 's/^/    /' "$ART/broker-vs-report.txt" | tee -a "$ART/figures.txt"
        fi
    fi
fi
BROKER_EQ_REPORT="${BROKER_EQ_REPORT:-}"
if [[ "${OUTAGE_HANDOVER_TOPIC:-1}" == 1 ]]; then
    timeout 60 "$(ci_python)" "$CI_LIB/dump_topic.py" "127.0.0.1:$TPORT" "$TOPIC-handover" \
        "$ART/handover-topic-dump.jsonl" 15 >"$ART/handover-topic-summary.txt" 2>&1 || true
fi
[[ -n "$REF" ]] || fail "could not dump and replay the topic: $(tail -1 "$ART/topic-dump-summary.txt" "$ART/replay-of-topic.err" 2>/dev/null | tr '\n' ' ')"

log "waiting (max 90 s) until accord's counters equal the report / the broker's content"
deadline=$(($(now_ms) + 90000))
while :; do
    metrics >"$ART/metrics-final.txt" || true
    ok_report=""; ok_ref=""
    compare "$ART/metrics-final.txt" "$ART/report.json" requests,late,open >"$ART/compare-report.txt" && ok_report=1
    if [[ -n "$REF" ]]; then
        compare "$ART/metrics-final.txt" "$REF" requests,late,records,open >"$ART/compare-broker.txt" && ok_ref=1
    fi
    # When the producer itself duplicated records across the outage (no
    # idempotence), the report no longer describes the topic: the broker's
    # content is then the only reference.
    if [[ -n "$REF" && -z "$BROKER_EQ_REPORT" ]]; then
        [[ -n "$ok_ref" ]] && break
    else
        [[ -n "$ok_report" && ( -n "$ok_ref" || -z "$REF" ) ]] && break
    fi
    (($(now_ms) < deadline)) || break
    sleep 1
done
fig "settled" "$(($(now_ms) - UP_T0))ms after the broker came back"
if [[ -n "$REF" && -z "$BROKER_EQ_REPORT" ]]; then
    fig "report check" "not applicable: the producer wrote records twice across the outage (see 'broker content vs report'); judged against the broker's content"
elif [[ -n "$ok_report" ]]; then
    pass "accord_requests_total equals report.json expected exactly, late records equal, open joins 0: $(head -1 "$ART/compare-report.txt")"
else
    fail "accord's verdicts differ from report.json:"
    cat "$ART/compare-report.txt"
fi
if [[ -n "$REF" ]]; then
    if [[ -n "$ok_ref" ]]; then
        pass "accord live equals accord replay of the broker's content (requests, late, records: nothing lost or counted twice): $(head -1 "$ART/compare-broker.txt")"
    else
        fail "accord live differs from accord replay of the same records in the broker (cause in accord):"
        cat "$ART/compare-broker.txt"
    fi
fi
grep -E '^accord_(joins_evicted_total|replayed_suppressed|commits_total|rebalances_total|consumer_lag_messages)' \
    "$ART/metrics-final.txt" | head -20 >"$ART/engine-metrics.txt" || true

if [[ -z "$ok_report" || ( -n "$REF" && -z "$ok_ref" ) ]]; then
    # Diagnostics: what the timelines and the log say about the difference.
    blocked=$(grep -c -E 'cannot write handover state|verdicts not delivered|handover state not delivered' "$ART/accord.log" || true)
    echo "--- diagnosis"
    if [[ -z "$first_503" ]] && ((blocked > 0)); then
        echo "  * consume loop blocked: $blocked commit rounds waited 10 s each on the handover producer's flush"
        echo "    ('cannot write handover state') while the broker was down; meanwhile no consumer callback ran, so"
        echo "    /readyz stayed 200, no broker error was logged, and the tick advanced the watermarks with the"
        echo "    wall clock (watermark delay stuck at allowed_lateness during the outage, metrics-timeline.txt):"
        echo "    open joins closed early, the buffered records came in late."
    fi
    ci_py outage_diagnosis "$ART/metrics-timeline.txt" "$ART/hw-timeline.txt" "$UP_T0" || true
    echo "  log:"
    grep -E 'cannot write handover state|verdicts not delivered|handover state not delivered|SESSTMOUT|partitions (revoked|assigned)|continuing from|reachable again' \
        "$ART/accord.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-200 | head -16 | sed 's/^/    /'
    echo "---"
fi
finish
