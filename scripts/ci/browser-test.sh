#!/usr/bin/env bash
# Browser test of the status page: headless Chromium loads `/` from a running
# `accord demo`; the rendered page must show every catalog feature and at
# least one divergent request with its records, an inline SVG chart per
# feature (the last hour, drawn on the server) with the exposed-agreement
# line of a feature with traffic, must have refreshed itself from the JSON
# APIs and reference no external assets; a screenshot is saved as a CI
# artifact and must not be blank (scripts/ci/lib/png_check.py).
#
#   bash scripts/ci/browser-test.sh        (builds target/release/accord if missing)
#
# Artifacts in ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}: status-page.png,
# status-page.html (DOM after scripts ran), browser-demo.log. Prints one
# PASS/FAIL line per check and "browser-test: N passed, M failed" as the last
# line; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

CI_NAME=browser-test
# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh

ART="$ACCORD_CI_ARTIFACTS"
mkdir -p "$ART"
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
FEATURES=(checkout_v2 search.ranking)
PAGE="$ART/status-page.html"

demo_pid=""
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    results_on_exit "$rc"
    stop_pid "$demo_pid" 10
    stop_all_services || true
    exit "$CI_EXIT"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ ! -x "$BIN" ]]; then
    log "building $BIN"
    cargo build --release --locked --bin accord
fi
install_chromium
command -v curl >/dev/null || apt_install curl

port=$(pick_free_port)
url="http://127.0.0.1:$port"
log "starting accord demo on $url"
"$BIN" demo --listen "127.0.0.1:$port" >"$ART/browser-demo.log" 2>&1 &
demo_pid=$!

demo_tail() { tail -20 "$ART/browser-demo.log"; return 1; }
demo_answers() { wait_http "$url/healthz" 30 || demo_tail; }
# Waits (bounded) until the demo has judged divergent requests.
demo_diverged() {
    local i
    for i in $(seq 1 60); do
        if curl -sf --noproxy '*' "$url/metrics" \
            | grep -E '^accord_requests_total\{[^}]*verdict="diverge"[^}]*\} [1-9]' >/dev/null; then
            log "divergent requests after $((i / 2)) s"
            return 0
        fi
        sleep 0.5
    done
    demo_tail
}
require "accord demo answers /healthz within 30 s" demo_answers
require "the demo judged a divergent request within 30 s" demo_diverged
# Let a refresh cycle's worth of data accumulate for a fuller page.
sleep 3

log "dumping the DOM"
require "headless Chromium rendered the page" chromium_dump_dom "$url/" "$PAGE"
for f in "${FEATURES[@]}"; do
    check "rendered page shows feature $f" grep -q -- "<h3>$f</h3>" "$PAGE"
done
# A divergent request: its id in an expandable entry, with its records.
rid=$(grep -oE '<details class="req" data-key="[^"]+"' "$PAGE" | head -1 \
    | sed -E 's/.*data-key="[^/]+\/([^"]+)"/\1/')
require "rendered page shows a divergent request" test -n "$rid"
check "request id $rid shown" grep -q -- "<code class=\"rid\">$rid</code>" "$PAGE"
check "the divergent request shows its records" grep -q 'class="rec"' "$PAGE"
# A chart per feature: server-rendered SVG, no script or external asset.
for f in "${FEATURES[@]}"; do
    check "rendered page shows a chart for $f" grep -q -- "<svg class=\"chart\" data-feature=\"$f\"" "$PAGE"
done
# The demo's traffic is drawn: checkout_v2's chart has its exposed-agreement
# series (a line, or a dot for a single minute).
chart_has_agreement() {
    grep -ozP '(?s)<svg class="chart" data-feature="checkout_v2".*?</svg>' "$PAGE" | grep -qa 'class="s-agree"'
}
check "checkout_v2's chart draws exposed agreement" chart_has_agreement
check "the page links the exit review" grep -q '/api/v1/features/checkout_v2/exit-review' "$PAGE"
# The script ran and refreshed the page (status line set by the script once
# it fetched and swapped in /status/content).
check "the page refreshed itself" grep -q 'every 5 s' "$PAGE"
# Self-contained: no external assets.
no_external_assets() { ! grep -Eq '<(script|img|link)[^>]+(src|href)="https?://' "$PAGE"; }
check "the page references no external assets" no_external_assets

log "taking a screenshot"
require "screenshot taken" chromium_screenshot "$url/" "$ART/status-page.png" 1280,1800
check "screenshot is not blank ($ART/status-page.png)" ci_py png_check "$ART/status-page.png"
stop_pid "$demo_pid" 10
demo_pid=""
results_summary
results_ok
