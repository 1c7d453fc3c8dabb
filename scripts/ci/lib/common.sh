# shellcheck shell=bash
# scripts/ci/lib/common.sh: helpers shared by the CI scripts. Source it (the
# scripts do so from the repository root); do not execute it:
#
#   source scripts/ci/lib/common.sh
#   log "starting"                       # [name HH:MM:SS +Ns] starting
#   check "port answers" wait_port 8080 5
#   require "accord is ready" wait_http "$url/readyz" 30
#   results_summary
#   results_ok                           # the exit status: 0 iff nothing failed
#
# Reporting: pass, fail, check, require, check_logged, results_summary,
#   results_ok, results_on_exit. Every check prints one "PASS  name" or
#   "FAIL  name" line; results_summary ends with "NAME: N passed, M failed".
# Output: log, step (a section header), fig (a figure, also appended to
#   $CI_FIGURES when set).
# Processes: now_ms, pid_alive, stop_pid.
# Installs: apt_install (Debian), pip_install (PyPI), ci_python, ci_py
#   (runs a Python helper of this directory).
#
# Works under `set -euo pipefail`. CI_NAME (default: the script's name
# without .sh) prefixes log lines and the summary.

if [[ -n "${_ACCORD_COMMON_SH_LOADED:-}" ]]; then
    return 0
fi
_ACCORD_COMMON_SH_LOADED=1

CI_LIB="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
CI_NAME="${CI_NAME:-$(basename "$0" .sh)}"

# ------------------------------------------------------------- reporting --

CI_PASSED=0
CI_FAILED=0
declare -ga CI_RESULTS=()
CI_SUMMARY_DONE=""

pass() { CI_PASSED=$((CI_PASSED + 1)); CI_RESULTS+=("PASS  $*"); echo "PASS  $*"; }
fail() { CI_FAILED=$((CI_FAILED + 1)); CI_RESULTS+=("FAIL  $*"); echo "FAIL  $*"; }

# check NAME CMD...: runs CMD (its output is shown); PASS if it exits 0.
# Always returns 0, so the script goes on with the next check. CMD runs as
# on the left of ||, where bash suspends `set -e`: a function given as CMD
# must chain its steps with && or return its status (check_logged does not
# have this limit).
check() {
    local name=$1 rc=0
    shift
    "$@" || rc=$?
    if ((rc == 0)); then pass "$name"; else fail "$name"; fi
    return 0
}

# require NAME CMD...: like check, but the script cannot go on without it:
# on failure prints the summary and exits 1.
require() {
    local before=$CI_FAILED
    check "$@"
    if ((CI_FAILED > before)); then
        results_summary
        exit 1
    fi
}

# check_logged NAME CMD...: runs CMD in a subshell with `set -e` (so a
# function fails at its first failing command), its output to
# $CI_LOG_DIR/NAME.log (default: the current directory); on failure the last
# 40 lines of the log are shown; the summary names the log (relative to
# $ROOT when set).
check_logged() {
    local name=$1 rc errexit="" log
    shift
    log="${CI_LOG_DIR:-.}/${name//[^A-Za-z0-9_.-]/_}.log"
    # Not `( ... ) || rc=$?`: on the left of || bash ignores `set -e` inside.
    [[ $- != *e* ]] || errexit=1
    set +e
    (set -e; "$@") >"$log" 2>&1
    rc=$?
    [[ -z "$errexit" ]] || set -e
    if ((rc == 0)); then
        pass "$name"
    else
        fail "$name"
        local shown=$log
        [[ -z "${ROOT:-}" ]] || shown=${log#"$ROOT"/}
        CI_RESULTS[${#CI_RESULTS[@]} - 1]="FAIL  $name  (log: $shown)"
        sed 's/^/      | /' "$log" | tail -n 40
    fi
}

# results_summary: "== NAME summary ==", the output of the function
# summary_extra if the script defines one, every PASS/FAIL line, the run
# time, and "NAME: N passed, M failed" as the last line.
results_summary() {
    CI_SUMMARY_DONE=1
    echo
    echo "== $CI_NAME summary =="
    if declare -F summary_extra >/dev/null; then summary_extra || true; fi
    ((${#CI_RESULTS[@]} == 0)) || printf '%s\n' "${CI_RESULTS[@]}"
    echo "$CI_NAME: finished in ${SECONDS}s"
    echo "$CI_NAME: $CI_PASSED passed, $CI_FAILED failed"
}

# results_ok: exit status 0 iff no check failed.
results_ok() { ((CI_FAILED == 0)); }

# results_on_exit RC: for an EXIT trap. If the summary was not printed yet
# (the script stopped early), records the abort as a failure and prints the
# summary. Sets CI_EXIT to the exit status to use: RC, or 1 for an abort
# with status 0.
results_on_exit() {
    CI_EXIT=$1
    if [[ -z "$CI_SUMMARY_DONE" ]]; then
        fail "aborted (exit $CI_EXIT) after: ${CI_RESULTS[${#CI_RESULTS[@]} - 1]:-start}; see the output above"
        results_summary
        ((CI_EXIT != 0)) || CI_EXIT=1
    fi
}

# ---------------------------------------------------------------- output --

log() { printf '[%s %(%H:%M:%S)T +%ss] %s\n' "$CI_NAME" -1 "$SECONDS" "$*"; }

# step TITLE: a section header with the time since the script started.
step() { printf '\n=== [%4ss] %s\n' "$SECONDS" "$*"; }

# fig NAME VALUE: a measured figure, printed and appended to $CI_FIGURES.
fig() {
    if [[ -n "${CI_FIGURES:-}" ]]; then
        printf '%-32s %s\n' "$1" "$2" | tee -a "$CI_FIGURES"
    else
        printf '%-32s %s\n' "$1" "$2"
    fi
}

# ------------------------------------------------------------- processes --

now_ms() { date +%s%3N; }

# pid_alive PID: process exists and is not a zombie. (A PID that vanishes
# between the checks, e.g. reaped by bash meanwhile, counts as dead.)
pid_alive() {
    local pid="${1:-}" stat=""
    [[ -n "$pid" ]] || return 1
    kill -0 "$pid" 2>/dev/null || return 1
    if [[ -d /proc/self ]]; then
        { read -r stat <"/proc/$pid/stat"; } 2>/dev/null || return 1
        stat="${stat##*) }" # skip "pid (comm) ": comm may hold spaces
        [[ "${stat:0:1}" != [ZX] ]] || return 1
    fi
    return 0
}

# stop_pid PID [GRACE_SECS=10]: SIGTERM, SIGKILL after the grace period,
# then reap it if it is our child. No-op for an empty or dead PID.
stop_pid() {
    local pid="${1:-}" grace="${2:-10}" i
    [[ -n "$pid" ]] || return 0
    if pid_alive "$pid"; then
        kill -TERM "$pid" 2>/dev/null || true
        for ((i = 0; i < grace * 10; i++)); do
            pid_alive "$pid" || break
            sleep 0.1
        done
        if pid_alive "$pid"; then kill -KILL "$pid" 2>/dev/null || true; fi
    fi
    { wait "$pid"; } 2>/dev/null || true
}

# -------------------------------------------------------------- installs --

_CI_APT_UPDATED=""

# apt_install PKG...: apt-get install with one `apt-get update` per shell and
# a wait for the dpkg lock (other jobs may be running apt).
apt_install() {
    local sudo=()
    if [[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null; then sudo=(sudo); fi
    if [[ -z "$_CI_APT_UPDATED" ]]; then
        log "apt-get update" >&2
        timeout 600 "${sudo[@]}" apt-get -o DPkg::Lock::Timeout=300 update -qq || {
            echo "apt-get update failed" >&2
            return 1
        }
        _CI_APT_UPDATED=1
    fi
    log "apt-get install $*" >&2
    timeout 1200 "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
        apt-get -o DPkg::Lock::Timeout=300 install -y -qq "$@" >&2 || {
        echo "apt-get install $* failed" >&2
        return 1
    }
}

# ci_python: prints the Python interpreter to use ($PYTHON, python3, python).
ci_python() {
    if [[ -n "${PYTHON:-}" ]]; then printf '%s\n' "$PYTHON"; return 0; fi
    command -v python3 || command -v python || return 1
}

# pip_install SPEC...: pip install (quiet, bounded); on a Debian system
# Python that refuses (externally managed) retries with
# --break-system-packages.
pip_install() {
    local py
    py="$(ci_python)" || { echo "pip_install: no python" >&2; return 1; }
    log "pip install $*" >&2
    timeout 600 "$py" -m pip install -q --disable-pip-version-check "$@" >&2 2>/dev/null \
        || timeout 600 "$py" -m pip install -q --disable-pip-version-check --break-system-packages "$@" >&2 || {
        echo "pip install $* failed" >&2
        return 1
    }
}

# ci_py MODULE ARGS...: runs scripts/ci/lib/MODULE.py.
ci_py() {
    local py module=$1
    shift
    py="$(ci_python)" || { echo "ci_py: no python" >&2; return 127; }
    "$py" "$CI_LIB/$module.py" "$@"
}
