#!/usr/bin/env bash
# Self-test for scripts/ci/services.sh: install, start, create_topic, stop and
# kill a tansu broker (no Kafka client needed). Takes a few seconds once tansu
# is installed; fails if it takes more than 60 s. Prints one PASS/FAIL line
# per check and "services-selftest: N passed, M failed" as the last line.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source-path=SCRIPTDIR source=services.sh
source "$here/services.sh"
services_install_trap

not() { ! "$@"; }

topic_partitions() { # topic_partitions NAME PORT -> prints partition count (0: no such topic)
    "$TANSU_BIN" topic list --broker "tcp://127.0.0.1:$2" | ci_py topic_partitions "$1" 0
}
has_partitions() { [[ "$(topic_partitions "$1" "$2")" == "$3" ]]; }

SECONDS=0
check "install_tansu" install_tansu
check "install_tansu again (idempotent)" install_tansu
check "tansu binary runs" "$TANSU_BIN" --version >/dev/null

port="$(pick_free_port)"
check "start_tansu $port" start_tansu "$port"
check "port accepts connections" wait_port "$port" 1
check "start_tansu again is a no-op" start_tansu "$port"
check "create_topic selftest 4" create_topic selftest 4 "$port"
check "topic has 4 partitions" has_partitions selftest "$port" 4
check "create_topic again (idempotent)" create_topic selftest 4 "$port"
check "create_topic with other partition count fails" not create_topic selftest 2 "$port"
check "stop_tansu" stop_tansu
check "port closed after stop_tansu" not _probe_port "$port"
check "restart on same port" start_tansu "$port"
check "memory storage: topic gone after restart" has_partitions selftest "$port" 0
check "kill_tansu" kill_tansu
check "port closed after kill_tansu" not _probe_port "$port"
check "wait_port gives up on a closed port" not wait_port "$port" 1
stop_all_services

check "finished within 60 s (took ${SECONDS}s)" test "$SECONDS" -le 60
results_summary
results_ok
