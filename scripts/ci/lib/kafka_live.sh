# shellcheck shell=bash
# scripts/ci/lib/kafka_live.sh: helpers of the real-broker tests that run
# `accord run` live and hold its counters against `accord replay` of the
# records the broker holds. Source it after scripts/ci/services.sh:
#
#   source scripts/ci/services.sh
#   source scripts/ci/lib/kafka_live.sh
#   kl_init kafka-security                 # artifacts dir, work dir, EXIT trap
#   kl_spawn accord-tls "$BIN" run ...     # a background process, logged
#   kl_live_equals_replay "TLS" "$port" "$bootstrap" "$topic" -X security.protocol=SSL ...
#   kl_finish                              # summary; exit 1 if anything failed
#
# Every process started here is stopped on exit (reverse order), before the
# services of services.sh. Every wait is bounded. Reporting: kl_pass and
# kl_fail print "PASS  ..." / "FAIL  ..."; kl_finish ends with
# "NAME: N passed, M failed".

KL_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
KL_BIN="${ACCORD_BIN:-$KL_ROOT/target/release/accord}"
KL_PY="${PYTHON:-python3}"
# The Python client of the helpers (librdkafka 2.10+; Debian's 2.0 fails
# against tansu). Pinned to a major version so CI does not change under a
# commit.
KL_CONFLUENT_SPEC="${ACCORD_CONFLUENT_KAFKA_SPEC:-confluent-kafka>=2.10,<3}"

KL_PASSED=0
KL_FAILED=0
# Set by kl_wait_not_ready_with, read by the scripts.
export KL_READYZ="" KL_WAITED_MS=0
KL_NAME=""
KL_ART=""
KL_WORK=""
declare -gA KL_PID=()
declare -ga KL_ORDER=()

kl_log() { printf '[%s %(%H:%M:%S)T +%3ss] %s\n' "$KL_NAME" -1 "$SECONDS" "$*"; }
kl_pass() { KL_PASSED=$((KL_PASSED + 1)); echo "PASS  $*"; }
kl_fail() { KL_FAILED=$((KL_FAILED + 1)); echo "FAIL  $*"; }
kl_fig() { printf '%-34s %s\n' "$1" "$2" | tee -a "$KL_ART/figures.txt"; }
kl_now_ms() { date +%s%3N; }

# kl_alive PID: exists and is not a zombie.
kl_alive() {
    local pid="${1:-}" stat=""
    [[ -n "$pid" ]] && kill -0 "$pid" 2>/dev/null || return 1
    { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
    stat="${stat##*) }"
    [[ "${stat:0:1}" != [ZX] ]]
}

# kl_init NAME: artifacts in $ACCORD_CI_ARTIFACTS/NAME (emptied), a work
# directory, the EXIT trap. Checks the accord binary is there.
kl_init() {
    KL_NAME="$1"
    KL_ART="$ACCORD_CI_ARTIFACTS/$KL_NAME"
    rm -rf "$KL_ART"
    mkdir -p "$KL_ART"
    : >"$KL_ART/figures.txt"
    KL_WORK="$(mktemp -d "${TMPDIR:-/tmp}/accord-$KL_NAME.XXXXXX")"
    trap kl_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    [[ -x "$KL_BIN" ]] || { echo "no $KL_BIN: run 'cargo build --release' first (or set ACCORD_BIN)" >&2; exit 2; }
}

# kl_apt PKG...: Debian packages, installed only when missing.
kl_apt() {
    local missing=() p
    for p in "$@"; do dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p"); done
    ((${#missing[@]} == 0)) && return 0
    kl_log "apt-get install ${missing[*]}"
    timeout 600 apt-get -o DPkg::Lock::Timeout=300 update -qq >/dev/null
    timeout 900 env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
        install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# kl_need_confluent: the Python Kafka client of scripts/ci/lib/kafka_io.py.
kl_need_confluent() {
    "$KL_PY" -c 'import confluent_kafka, sys; sys.exit(confluent_kafka.libversion()[1] < 0x020a0000)' 2>/dev/null && return 0
    kl_log "pip install $KL_CONFLUENT_SPEC"
    timeout 600 "$KL_PY" -m pip install -q --disable-pip-version-check "$KL_CONFLUENT_SPEC" >&2
}

# kl_spawn NAME CMD...: run CMD in the background, output to $KL_ART/NAME.log.
kl_spawn() {
    local name="$1"
    shift
    "$@" </dev/null >"$KL_ART/$name.log" 2>&1 &
    KL_PID[$name]=$!
    KL_ORDER+=("$name")
}

# kl_stop NAME [GRACE_SECS=15]: SIGTERM, SIGKILL after the grace period.
# Returns the process's exit status (0 if it was not running).
kl_stop() {
    local name="$1" grace="${2:-15}" pid i rc=0
    pid="${KL_PID[$name]:-}"
    [[ -n "$pid" ]] || return 0
    if kl_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            kl_alive "$pid" || break
            sleep 0.1
        done
        kl_alive "$pid" && kill -KILL "$pid" 2>/dev/null
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "KL_PID[$name]"
    return "$rc"
}

# kl_wait_exit NAME SECS: waits for a process to end by itself; returns its
# exit status, or 124 (and stops it) if it still runs after SECS.
kl_wait_exit() {
    local name="$1" secs="$2" pid rc=0 deadline
    pid="${KL_PID[$name]:-}"
    [[ -n "$pid" ]] || return 0
    deadline=$(($(kl_now_ms) + secs * 1000))
    while kl_alive "$pid" && (($(kl_now_ms) < deadline)); do sleep 0.2; done
    if kl_alive "$pid"; then
        kl_stop "$name" 5 || true
        return 124
    fi
    wait "$pid" 2>/dev/null || rc=$?
    unset "KL_PID[$name]"
    return "$rc"
}

kl_cleanup() {
    local rc=$? i
    set +e
    for ((i = ${#KL_ORDER[@]} - 1; i >= 0; i--)); do
        kl_stop "${KL_ORDER[$i]}" 10 >/dev/null 2>&1
    done
    stop_all_services
    [[ -z "$KL_WORK" ]] || rm -rf "$KL_WORK"
    exit "$rc"
}

# kl_finish: figures, the time taken and "NAME: N passed, M failed"; the
# exit status is 1 if anything failed.
kl_finish() {
    echo
    echo "== $KL_NAME figures ($KL_ART/figures.txt)"
    cat "$KL_ART/figures.txt"
    echo "$KL_NAME: took ${SECONDS}s"
    echo "$KL_NAME: $KL_PASSED passed, $KL_FAILED failed"
    ((KL_FAILED == 0)) && exit 0
    exit 1
}

# kl_catalog OUT: the shipped accord.toml with short windows (5 s, the
# search feature 4 s; allowed_lateness 5 s kept), so verdicts come within
# seconds of the traffic. Fails if accord.toml changed shape.
kl_catalog() {
    local out="$1"
    sed -e '0,/^window = "30s"/s//window = "5s"/' -e '0,/^window = "10s"/s//window = "4s"/' \
        "$KL_ROOT/accord.toml" >"$out"
    if ! grep -q '^window = "5s"' "$out" || ! grep -q '^window = "4s"' "$out" \
        || ! grep -q '^allowed_lateness = "5s"' "$out"; then
        echo "accord.toml changed shape: cannot derive the test catalog" >&2
        return 1
    fi
    "$KL_BIN" check-config "$out" >/dev/null
}

kl_metrics() { curl -s --noproxy '*' --max-time 5 "http://127.0.0.1:$1/metrics"; }

# kl_readyz PORT: prints "CODE BODY" (BODY on one line).
kl_readyz() {
    local body code
    body="$(curl -s --noproxy '*' --max-time 3 -w '\n%{http_code}' "http://127.0.0.1:$1/readyz" 2>/dev/null)" || true
    code="${body##*$'\n'}"
    body="${body%$'\n'*}"
    printf '%s %s\n' "${code:-000}" "$(printf '%s' "$body" | tr '\n' ' ')"
}

# kl_wait_ready PORT SECS: /readyz 200 within SECS.
kl_wait_ready() {
    local port="$1" secs="$2" deadline r
    deadline=$(($(kl_now_ms) + secs * 1000))
    while (($(kl_now_ms) < deadline)); do
        r="$(kl_readyz "$port")"
        [[ "$r" == 200* ]] && return 0
        sleep 0.2
    done
    echo "readyz after ${secs}s: $r" >&2
    return 1
}

# kl_wait_not_ready_with PORT SECS REGEX: /readyz answers 503 with a body
# matching REGEX within SECS. Sets KL_READYZ (the answer) and KL_WAITED_MS.
kl_wait_not_ready_with() {
    local port="$1" secs="$2" re="$3" t0 r
    t0=$(kl_now_ms)
    KL_READYZ=""
    while (($(kl_now_ms) < t0 + secs * 1000)); do
        r="$(kl_readyz "$port")"
        [[ "$r" == 000* ]] || KL_READYZ="$r"
        if [[ "$r" == 503* ]] && grep -q -E "$re" <<<"$r"; then
            KL_WAITED_MS=$(($(kl_now_ms) - t0))
            return 0
        fi
        sleep 0.25
    done
    KL_WAITED_MS=$(($(kl_now_ms) - t0))
    return 1
}

# kl_plain_log NAME: the log of process NAME without ANSI colours.
kl_plain_log() { sed -E 's/\x1b\[[0-9;]*m//g' "$KL_ART/$1.log"; }

# kl_live_equals_replay LABEL PORT BOOTSTRAP TOPIC SECS [REQUIRE...] [-- -X K=V...]:
# reads TOPIC back from the broker (one file per partition), judges it with
# `accord replay`, and waits (at most SECS) until accord's live counters on
# PORT equal the replay's, series by series, with no join open. REQUIRE:
# series prefixes that must be non-zero in the replay. Artifacts:
# $KL_ART/LABEL-*.
kl_live_equals_replay() {
    local label="$1" port="$2" bootstrap="$3" topic="$4" secs="$5" t0 dir slug
    shift 5
    local req=() xs=()
    while (($#)); do
        if [[ "$1" == -- ]]; then shift; xs=("$@"); break; fi
        req+=(--require "$1")
        shift
    done
    slug="${label//[^A-Za-z0-9_.-]/_}"
    dir="$KL_WORK/$slug-dump"
    if ! timeout 120 "$KL_PY" "$KL_ROOT/scripts/ci/lib/kafka_io.py" dump "$bootstrap" "$topic" "$dir" --timeout 90 \
            "${xs[@]}" >"$KL_ART/$slug-dump.txt" 2>&1; then
        kl_fail "$label: could not read $topic back from the broker: $(tail -1 "$KL_ART/$slug-dump.txt")"
        return 0
    fi
    kl_fig "$label broker holds" "$(tail -1 "$KL_ART/$slug-dump.txt")"
    if ! "$KL_BIN" replay "$dir"/p*.jsonl --config "$KL_CATALOG" --format prometheus \
            >"$KL_ART/$slug-replay.prom" 2>"$KL_ART/$slug-replay.err"; then
        kl_fail "$label: accord replay failed: $(tail -1 "$KL_ART/$slug-replay.err")"
        return 0
    fi
    t0=$(kl_now_ms)
    while :; do
        kl_metrics "$port" >"$KL_ART/$slug-live.prom" || true
        if "$KL_PY" "$KL_ROOT/scripts/ci/lib/counters_equal.py" "$KL_ART/$slug-live.prom" \
                "$KL_ART/$slug-replay.prom" "${req[@]}" >"$KL_ART/$slug-compare.txt" 2>&1; then
            kl_pass "$label: live counters equal accord replay of the broker's records, series by series" \
                "($(head -1 "$KL_ART/$slug-compare.txt"); settled $(($(kl_now_ms) - t0)) ms after the read-back)"
            return 0
        fi
        (($(kl_now_ms) < t0 + secs * 1000)) || break
        sleep 1
    done
    kl_fail "$label: live counters differ from accord replay after ${secs}s:"
    head -30 "$KL_ART/$slug-compare.txt"
}
