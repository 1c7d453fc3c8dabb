#!/usr/bin/env bash
# Live end-to-end test of accord's alerting and dashboards, against REAL
# services, all on 127.0.0.1:
#
#   tansu (Kafka protocol) <- accord simulate
#        -> accord run (/metrics) <- Prometheus (Debian package; shipped rules
#           with `for:` shortened by scripts/ci/fast-rules.sh; scrape and
#           evaluation every 1s) -> Alertmanager (Debian package;
#           deploy/alertmanager.yml, receivers pointed at a local webhook)
#        -> webhook receiver (scripts/ci/lib/webhook_sink.py, appends every
#           POST to a file)
#
#   bash scripts/ci/alerts-live-test.sh      (from the repo root, after
#                                             `cargo build --release`)
#
# Scenario A, `fake-availability`: the disagreement alerts reach the webhook
#   through Alertmanager: the feature-wide burn-rate page, and the per-pair
#   AccordLayerPairDivergence ticket with its layer-pair labels. Two
#   Alertmanagers receive every alert: "shipped" runs deploy/alertmanager.yml
#   as is (only webhook URLs and group timings changed), so the burn-rate page
#   inhibits the per-pair ticket there, which is asserted too; "noinhibit" is
#   the same file without inhibit_rules, so the per-pair ticket and its labels
#   reach the webhook. Also: every dashboard query returns data (or is listed
#   in EXPECTED_EMPTY below with the reason) and every metric named by a rule
#   or a dashboard exists in accord's live /metrics or is a recording rule.
# Scenario B, `healthy-ramp` (fresh topic, consumer group, accord process,
#   Prometheus TSDB, Alertmanagers and webhook): after the traffic guards hold
#   for longer than the shortened `for:` (plus margin), no accord alert ever
#   fired (ALERTS history and /api/v1/alerts), Alertmanager holds no alert and
#   nothing reached the webhook. No alert is excluded.
#
# Both scenarios use a test catalog derived from accord.toml with short
# windows (5s, lateness 1s, search.ranking 4s) so verdicts appear within
# seconds. In A, checkout_v2's planned expiry is set to yesterday, so
# AccordFlagPastExpiry must fire too; in B every expiry is a year ahead.
#
# Artifacts: ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}/alerts-live/{a,b}/
# (Prometheus alerts + rules JSON, Alertmanager alerts JSON, webhook payloads,
# accord log and /metrics, simulate report, dashboard query results), service
# logs under .../services/. Every wait is bounded; everything started here is
# stopped on exit. Prints one PASS/FAIL line per check, a summary, and
# "alerts-live: N passed, M failed" as the last line; exits 1 on any failure.
# The queries and waits are scripts/ci/lib/alerts_live.py.
#
# Knobs (environment): ACCORD_BIN (default target/release/accord),
# ALERTS_LIVE_FOR (shortened `for:`, default 10s), ALERTS_LIVE_RATE
# (records/s, default 300).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
CI_NAME=alerts-live
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh

SECONDS=0
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
FOR="${ALERTS_LIVE_FOR:-10s}"
RATE="${ALERTS_LIVE_RATE:-300}"
FOR_S="${FOR%s}"
[[ "$FOR_S" =~ ^[0-9]+$ ]] || { echo "ALERTS_LIVE_FOR must be whole seconds like 10s" >&2; exit 2; }

ART="$ACCORD_CI_ARTIFACTS/alerts-live"
rm -rf "$ART"
mkdir -p "$ART"
WORK="$(mktemp -d "${TMPDIR:-/tmp}/accord-alerts-live.XXXXXX")"

# Dashboard queries that may legitimately return no series during scenario A
# (fake-availability, a few seconds of traffic). Format: dashboard uid <TAB>
# panel title <TAB> refId <TAB> reason. Zero-valued series count as data:
# accord creates every label combination the catalog makes known at 0, so
# queries on evictions, rejects or late records return zeros, not nothing.
EXPECTED_EMPTY=$(cat <<'EOF'
EOF
)

# ------------------------------------------------------------ bookkeeping --

# Printed by results_summary (scripts/ci/lib/common.sh) before the results.
summary_extra() {
    echo "accord: $("$BIN" --version 2>/dev/null); for: $FOR; rate $RATE records/s; artifacts: ${ART#"$ROOT"/}"
    echo "A (fake-availability) alerts firing in Prometheus: ${A_FIRING:-n/a}"
    echo "B (healthy-ramp) alerts ever pending (none may fire; AccordDown is pending for a moment before"
    echo "  the first scrape, absent(up)): ${B_PENDING:-n/a}"
    if [[ -s "$ART/A/accord-metrics.txt" ]]; then
        echo "accord at the end of A (for the record): $(grep -E '^accord_kafka_commits_total' "$ART/A/accord-metrics.txt" | tr '\n' ' ')"
        echo "  max accord_consumer_lag_messages: $(grep -E '^accord_consumer_lag_messages' "$ART/A/accord-metrics.txt" \
            | awk '$2 > m { m = $2 } END { print m + 0 }')"
    fi
}

# Processes started here directly (not through services.sh), stopped first on
# exit (accord must drain while the broker is still up).
declare -A MY_PID=()
declare -a MY_ORDER=()
spawn() { # spawn NAME LOGFILE CMD...
    local name=$1 logf=$2; shift 2
    "$@" </dev/null >>"$logf" 2>&1 &
    MY_PID[$name]=$!
    MY_ORDER+=("$name")
}
stop_proc() { # stop_proc NAME [GRACE_SECS=10]
    local name=$1
    stop_pid "${MY_PID[$name]:-}" "${2:-10}"
    unset "MY_PID[$name]"
}
cleanup() {
    local rc=$? i
    trap - EXIT INT TERM
    results_on_exit "$rc"
    for (( i = ${#MY_ORDER[@]} - 1; i >= 0; i-- )); do stop_proc "${MY_ORDER[$i]}" 5 || true; done
    stop_all_services || true
    rm -rf "$WORK"
    exit "$CI_EXIT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# --------------------------------------------------------------- helpers --

# The parts that deal in JSON: scripts/ci/lib/alerts_live.py (stdlib only).
py() { ci_py alerts_live "$@"; }

prom_get() { # prom_get URL OUTFILE: save a JSON API answer as an artifact
    curl -sf --noproxy '*' --max-time 10 "$1" | python3 -m json.tool >"$2" 2>/dev/null || true
}

# make_catalog OUT EXPIRES_CHECKOUT EXPIRES_SEARCH: accord.toml with short
# windows (and the given planned expiry dates), validated by check-config.
make_catalog() {
    local out=$1 exp_c=$2 exp_s=$3
    sed -E \
        -e '/^\[monitor\]/,/^\[\[feature\]\]/ s/^window = "[^"]*"/window = "5s"/' \
        -e 's/^allowed_lateness = "[^"]*"/allowed_lateness = "1s"/' \
        accord.toml >"$out.tmp" || return 1
    # Per-feature overrides and expiry dates: search.ranking's window -> 4s.
    ci_py test_catalog alerts-live "$out.tmp" "$out" "$exp_c" "$exp_s" || return 1
    rm -f "$out.tmp"
    if ! { grep -q '^window = "5s"' "$out" && grep -q '^allowed_lateness = "1s"' "$out" \
        && grep -q '^key = "checkout_v2"' "$out" && grep -q '^key = "search.ranking"' "$out"; }; then
        echo "make_catalog: accord.toml no longer has the expected shape" >&2
        return 1
    fi
    "$BIN" check-config "$out" >/dev/null
}

# make_am_config OUT PREFIX WEBHOOK_PORT [noinhibit]: deploy/alertmanager.yml
# with every webhook URL pointed at the local receiver (path /PREFIX/<recv>),
# group_wait 5s / group_interval 5s instead of 30s / 5m (a test-only timing
# change like fast-rules' `for:`), and optionally without inhibit_rules.
make_am_config() {
    local out=$1 prefix=$2 port=$3 mode=${4:-}
    sed -E \
        -e "s#http://alert-sink:5001/#http://127.0.0.1:${port}/${prefix}/#g" \
        -e 's/^(  group_wait:).*/\1 5s/' \
        -e 's/^(  group_interval:).*/\1 5s/' \
        deploy/alertmanager.yml >"$out"
    if [[ "$mode" == noinhibit ]]; then
        sed -i '/^inhibit_rules:/,$d' "$out"
        ! grep -q 'source_matchers' "$out" || { echo "make_am_config: inhibit_rules not removed" >&2; return 1; }
    fi
    if grep -v '^[[:space:]]*#' "$out" | grep -q 'alert-sink' || ! grep -q "127.0.0.1:${port}/${prefix}/" "$out" \
        || ! grep -qE '^  group_wait: 5s$' "$out"; then
        echo "make_am_config: deploy/alertmanager.yml no longer has the expected shape" >&2
        return 1
    fi
}

# -------------------------------------------------------------- scenario --

# run_scenario NAME SCENARIO CATALOG: brings up a fresh topic, accord, webhook,
# two Alertmanagers and Prometheus; starts the simulator. Sets S_* variables.
run_scenario() {
    local name=$1 scenario=$2 catalog=$3 d
    d="$ART/$name"
    mkdir -p "$d"
    S_TOPIC="alerts-live-$name"
    S_ACC_PORT=$(pick_free_port)
    S_WH_PORT=$(pick_free_port)
    S_AM1_PORT=$(pick_free_port)
    S_AM2_PORT=$(pick_free_port)
    S_PROM_PORT=$(pick_free_port)
    S_PROM="http://127.0.0.1:$S_PROM_PORT"
    S_AM1="http://127.0.0.1:$S_AM1_PORT"
    S_AM2="http://127.0.0.1:$S_AM2_PORT"
    S_WEBHOOK="$d/webhook-payloads.jsonl"
    S_ACC="http://127.0.0.1:$S_ACC_PORT"

    log "[$name] topic $S_TOPIC (4 partitions) on tansu $TANSU_BOOTSTRAP"
    create_topic "$S_TOPIC" 4 "$TANSU_PORT"

    log "[$name] accord run (group alerts-live-$name) on $S_ACC"
    spawn "accord-$name" "$d/accord.log" env ACCORD_LOG=info NO_COLOR=1 "$BIN" run --config "$catalog" \
        --brokers "$TANSU_BOOTSTRAP" --topic "$S_TOPIC" --group "alerts-live-$name" \
        --listen "127.0.0.1:$S_ACC_PORT"
    local t0=$SECONDS
    require "[$name] accord /readyz 200 (partitions assigned) within 40s" wait_http "$S_ACC/readyz" 40
    log "[$name] accord ready after $((SECONDS - t0))s"

    spawn "webhook-$name" "$d/webhook.log" "$(ci_python)" "$CI_LIB/webhook_sink.py" "$S_WH_PORT" "$S_WEBHOOK"
    wait_http "http://127.0.0.1:$S_WH_PORT/" 15

    make_am_config "$WORK/am-$name-shipped.yml" shipped "$S_WH_PORT"
    make_am_config "$WORK/am-$name-noinhibit.yml" noinhibit "$S_WH_PORT" noinhibit
    cp "$WORK/am-$name-shipped.yml" "$WORK/am-$name-noinhibit.yml" "$d/"
    start_alertmanager "$WORK/am-$name-shipped.yml" "$S_AM1_PORT" "$WORK/am-$name-shipped-data"
    start_alertmanager "$WORK/am-$name-noinhibit.yml" "$S_AM2_PORT" "$WORK/am-$name-noinhibit-data"

    cat >"$WORK/prometheus-$name.yml" <<EOF
# Live-test Prometheus: the shipped rules with for: $FOR, 1s intervals.
global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
rule_files:
  - $WORK/accord.fast.rules.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$S_AM1_PORT", "127.0.0.1:$S_AM2_PORT"]
scrape_configs:
  # AccordDown watches up{job="accord"}: the job name is part of the rules' contract.
  - job_name: accord
    static_configs:
      - targets: ["127.0.0.1:$S_ACC_PORT"]
EOF
    cp "$WORK/prometheus-$name.yml" "$d/"
    start_prometheus "$WORK/prometheus-$name.yml" "$S_PROM_PORT" "$WORK/prom-$name-data" \
        --rules.alert.resend-delay=1s --rules.alert.for-grace-period=1s
    require "[$name] Prometheus scrapes accord: up{job=\"accord\"} == 1 (within 30s)" \
        py wait-query "$S_PROM" 30 'up{job="accord"} == 1'
    local i n=0
    for (( i = 0; i < 60; i++ )); do
        n=$(py alertmanagers "$S_PROM" 2>/dev/null || echo 0)
        [[ "$n" == 2 ]] && break
        sleep 0.5
    done
    require "[$name] Prometheus discovered 2 Alertmanagers within 30s (got $n)" test "$n" = 2

    log "[$name] accord simulate --scenario $scenario --rate $RATE"
    S_TRAFFIC_T0=$(date +%s.%N)
    spawn "simulate-$name" "$d/simulate.log" "$BIN" simulate --brokers "$TANSU_BOOTSTRAP" --topic "$S_TOPIC" \
        --rate "$RATE" --duration "${S_SIM_DURATION:-90s}" --scenario "$scenario" --config "$catalog" \
        --report "$d/simulate-report.json"
}

# save_artifacts NAME
save_artifacts() {
    local name=$1 d="$ART/$1"
    prom_get "$S_PROM/api/v1/alerts" "$d/prometheus-alerts.json"
    prom_get "$S_PROM/api/v1/rules" "$d/prometheus-rules.json"
    prom_get "$S_PROM/api/v1/query?query=ALERTS" "$d/prometheus-ALERTS.json"
    prom_get "$S_AM1/api/v2/alerts" "$d/alertmanager-shipped-alerts.json"
    prom_get "$S_AM2/api/v2/alerts" "$d/alertmanager-noinhibit-alerts.json"
    curl -sf --noproxy '*' --max-time 10 "$S_ACC/metrics" >"$d/accord-metrics.txt" || true
    curl -sf --noproxy '*' --max-time 10 "$S_ACC/api/v1/features" >"$d/accord-features.json" || true
}

stop_scenario() {
    local name=$1
    stop_proc "simulate-$name" 5
    stop_proc "accord-$name" 15
    stop_prometheus "$S_PROM_PORT"
    stop_alertmanager "$S_AM1_PORT"
    stop_alertmanager "$S_AM2_PORT"
    stop_proc "webhook-$name" 5
    local svc="$ACCORD_CI_ARTIFACTS/services"
    cp "$svc/prometheus-$S_PROM_PORT.log" "$svc/alertmanager-$S_AM1_PORT.log" \
        "$svc/alertmanager-$S_AM2_PORT.log" "$ART/$name/" 2>/dev/null || true
}

# ------------------------------------------------------------------ setup --

log "setup"
if [[ ! -x "$BIN" ]]; then
    log "no $BIN: cargo build --release"
    timeout 1800 cargo build --release --locked
fi
"$BIN" --version
install_prometheus_stack
install_tansu
command -v python3 >/dev/null

require "fast rules: every for: -> $FOR" \
    bash scripts/ci/fast-rules.sh rules/accord.rules.yml "$WORK/accord.fast.rules.yml" "$FOR"
cp "$WORK/accord.fast.rules.yml" "$ART/accord.fast.rules.yml"
py list-queries >"$ART/dashboard-queries.resolved.txt"
printf '%s\n' "$EXPECTED_EMPTY" >"$WORK/expected-empty.tsv"

TPORT=$(pick_free_port)
start_tansu "$TPORT"

YESTERDAY=$(date -u -d yesterday +%F)
NEXT_YEAR=$(date -u -d '+1 year' +%F)

# ------------------------------------------------------- scenario A: fake --

step "scenario A: fake-availability"
require "[A] test catalog (windows 5s/4s, lateness 1s, checkout_v2 expired $YESTERDAY) validates" \
    make_catalog "$WORK/catalog-a.toml" "$YESTERDAY" "$NEXT_YEAR"
cp "$WORK/catalog-a.toml" "$ART/"
S_SIM_DURATION=120s run_scenario A fake-availability "$WORK/catalog-a.toml"
A_T0=$SECONDS

check "[A] disagreement alerts firing in Prometheus within 90s" \
    py wait-firing "$S_PROM" 90 AccordExposedAgreementBurnRateFast AccordLayerPairDivergence
log "[A] alerts firing after $((SECONDS - A_T0))s of traffic"
check "[A] AccordLayerPairDivergence carries the frontend/api pair (path_mismatch, exposure_without_capability)" \
    py pair-labels "$S_PROM"
check "[A] webhook got the burn-rate page (shipped config, receiver pager, feature=checkout_v2)" \
    py wait-webhook "$S_WEBHOOK" 60 \
    "/shipped/pager,pager,AccordExposedAgreementBurnRateFast,feature=checkout_v2;severity=critical"
check "[A] webhook got AccordLayerPairDivergence frontend/api (no-inhibit config, receiver ticket)" \
    py wait-webhook "$S_WEBHOOK" 60 \
    "/noinhibit/ticket,ticket,AccordLayerPairDivergence,feature=checkout_v2;upstream=frontend;downstream=api;kind=path_mismatch" \
    "/noinhibit/ticket,ticket,AccordLayerPairDivergence,feature=checkout_v2;upstream=frontend;downstream=api;kind=exposure_without_capability" \
    "/noinhibit/pager,pager,AccordExposedAgreementBurnRateFast,feature=checkout_v2"
check "[A] webhook got AccordFlagPastExpiry (shipped config, receiver ticket, feature=checkout_v2)" \
    py wait-webhook "$S_WEBHOOK" 60 "/shipped/ticket,ticket,AccordFlagPastExpiry,feature=checkout_v2"
check "[A] shipped Alertmanager: AccordLayerPairDivergence inhibited by the burn-rate page" \
    py am-inhibited "$S_AM1" AccordLayerPairDivergence 20
# Not asserted: whether a per-pair ticket reached the webhook through the
# shipped config *before* the burn-rate page started to inhibit it. With every
# `for:` shortened to the same $FOR the pair alert (15m guard: 450 closed
# requests) becomes active a few seconds before the burn-rate page (1h guard:
# 360 exposed requests), an ordering that the production `for:` values (10m vs
# 2m) reverse. The summary shows what arrived.
check "[A] rules healthy" py rules-healthy "$S_PROM"
# Let every `for:` that could elapse elapse before judging the firing set.
sleep "$((FOR_S + 3))"
# Expected: the fast burn-rate page, the per-pair tickets, parity drift
# (frontend takes v2 on ~35 % of requests, api on ~20 %) and the expired flag.
# Not expected: AccordExposedAgreementBurnRateSlow, whose guard is
# rate(...[1d]) > 0.1 exposed requests/s, i.e. 8640 exposed requests in a
# fresh TSDB (rate() divides by the whole 1d range), several minutes away at
# this rate; every health/input alert (accord is up, ready, not lagging, no
# rejects, no late records, nothing missing).
check "[A] Prometheus fires exactly the expected accord alerts" \
    py firing-exactly "$S_PROM" AccordExposedAgreementBurnRateFast \
    AccordLayerPairDivergence AccordExposureParityDrift AccordFlagPastExpiry
curl -sf --noproxy '*' --max-time 10 "$S_ACC/metrics" >"$ART/A/accord-metrics.txt"
check "[A] every dashboard query returns data or is listed as expected-empty" \
    py dashboard-queries "$S_PROM" "$WORK/expected-empty.tsv" "$ART/A/dashboard-query-results.json"
check "[A] every metric named by rules/dashboards is in accord's /metrics or a recording rule" \
    py metric-names "$S_PROM" "$ART/A/accord-metrics.txt"
save_artifacts A
echo "  alerts active since (s after the simulator started):"
py active-times "$S_PROM" "$S_TRAFFIC_T0" "$S_WEBHOOK" | tee "$ART/A/alert-timeline.txt"
echo "  webhook notifications (A):"
py webhook-summary "$S_WEBHOOK" | tee "$ART/A/webhook-summary.txt"
A_FIRING=$(py firing-names "$ART/A/prometheus-alerts.json" 2>/dev/null || echo "?")
stop_scenario A

# ---------------------------------------------------- scenario B: healthy --

step "scenario B: healthy-ramp"
require "[B] test catalog (windows 5s/4s, lateness 1s, expiries $NEXT_YEAR) validates" \
    make_catalog "$WORK/catalog-b.toml" "$NEXT_YEAR" "$NEXT_YEAR"
cp "$WORK/catalog-b.toml" "$ART/"
OBSERVE=$((FOR_S * 2 + 20))
S_SIM_DURATION=$((OBSERVE + 40))s run_scenario B healthy-ramp "$WORK/catalog-b.toml"
B_T0=$SECONDS
# The clock starts when every traffic guard of the agreement alerts holds.
require "[B] traffic guards hold within 90s (closed requests > 0.5/s, exposed > 0.1/s, per-layer > 0.5/s)" \
    py wait-query "$S_PROM" 90 \
    'feature:accord_requests:rate15m{feature="checkout_v2"} > 0.5
       and on (feature) feature:accord_exposed_requests:rate1h > 0.1
       and on (feature) count by (feature) (feature_layer:accord_layer_decisions:rate15m{feature="checkout_v2"} > 0.5) == 4'
log "[B] guards hold after $((SECONDS - B_T0))s; observing for ${OBSERVE}s (for: $FOR x2 + 20s)"
B_FIRST=""
for (( i = 0; i < OBSERVE; i += 2 )); do
    if ! py expect-empty "$S_PROM" 'ALERTS{alertstate="firing"}' >/dev/null 2>&1; then
        B_FIRST=${B_FIRST:-$((SECONDS - B_T0))s}
    fi
    sleep 2
done
check "[B] rules healthy" py rules-healthy "$S_PROM"
check "[B] traffic still flowing at the end (closed requests/s > 0.5 over 1m)" \
    py expect-nonempty "$S_PROM" 'sum(rate(accord_requests_total[1m])) > 0.5'
check "[B] no accord alert firing now (/api/v1/alerts)" py firing-exactly "$S_PROM"
check "[B] no alert fired at any time during the run (ALERTS history)${B_FIRST:+; first seen at $B_FIRST}" \
    py expect-empty "$S_PROM" 'max_over_time(ALERTS{alertstate="firing"}[15m])'
B_PENDING=$(py pending-alerts "$S_PROM" 2>/dev/null || echo "?")
sleep 6   # > group_wait: anything Alertmanager had would have been sent
check "[B] Alertmanagers hold no alert" \
    bash -c "[[ \$(curl -sf --noproxy '*' --max-time 5 $S_AM1/api/v2/alerts) == '[]' && \$(curl -sf --noproxy '*' --max-time 5 $S_AM2/api/v2/alerts) == '[]' ]]"
check "[B] nothing reached the webhook" py webhook-empty "$S_WEBHOOK"
save_artifacts B
stop_scenario B

# ---------------------------------------------------------------- summary --

results_summary
results_ok
