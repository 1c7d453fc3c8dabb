#!/usr/bin/env bash
# shellcheck disable=SC2317  # cleanup functions run from the EXIT trap
# Broker outage test (issue 4, item 4): "Broker stop/start during consumption:
# all records judged once the broker is back" -- accord logs the problem,
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
# after the restart; tansu drops offset-commit metadata (FIELD-NOTES), so
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
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=scripts/ci/services.sh disable=SC1091
source scripts/ci/services.sh

SECONDS=0
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
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

PASSED=0
FAILED=0
pass() { PASSED=$((PASSED + 1)); echo "PASS  $*"; }
fail() { FAILED=$((FAILED + 1)); echo "FAIL  $*"; }
log() { printf '[outage %(%H:%M:%S)T +%3ss] %s\n' -1 "$SECONDS" "$*"; }
now_ms() { date +%s%3N; }
fig() { printf '%-28s %s\n' "$1" "$2" | tee -a "$ART/figures.txt"; }
finish() {
    echo
    echo "figures ($ART/figures.txt):"
    cat "$ART/figures.txt"
    echo "broker-outage test took ${SECONDS}s"
    echo "$PASSED passed, $FAILED failed"
    ((FAILED == 0)) && exit 0
    exit 1
}

# ------------------------------------------------------------- processes --
# Our own processes (accord, simulate) are stopped before the services
# (broker, S3 stub), so accord's shutdown commit still reaches the broker.
ACCORD_PID=""
SIM_PID=""
POLL_PID=""
HW_PID=""
stop_pid() { # PID GRACE_SECS
    local pid="$1" grace="$2" i
    [[ -n "$pid" ]] || return 0
    if kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            _pid_alive "$pid" || break
            sleep 0.1
        done
        if _pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    set +e
    stop_pid "$POLL_PID" 2
    stop_pid "$HW_PID" 2
    stop_pid "$SIM_PID" 5
    stop_pid "$ACCORD_PID" 15
    stop_all_services
    [[ -z "${TPORT:-}" ]] || cp -f "$ACCORD_CI_ARTIFACTS/services/tansu-$TPORT.log" "$ART/" 2>/dev/null
    rm -rf "$WORK"
    exit "$rc"
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
command -v curl >/dev/null || _apt_install curl
install_tansu
install_s3_stub

# Test catalog: accord.toml with short windows so verdicts come in seconds.
CATALOG="$ART/catalog.toml"
python3 - "$ROOT/accord.toml" "$CATALOG" <<'PY'
import re, sys
src = open(sys.argv[1]).read()
out = re.sub(r'(?m)^window = "30s"', 'window = "5s"', src, count=1)
out = re.sub(r'(?m)^allowed_lateness = "5s"', 'allowed_lateness = "5s"', out, count=1)
out = re.sub(r'(?m)^window = "10s"', 'window = "4s"', out, count=1)
assert out.count('window = "5s"') == 1 and out.count('window = "4s"') == 1 and 'allowed_lateness = "5s"' in out, out
open(sys.argv[2], "w").write(out)
PY
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
python3 "$ROOT/scripts/ci/lib/hw_poll.py" "127.0.0.1:$TPORT" "$TOPIC" "$ART/hw-timeline.txt" \
    "$((DURATION + OUTAGE_SECS + 150))" 0.5 >/dev/null 2>&1 &
HW_PID=$!

sleep "$OUTAGE_AFTER"
_pid_alive "$SIM_PID" || { fail "simulate exited before the outage"; cat "$ART/simulate.log"; finish; }
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
    if ! _pid_alive "$ACCORD_PID"; then alive=""; break; fi
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
while _pid_alive "$SIM_PID" && (($(now_ms) < deadline)); do sleep 0.5; done
if _pid_alive "$SIM_PID"; then
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

# compare.py METRICS REF FIELDS: REF is report.json or Prometheus text;
# FIELDS (comma-separated) among requests, late, records, open. Prints a
# one-line summary and a diff; exit 0 iff every field is equal.
cat >"$WORK/compare.py" <<'PY'
import json, re, sys
line = re.compile(r'^(accord_[a-z_]+)(?:\{([^}]*)\})? ([0-9.eE+-]+)$')
def prom(text):
    got, late, records, open_joins = {}, 0, 0, 0
    for l in text.splitlines():
        m = line.match(l)
        if not m:
            continue
        name, labels, v = m.group(1), dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or "")), int(float(m.group(3)))
        if name == "accord_requests_total" and v:
            got[(labels["feature"], labels["path"], labels["verdict"])] = v
        elif name == "accord_records_late_total":
            late += v
        elif name == "accord_records_total":
            records += v
        elif name == "accord_open_joins":
            open_joins = v
    return got, late, records, open_joins
got, late, records, open_joins = prom(open(sys.argv[1]).read())
ref_text = open(sys.argv[2]).read()
if ref_text.lstrip().startswith("{"):
    rep = json.loads(ref_text)
    want = {tuple([f] + pv.split("/")): n for f, m in rep["expected"].items() for pv, n in m.items() if n}
    wlate, wrecords, name = rep["late_records"], rep["records"], "report"
else:
    want, wlate, wrecords, _ = prom(ref_text)
    name = "replay"
fields = sys.argv[3].split(",")
out = []
if "requests" in fields:
    for k in sorted(set(got) | set(want)):
        g, w = got.get(k, 0), want.get(k, 0)
        if g != w:
            out.append(f"  {k[0]:15} {k[1]:7} {k[2]:10} accord={g:6} {name}={w:6} ({g - w:+d})")
if "late" in fields and late != wlate:
    out.append(f"  late records: accord={late} {name}={wlate} ({late - wlate:+d})")
if "records" in fields and records != wrecords:
    out.append(f"  valid records: accord={records} {name}={wrecords} ({records - wrecords:+d})")
if "open" in fields and open_joins != 0:
    out.append(f"  accord_open_joins = {open_joins}")
print(f"requests accord={sum(got.values())} {name}={sum(want.values())}; records accord={records} "
      f"{name}={wrecords}; late accord={late} {name}={wlate}; open_joins={open_joins}")
print("\n".join(out))
sys.exit(1 if out else 0)
PY

# The broker's content, judged offline by `accord replay` (one file per
# partition): what "lose nothing, count nothing twice" means for the records
# the broker actually holds. It differs from report.json when the producer
# duplicated records (retries across the stop, no idempotence) or the broker
# lost some.
REF=""
if timeout 60 python3 "$ROOT/scripts/ci/lib/dump_topic.py" "127.0.0.1:$TPORT" "$TOPIC" "$ART/topic-dump.jsonl" 30 \
        >"$ART/topic-dump-summary.txt" 2>&1; then
    fig "broker holds" "$(cat "$ART/topic-dump-summary.txt")"
    python3 - "$ART/topic-dump.jsonl" "$WORK" <<'PY'
import json, sys
files = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    p = r["partition"]
    if p not in files:
        files[p] = open("%s/p%d.jsonl" % (sys.argv[2], p), "w")
    files[p].write(r["value"] + "\n")
for f in files.values():
    f.close()
PY
    if "$BIN" replay "$WORK"/p*.jsonl --config "$CATALOG" --format prometheus >"$ART/replay-of-topic.prom" 2>"$ART/replay-of-topic.err"; then
        REF="$ART/replay-of-topic.prom"
        if python3 "$WORK/compare.py" "$REF" "$ART/report.json" requests,late,records >"$ART/broker-vs-report.txt"; then
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
    timeout 60 python3 "$ROOT/scripts/ci/lib/dump_topic.py" "127.0.0.1:$TPORT" "$TOPIC-handover" \
        "$ART/handover-topic-dump.jsonl" 15 >"$ART/handover-topic-summary.txt" 2>&1 || true
fi
[[ -n "$REF" ]] || fail "could not dump and replay the topic: $(tail -1 "$ART/topic-dump-summary.txt" "$ART/replay-of-topic.err" 2>/dev/null | tr '\n' ' ')"

log "waiting (max 90 s) until accord's counters equal the report / the broker's content"
deadline=$(($(now_ms) + 90000))
while :; do
    metrics >"$ART/metrics-final.txt" || true
    ok_report=""; ok_ref=""
    python3 "$WORK/compare.py" "$ART/metrics-final.txt" "$ART/report.json" requests,late,open >"$ART/compare-report.txt" && ok_report=1
    if [[ -n "$REF" ]]; then
        python3 "$WORK/compare.py" "$ART/metrics-final.txt" "$REF" requests,late,records,open >"$ART/compare-broker.txt" && ok_ref=1
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
    # Diagnostics for the closing note.
    blocked=$(grep -c -E 'cannot write handover state|verdicts not delivered|handover state not delivered' "$ART/accord.log" || true)
    echo "--- diagnosis"
    if [[ -z "$first_503" ]] && ((blocked > 0)); then
        echo "  * consume loop blocked: $blocked commit rounds waited 10 s each on the handover producer's flush"
        echo "    ('cannot write handover state') while the broker was down; meanwhile no consumer callback ran, so"
        echo "    /readyz stayed 200, no broker error was logged, and the tick advanced the watermarks with the"
        echo "    wall clock (watermark delay stuck at allowed_lateness during the outage, metrics-timeline.txt):"
        echo "    open joins closed early, the buffered records came in late."
    fi
    python3 - "$ART/metrics-timeline.txt" "$ART/hw-timeline.txt" "$UP_T0" <<'PY' || true
import re, sys
mt, hw, up = sys.argv[1], sys.argv[2], int(sys.argv[3])
jump = {}   # partition -> first time after the restart the watermark delay fell to <= 2.5 s from > 5 s
prev = {}
totals = []  # (t, records, late)
for l in open(mt):
    t = int(l.split()[0])
    m = re.search(r'records=(\d+) late=(\d+)', l)
    if m:
        totals.append((t, int(m.group(1)), int(m.group(2))))
    for p, d in re.findall(r' p(\d+)=([0-9.]+)', l):
        d = float(d)
        if d == 0:  # gauge not set yet (partition just assigned)
            continue
        if t > up and p not in jump and prev.get(p, 0) > 5 and d <= 2.5:
            jump[p] = t
        prev[p] = d
final, reached = {}, {}
try:
    rows = [(int(l.split()[0]), dict(re.findall(r'p(\d+)=(\d+)', l))) for l in open(hw) if "down" not in l]
except OSError:
    rows = []
for _, d in rows:
    for p, v in d.items():
        final[p] = max(final.get(p, 0), int(v))
for t, d in rows:
    for p, v in d.items():
        if p not in reached and int(v) >= final[p]:
            reached[p] = t
end_rec, end_late = (totals[-1][1], totals[-1][2]) if totals else (0, 0)
for p in sorted(jump, key=int):
    j = (jump[p] - up) / 1000
    rec, late = next(((r, lt) for (t, r, lt) in totals if t >= jump[p]), (end_rec, end_late))
    r = "+%.1fs" % ((reached[p] - up) / 1000) if p in reached else "unknown"
    print("  * partition %s: watermark jumped to wall clock - allowed_lateness at +%.1fs after the restart; "
          "the broker had held all its records since %s; accord had then counted %d of %d records, "
          "late records %d -> %d afterwards%s" % (p, j, r, rec, end_rec, late, end_late,
          " (records in the broker, not yet consumed: the idle rule ignored consumer lag)"
          if p in reached and reached[p] < jump[p] and rec < end_rec else ""))
PY
    echo "  log:"
    grep -E 'cannot write handover state|verdicts not delivered|handover state not delivered|SESSTMOUT|partitions (revoked|assigned)|continuing from|reachable again' \
        "$ART/accord.log" | sed -E 's/\x1b\[[0-9;]*m//g' | cut -c1-200 | head -16 | sed 's/^/    /'
    echo "---"
fi
finish
