#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# What producers send in production, judged live on a real broker (tansu,
# memory storage, 127.0.0.1) exactly as `accord replay` judges the same
# records read back from the broker:
#
#   1. every compression codec: the same kind of stream produced by
#      `accord simulate --kafka compression.type=C` for C in gzip, snappy,
#      lz4, zstd (one topic and one `accord run` each, side by side); the
#      live counters equal the replay's, series by series. (A made-up codec
#      makes simulate fail at start-up: the property reaches librdkafka.)
#   2. bad clocks: a stream with `ts` in microseconds, clients an hour
#      ahead and records without `ts` (scripts/ci/lib/clock_stream.py says
#      how its message timestamps make `run` and `replay` agree), produced
#      with explicit message timestamps; accord_records_clock_skewed_total
#      and every other counter equal the replay's, and the skewed count is
#      the number of bad clocks sent.
#
#   bash scripts/ci/kafka-codecs-clock-test.sh  (from the repo root, after
#                                                `cargo build --release`)
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/kafka-codecs-clock/.
# Knobs: ACCORD_BIN, CODEC_RATE (records/s per codec, default 150),
# CODEC_DURATION (seconds, default 15), CLOCK_REQUESTS (per partition,
# default 300).
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
RATE="${CODEC_RATE:-150}"
DURATION="${CODEC_DURATION:-15}"
PER="${CLOCK_REQUESTS:-300}"
CODECS=(gzip snappy lz4 zstd)
kl_init kafka-codecs-clock
BIN="$KL_BIN"
RUN_ID="$$-$RANDOM"

kl_apt curl
kl_need_confluent
install_tansu
KL_CATALOG="$KL_ART/catalog.toml"
kl_catalog "$KL_CATALOG"
TPORT="$(pick_free_port)"
start_tansu "$TPORT"
B="127.0.0.1:$TPORT"

accord_run() { # NAME PORT TOPIC
    kl_spawn "$1" env NO_COLOR=1 ACCORD_LOG=info "$BIN" run --config "$KL_CATALOG" --brokers "$B" \
        --topic "$3" --group "$3" --listen "127.0.0.1:$2"
}

# ---------------------------------------------------------------- codecs --
if "$BIN" simulate --brokers "$B" --topic "codec-bogus-$RUN_ID" --rate 10 --duration 1s \
        --config "$KL_CATALOG" --kafka compression.type=bogus >"$KL_ART/simulate-bogus.log" 2>&1; then
    kl_fail "simulate accepted compression.type=bogus: the property does not reach librdkafka"
else
    kl_pass "simulate refuses compression.type=bogus: $(grep -m1 -i -E 'compression|invalid' "$KL_ART/simulate-bogus.log" | cut -c1-160)"
fi

declare -A PORT=()
for c in "${CODECS[@]}"; do
    create_topic "codec-$c-$RUN_ID" 4 "$TPORT"
    PORT[$c]="$(pick_free_port)"
    accord_run "accord-$c" "${PORT[$c]}" "codec-$c-$RUN_ID"
done
for c in "${CODECS[@]}"; do
    kl_wait_ready "${PORT[$c]}" 60 || { kl_fail "$c: accord not ready within 60 s"; kl_finish; }
done
kl_log "codecs: ${CODECS[*]}, $RATE records/s each for ${DURATION}s"
seed=7
for c in "${CODECS[@]}"; do
    seed=$((seed + 1))
    kl_spawn "simulate-$c" "$BIN" simulate --brokers "$B" --topic "codec-$c-$RUN_ID" --rate "$RATE" \
        --duration "${DURATION}s" --scenario mixed --config "$KL_CATALOG" --seed "$seed" \
        --report "$KL_ART/simulate-$c-report.json" --kafka "compression.type=$c"
done
for c in "${CODECS[@]}"; do
    rc=0
    kl_wait_exit "simulate-$c" $((DURATION + 90)) || rc=$?
    if ((rc == 0)); then
        kl_pass "$c: accord simulate --kafka compression.type=$c delivered $(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["records"])' "$KL_ART/simulate-$c-report.json") records"
    else
        kl_fail "$c: accord simulate exit $rc: $(tail -2 "$KL_ART/simulate-$c.log" | tr '\n' ' ')"
    fi
done
for c in "${CODECS[@]}"; do
    kl_live_equals_replay "$c" "${PORT[$c]}" "$B" "codec-$c-$RUN_ID" 90 accord_requests_total
done
for c in "${CODECS[@]}"; do
    if n="$(kl_plain_log "accord-$c" | grep -c -E ' (WARN|ERROR) ')"; then
        kl_fail "$c: accord logged $n WARN/ERROR lines: $(kl_plain_log "accord-$c" | grep -m1 -E ' (WARN|ERROR) ' | cut -c1-200)"
    else
        kl_pass "$c: accord logged no WARN/ERROR line"
    fi
    kl_stop "accord-$c" 30 || true
done

# ------------------------------------------------------------ bad clocks --
T="clock-$RUN_ID"
create_topic "$T" 4 "$TPORT"
# Event times from 30 minutes ago: within the hour before the replay, more
# than max_clock_skew (1 min) in the past (clock_stream.py says why).
START=$(($(kl_now_ms) - 1800000))
STATS="$(python3 scripts/ci/lib/clock_stream.py "$KL_WORK/clock.jsonl" 4 "$PER" "$START")"
kl_fig "bad-clock stream" "$STATS"
SKEWED="$(python3 -c 'import json,sys; s=json.loads(sys.argv[1]); print(s["micro_ts"] + s["hour_ahead"])' "$STATS")"
# Produced before accord starts: nothing is idle while it reads.
python3 scripts/ci/lib/kafka_io.py produce "$B" "$T" "$KL_WORK/clock.jsonl" >"$KL_ART/clock-produce.log" 2>&1 \
    || { kl_fail "bad clocks: produce failed: $(tail -1 "$KL_ART/clock-produce.log")"; kl_finish; }
CPORT="$(pick_free_port)"
accord_run accord-clock "$CPORT" "$T"
kl_wait_ready "$CPORT" 60 || { kl_fail "bad clocks: accord not ready within 60 s"; kl_finish; }
kl_live_equals_replay "bad clocks" "$CPORT" "$B" "$T" 120 accord_records_clock_skewed_total accord_records_late_total
live_skewed="$(awk '/^accord_records_clock_skewed_total\{/ { s += $2 } END { print s + 0 }' "$KL_ART/bad_clocks-live.prom")"
if [[ "$live_skewed" == "$SKEWED" ]]; then
    kl_pass "bad clocks: accord_records_clock_skewed_total $live_skewed live == $SKEWED bad clocks sent (microseconds + an hour ahead)"
else
    kl_fail "bad clocks: accord_records_clock_skewed_total $live_skewed live, $SKEWED bad clocks sent"
fi
kl_stop accord-clock 30 || true
stop_tansu

kl_finish
