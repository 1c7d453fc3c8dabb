#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# OpenFeature flag-evaluation events, encoded by the OpenTelemetry project's
# own protobuf classes (PyPI opentelemetry-proto), judged live on a real
# broker (tansu, memory storage, 127.0.0.1) exactly as `accord replay`
# judges the same decisions:
#
#   1. `accord simulate --output` writes a stream of decision records with
#      known disagreements (the `mixed` scenario: divergences, degraded
#      fallbacks, missing and late analytics). scripts/ci/lib/otlp_stream.py
#      encodes the same decisions three ways, as the OpenFeature hooks and
#      the Collector's Kafka exporter would deliver them (batches of 200 ms
#      split into one export request per trace id, keyed and partitioned by
#      the trace id, request id = trace id), and adds items that are not
#      evaluations (access logs, other events, spans without events):
#        split   the frontend as log records (ExportLogsServiceRequest) on one
#                topic, the backends as span events (ExportTraceServiceRequest)
#                on another, both with 4 partitions;
#        logs    every layer as log records, one topic;
#        traces  every layer as span events, one topic.
#   2. Everything is produced before accord starts; one `accord run` per case:
#      `--topic LOGS:otlp_proto_logs --topic SPANS:otlp_proto_traces`,
#      `--topic T --input-format otlp_proto_logs`, `--topic T:otlp_proto_traces`.
#   3. Once every join is closed, the live counters equal, series by series,
#        a. `accord replay --input-format otlp_json` of the same export
#           requests as OTLP/JSON lines (per partition; for `split` the two
#           topics' files merged with --merge in the order given to `run`,
#           the partitions summed), every counter including
#           accord_otlp_items_ignored_total;
#        b. `accord replay` of the evaluations as accord decision records, in
#           the same per-partition files and order: every counter but the
#           ignored items, which must equal the number the encoder put in;
#        c. the verdicts (path/verdict per feature) and late records the
#           simulator's report expects.
#
# Why live and replay must agree on this stream. With one topic (logs,
# traces) live reads each partition in offset order and replay reads the
# same requests in the same order: the same records in the same order. With
# two topics (split), replay merges the files record by record, while live
# merges partition p of both topics message by message, each OTLP message
# taking its turn as a whole by its first evaluation. The two orders then
# differ only by records moving past others less than one message's spread
# in event time, and the evaluations of a message lie within one 200 ms
# batch of each other (the encoder prints the widest spread). A reorder
# that small changes no counter here: requests that agree close as
# complete whatever the order; a join closes by window when the watermark
# passes start + window, and every record of the stream is either well inside
# its window (the simulator keeps the layers within window/3 of the start) or
# a deliberate straggler sent window + lateness + 1 s after its start, so no
# record sits within 200 ms of the boundary. Nothing else can differ:
#   - every evaluation has a time (ns truncated to the same ms as the
#     decision's `ts`), so no record borrows the message timestamp (live) or
#     its predecessor's time (replay);
#   - message timestamps are the batch's flush time, never before an
#     evaluation's time, and the stream lies 15 minutes in the past, so no
#     `ts` is ahead of either reference (message timestamp live, wall clock in
#     replay): nothing counts as a bad clock;
#   - every message is on the broker before accord starts, so no topic of a
#     stream lags; the test catalog allows max_topic_idle = 5s (a shared CI
#     machine may be slow to fetch) and the run checks that no wait expired
#     (accord_stream_topic_waits_expired_total 0), i.e. the merge never went
#     on without a topic;
#   - live, the last joins close by the idle rule (watermark = wall clock,
#     30 s after assignment), replay by the end of the stream: both judge
#     what the join holds.
#
#   bash scripts/ci/otlp-kafka-test.sh  (from the repo root, after
#                                         `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/otlp-kafka/.
# Knobs: ACCORD_BIN, OTLPK_RATE (decisions/s, default 120), OTLPK_DURATION
# (seconds of simulated traffic, default 60), OTLPK_SEED (default 3).
set -euo pipefail
# Bounded as a whole, whoever runs it (.ci/run runs every *-test.sh as is).
if [[ -z "${KL_BOUNDED:-}" ]]; then
    KL_BOUNDED=1 exec timeout -k 30 900 bash "$0" "$@"
fi

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh
# shellcheck source=scripts/ci/lib/kafka_live.sh
source scripts/ci/lib/kafka_live.sh

SECONDS=0
RATE="${OTLPK_RATE:-120}"
DURATION="${OTLPK_DURATION:-60}"
SEED="${OTLPK_SEED:-3}"
PARTITIONS=4
# The OpenTelemetry project's generated protobuf classes; LogRecord.event_name
# is in every release of this range. Pinned to a major version so CI does not
# change under a commit.
OTLP_PROTO_SPEC="${ACCORD_OTLP_PROTO_SPEC:-opentelemetry-proto>=1.36,<2}"
CASES=(split logs traces)
kl_init otlp-kafka
BIN="$KL_BIN"
RUN_ID="$$-$RANDOM"
STREAM="$KL_ART/stream"
mkdir -p "$STREAM"

kl_apt curl
kl_need_confluent
otlp_proto_ok() { "$KL_PY" -c 'from opentelemetry.proto.logs.v1.logs_pb2 import LogRecord; LogRecord(event_name="x")'; }
if ! otlp_proto_ok 2>/dev/null; then
    pip_install "$OTLP_PROTO_SPEC"
    otlp_proto_ok
fi
install_tansu

# The shipped catalog with short windows (kl_catalog), the analytics
# pipeline's service mapped to its layer, and a longer topic wait (above).
KL_CATALOG="$KL_ART/catalog.toml"
kl_catalog "$KL_ART/catalog-base.toml"
sed -e '/^\[otel\.layers\]/a "events-pipeline" = "analytics"' -e 's/^max_topic_idle = "1s"/max_topic_idle = "5s"/' \
    "$KL_ART/catalog-base.toml" >"$KL_CATALOG"
if ! grep -q '^"events-pipeline" = "analytics"' "$KL_CATALOG" || ! grep -q '^max_topic_idle = "5s"' "$KL_CATALOG"; then
    echo "accord.toml changed shape: cannot derive the test catalog" >&2
    exit 1
fi
"$BIN" check-config "$KL_CATALOG" >/dev/null

# ---------------------------------------------------------------- stream --
START="$(date -u -d '-15 min' +%Y-%m-%dT%H:%M:%SZ)"
if ! "$BIN" simulate --output "$STREAM/decisions.jsonl" --scenario mixed --rate "$RATE" --duration "${DURATION}s" \
        --start "$START" --seed "$SEED" --config "$KL_CATALOG" --report "$STREAM/report.json" \
        >"$KL_ART/simulate.log" 2>&1; then
    kl_fail "accord simulate --output failed: $(tail -2 "$KL_ART/simulate.log" | tr '\n' ' ')"
    kl_finish
fi
kl_fig "decisions (simulate)" "$("$KL_PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print("%d records, %d requests, %d late, from %s" % (r["records"], r["requests"], r["late_records"], sys.argv[2]))' "$STREAM/report.json" "$START")"
declare -A STATS=() IGNORED=()
for c in "${CASES[@]}"; do
    if ! STATS[$c]="$("$KL_PY" scripts/ci/lib/otlp_stream.py encode "$STREAM/decisions.jsonl" "$STREAM/$c" --mode "$c" \
            --partitions "$PARTITIONS" --seed "$SEED" 2>"$KL_ART/encode-$c.err")"; then
        kl_fail "$c: encoding failed: $(tail -1 "$KL_ART/encode-$c.err")"
        kl_finish
    fi
    kl_fig "$c: encoded" "${STATS[$c]}"
    IGNORED[$c]="$("$KL_PY" -c 'import json,sys; print(json.loads(sys.argv[1])["ignored"])' "${STATS[$c]}")"
done

# ---------------------------------------------------------------- broker --
TPORT="$(pick_free_port)"
start_tansu "$TPORT"
B="127.0.0.1:$TPORT"
declare -A TOPICS=() PORT=()
TOPICS[split]="otlp-logs-$RUN_ID otlp-spans-$RUN_ID"
TOPICS[logs]="otlp-logs-only-$RUN_ID"
TOPICS[traces]="otlp-spans-only-$RUN_ID"
produce() { # CASE ROLE TOPIC
    create_topic "$3" "$PARTITIONS" "$TPORT"
    if ! "$KL_PY" scripts/ci/lib/kafka_io.py produce "$B" "$3" "$STREAM/$1/$2.produce.jsonl" \
            >"$KL_ART/produce-$1-$2.log" 2>&1; then
        kl_fail "$1: producing $2 to $3 failed: $(tail -1 "$KL_ART/produce-$1-$2.log")"
        kl_finish
    fi
    kl_log "$(cat "$KL_ART/produce-$1-$2.log")"
}
read -r LOGS SPANS <<<"${TOPICS[split]}"
produce split logs "$LOGS"
produce split spans "$SPANS"
produce logs logs "${TOPICS[logs]}"
produce traces spans "${TOPICS[traces]}"

# ------------------------------------------------------------------ live --
accord_run() { # CASE TOPIC-ARGS...
    local c="$1"
    shift
    PORT[$c]="$(pick_free_port)"
    kl_spawn "accord-$c" env NO_COLOR=1 ACCORD_LOG=info "$BIN" run --config "$KL_CATALOG" --brokers "$B" \
        --group "otlp-$c-$RUN_ID" --listen "127.0.0.1:${PORT[$c]}" "$@"
}
accord_run split --topic "$LOGS:otlp_proto_logs" --topic "$SPANS:otlp_proto_traces"
accord_run logs --topic "${TOPICS[logs]}" --input-format otlp_proto_logs
accord_run traces --topic "${TOPICS[traces]}:otlp_proto_traces"
for c in "${CASES[@]}"; do
    kl_wait_ready "${PORT[$c]}" 60 || { kl_fail "$c: accord not ready within 60 s"; kl_finish; }
done

# ---------------------------------------------------------------- replay --
# replay CASE KIND(otlp|accord): prints the Prometheus files it wrote.
replay() {
    local c="$1" kind="$2" p fmt=() out
    [[ "$kind" == otlp ]] && fmt=(--input-format otlp_json)
    if [[ "$c" == split ]]; then
        # One merged stream per partition, the topics' files in run's order.
        for ((p = 0; p < PARTITIONS; p++)); do
            out="$KL_ART/$c-replay-$kind-p$p.prom"
            "$BIN" replay --merge "${fmt[@]}" "$STREAM/$c/logs-p$p.$kind.jsonl" "$STREAM/$c/spans-p$p.$kind.jsonl" \
                --config "$KL_CATALOG" --format prometheus >"$out" 2>"$out.err" || return 1
            echo "$out"
        done
    else
        local role=logs
        [[ "$c" == traces ]] && role=spans
        out="$KL_ART/$c-replay-$kind.prom"
        # One stream per file (partition); the output sums them.
        "$BIN" replay "${fmt[@]}" "$STREAM/$c/$role"-p*."$kind".jsonl --config "$KL_CATALOG" --format prometheus \
            >"$out" 2>"$out.err" || return 1
        echo "$out"
    fi
}
declare -A REPLAY_OTLP=() REPLAY_ACCORD=()
for c in "${CASES[@]}"; do
    REPLAY_OTLP[$c]="$(replay "$c" otlp | tr '\n' ' ')" || { kl_fail "$c: accord replay (otlp_json) failed"; kl_finish; }
    REPLAY_ACCORD[$c]="$(replay "$c" accord | tr '\n' ' ')" || { kl_fail "$c: accord replay (accord) failed"; kl_finish; }
done

sum_series() { # NAME FILE: the sum of every series of counter NAME in FILE
    awk -v n="$1" '$1 == n || index($1, n "{") == 1 { s += $2 } END { print s + 0 }' "$2"
}

# live_equals CASE SECS: waits (at most SECS) until the live counters equal
# replay (a) with every join closed, then checks (b), (c) and the rest.
live_equals() {
    local c="$1" secs="$2" t0 live="$KL_ART/$1-live.prom" n
    local -a otlp accord
    read -r -a otlp <<<"${REPLAY_OTLP[$c]}"
    read -r -a accord <<<"${REPLAY_ACCORD[$c]}"
    t0=$(kl_now_ms)
    while :; do
        kl_metrics "${PORT[$c]}" >"$live" || true
        if "$KL_PY" scripts/ci/lib/counters_equal.py "$live" "${otlp[@]}" --require accord_requests_total \
                --require accord_divergences_total --require accord_records_late_total \
                --require accord_otlp_items_ignored_total >"$KL_ART/$c-compare-otlp.txt" 2>&1; then
            kl_pass "$c: live counters equal accord replay of the same export requests as OTLP/JSON," \
                "series by series ($(head -1 "$KL_ART/$c-compare-otlp.txt"); settled after $(($(kl_now_ms) - t0)) ms)"
            break
        fi
        if (($(kl_now_ms) >= t0 + secs * 1000)); then
            kl_fail "$c: live counters differ from accord replay (otlp_json) after ${secs}s:"
            head -30 "$KL_ART/$c-compare-otlp.txt"
            return 0
        fi
        sleep 1
    done
    if "$KL_PY" scripts/ci/lib/counters_equal.py "$live" "${accord[@]}" --skip accord_otlp_items_ignored_total \
            >"$KL_ART/$c-compare-accord.txt" 2>&1; then
        kl_pass "$c: live counters equal accord replay of the same decisions as accord records (all but ignored items)"
    else
        kl_fail "$c: live counters differ from accord replay of the decisions as accord records:"
        head -30 "$KL_ART/$c-compare-accord.txt"
    fi
    n="$(sum_series accord_otlp_items_ignored_total "$live")"
    if [[ "$n" == "${IGNORED[$c]}" ]]; then
        kl_pass "$c: accord_otlp_items_ignored_total $n == ${IGNORED[$c]} non-evaluation items put in"
    else
        kl_fail "$c: accord_otlp_items_ignored_total $n, ${IGNORED[$c]} non-evaluation items put in"
    fi
    if "$KL_PY" scripts/ci/lib/otlp_stream.py verdicts "$STREAM/report.json" "$live" >"$KL_ART/$c-verdicts.txt" 2>&1; then
        kl_pass "$c: verdicts and late records as the simulator expects ($(head -1 "$KL_ART/$c-verdicts.txt"))"
    else
        kl_fail "$c: verdicts differ from the simulator's report:"
        head -20 "$KL_ART/$c-verdicts.txt"
    fi
    n="$(sum_series accord_stream_topic_waits_expired_total "$live")"
    if [[ "$n" == 0 ]]; then
        kl_pass "$c: no topic wait expired (the merge never went on without a topic)"
    else
        kl_fail "$c: accord_stream_topic_waits_expired_total $n: a topic lagged, the merge order is not replay's"
    fi
    kl_fig "$c: live" "$(head -1 "$KL_ART/$c-compare-otlp.txt")"
}
for c in "${CASES[@]}"; do
    live_equals "$c" 150
done
for c in "${CASES[@]}"; do
    if n="$(kl_plain_log "accord-$c" | grep -c -E ' (WARN|ERROR) ')"; then
        kl_fail "$c: accord logged $n WARN/ERROR lines: $(kl_plain_log "accord-$c" | grep -m1 -E ' (WARN|ERROR) ' | cut -c1-200)"
    else
        kl_pass "$c: accord logged no WARN/ERROR line"
    fi
    kl_stop "accord-$c" 30 || true
done
stop_tansu

kl_finish
