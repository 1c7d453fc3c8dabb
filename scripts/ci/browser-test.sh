#!/usr/bin/env bash
# Browser test of the status page (issue 5): headless Chromium loads `/`
# from a running `accord demo`; the rendered page must show every catalog
# feature and at least one divergent request; a screenshot is saved as a
# CI artifact and must not be blank.
#
#   bash scripts/ci/browser-test.sh        (builds target/release/accord if missing)
#
# Artifacts in ${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}: status-page.png,
# status-page.html (DOM after scripts ran), browser-demo.log.
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$(pwd)

# shellcheck source=scripts/ci/services.sh
source scripts/ci/services.sh
services_install_trap

ART="$ACCORD_CI_ARTIFACTS"
mkdir -p "$ART"
BIN="${ACCORD_BIN:-$ROOT/target/release/accord}"
FEATURES=(checkout_v2 search.ranking)

log() { printf '[browser-test %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
fail() { log "FAIL: $*"; exit 1; }

if [[ ! -x "$BIN" ]]; then
    log "building $BIN"
    cargo build --release --locked --bin accord
fi
install_chromium
command -v curl >/dev/null || _apt_install curl

port=$(pick_free_port)
url="http://127.0.0.1:$port"
log "starting accord demo on $url"
"$BIN" demo --listen "127.0.0.1:$port" >"$ART/browser-demo.log" 2>&1 &
demo_pid=$!
stop_demo() {
    if kill -0 "$demo_pid" 2>/dev/null; then
        kill -TERM "$demo_pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$demo_pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$demo_pid" 2>/dev/null || true
    fi
    wait "$demo_pid" 2>/dev/null || true
}
trap 'stop_demo; _svc_on_exit' EXIT

wait_http "$url/healthz" 30 || { tail -20 "$ART/browser-demo.log" >&2; fail "demo did not answer"; }

# Wait (bounded) until the demo has judged divergent requests.
diverged=""
for _ in $(seq 1 60); do
    if curl -sf --noproxy '*' "$url/metrics" \
        | grep -E '^accord_requests_total\{[^}]*verdict="diverge"[^}]*\} [1-9]' >/dev/null; then
        diverged=1
        break
    fi
    sleep 0.5
done
[[ -n "$diverged" ]] || { tail -20 "$ART/browser-demo.log" >&2; fail "no divergent request within 30 s"; }
# Let a refresh cycle's worth of data accumulate for a fuller page.
sleep 3

log "dumping the DOM"
chromium_dump_dom "$url/" "$ART/status-page.html"
for f in "${FEATURES[@]}"; do
    grep -q -- "<h3>$f</h3>" "$ART/status-page.html" || fail "rendered page lacks feature $f"
done
# A divergent request: its id in an expandable entry, with its records.
rid=$(grep -oE '<details class="req" data-key="[^"]+"' "$ART/status-page.html" | head -1 \
    | sed -E 's/.*data-key="[^/]+\/([^"]+)"/\1/')
[[ -n "$rid" ]] || fail "rendered page shows no divergent request"
grep -q -- "<code class=\"rid\">$rid</code>" "$ART/status-page.html" || fail "request id $rid not shown"
grep -q 'class="rec"' "$ART/status-page.html" || fail "divergent request without records"
# The script ran and refreshed the page (status line set by the script once
# it fetched and swapped in /status/content).
grep -q 'every 5 s' "$ART/status-page.html" || fail "the page did not refresh itself"
# Self-contained: no external assets.
if grep -Eq '<(script|img|link)[^>]+(src|href)="https?://' "$ART/status-page.html"; then
    fail "the page references external assets"
fi
log "DOM ok: ${FEATURES[*]} and divergent request $rid"

log "taking a screenshot"
chromium_screenshot "$url/" "$ART/status-page.png" 1280,1800
python3 - "$ART/status-page.png" <<'PY'
import struct, sys, zlib

path = sys.argv[1]
data = open(path, "rb").read()
if data[:8] != b"\x89PNG\r\n\x1a\n":
    sys.exit(f"{path}: not a PNG")
pos, idat, ihdr = 8, b"", None
while pos < len(data):
    n, kind = struct.unpack(">I4s", data[pos:pos + 8])
    body = data[pos + 8:pos + 8 + n]
    if kind == b"IHDR":
        ihdr = struct.unpack(">IIBBBBB", body)
    elif kind == b"IDAT":
        idat += body
    pos += 12 + n
w, h, depth, ctype = ihdr[0], ihdr[1], ihdr[2], ihdr[3]
channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(ctype)
if depth != 8 or channels is None:
    sys.exit(f"{path}: unexpected PNG format depth={depth} colour type={ctype}")
raw = zlib.decompress(idat)
stride = w * channels
rows, prev = [], bytearray(stride)
for y in range(h):
    f = raw[y * (stride + 1)]
    line = bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
    for i in range(stride):
        a = line[i - channels] if i >= channels else 0
        b, c = prev[i], (prev[i - channels] if i >= channels else 0)
        if f == 1: line[i] = (line[i] + a) & 255
        elif f == 2: line[i] = (line[i] + b) & 255
        elif f == 3: line[i] = (line[i] + (a + b) // 2) & 255
        elif f == 4:
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 255
    rows.append(bytes(line))
    prev = line
colours, counts = set(), {}
for y in range(0, h, 4):
    row = rows[y]
    for x in range(0, w, 4):
        px = row[x * channels:x * channels + 3]
        colours.add(px)
        counts[px] = counts.get(px, 0) + 1
total = sum(counts.values())
dominant = max(counts.values()) / total
print(f"screenshot {w}x{h}, {len(data)} bytes, {len(colours)} distinct colours sampled, "
      f"dominant colour covers {dominant:.0%}")
if len(data) < 20_000 or len(colours) < 50 or dominant > 0.97:
    sys.exit(f"{path}: the screenshot looks blank")
PY
log "screenshot ok: $ART/status-page.png"
stop_demo
log "PASS"
