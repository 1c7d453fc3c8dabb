#!/usr/bin/env bash
# Static checks of accord's ops artifacts, against the real tools.
#
#   bash scripts/ci/ops-static.sh
#
# Installs what it lacks (Debian 12: prometheus -> promtool,
# prometheus-alertmanager -> amtool + alertmanager, docker-compose 1.29; PyPI:
# check-jsonschema, PyYAML), then checks:
#   rules       promtool check rules, promtool test rules, the fast-`for:`
#               variant (scripts/ci/fast-rules.sh), alert hygiene (severity,
#               summary, description, runbook_url -> docs/runbooks.md anchor,
#               for:, guard, firing + quiet unit tests)
#   prometheus  promtool check config in a temp dir that mirrors the compose
#               mounts (rule_files resolve relative to the config file)
#   alertmgr    amtool check-config, routing (critical->pager,
#               warning->ticket), inhibitions on a real local Alertmanager
#               (127.0.0.1, random port, stopped afterwards)
#   compose     check-jsonschema (compose spec), docker-compose config -q,
#               Debian-1.29 compatibility, 127.0.0.1 ports, healthchecks,
#               pinned images, mount sources; Dockerfile shape
#   dashboards  schemaVersion 41, stable uid, no id, datasource + feature
#               variables, ${datasource} everywhere, $__rate_interval windows;
#               every PromQL expr extracted to target/ops/dashboard-queries.txt
#               and parsed by promtool
#   metrics     every metric named in rules, rule tests and dashboards is in
#               the metric contract (src/export/contract_metrics.txt: contract
#               metrics and extras), is `up`, or is a recording rule; label
#               names and enumerated label values are checked too; the
#               contract file matches the product specification's metrics
#               table when ../shared/SPEC.md is at hand
#   synthetic   a real Prometheus (127.0.0.1, random port, stopped afterwards)
#               scrapes a synthetic accord-shaped exporter with the fast-`for:`
#               rules: every rule evaluates without error, every dashboard
#               query evaluates and returns data (catches runtime errors such
#               as many-to-many matches that parsing cannot)
# The Python halves of the checks are scripts/ci/lib/ops_*.py.
#
# Output: target/ops/ (logs, extracted queries). Prints a PASS/FAIL line per
# check and "ops-static: N passed, M failed"; exits 1 on any failure.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=scripts/ci/lib/common.sh
source scripts/ci/lib/common.sh
OUT=$ROOT/target/ops
CI_LOG_DIR=$OUT
mkdir -p "$OUT"

# ---------------------------------------------------------------------------
# Tools (idempotent: apt-get update only when something is missing).
# ---------------------------------------------------------------------------
ensure_tools() {
  local pkgs=()
  command -v promtool >/dev/null || pkgs+=(prometheus)
  { command -v amtool >/dev/null && command -v prometheus-alertmanager >/dev/null; } || pkgs+=(prometheus-alertmanager)
  command -v docker-compose >/dev/null || pkgs+=(docker-compose)
  command -v python3 >/dev/null || pkgs+=(python3 python3-pip)
  if ((${#pkgs[@]})); then
    apt_install "${pkgs[@]}" >/dev/null
  fi
  local py=()
  command -v check-jsonschema >/dev/null || py+=(check-jsonschema)
  python3 -c 'import yaml' 2>/dev/null || py+=(pyyaml)
  if ((${#py[@]})); then
    pip_install "${py[@]}"
    hash -r
  fi
  command -v check-jsonschema >/dev/null || PATH="$(python3 -m site --user-base)/bin:$PATH"
}
check_jsonschema() {
  # pyenv may need a rehash before the console script appears; the module
  # entry point always works.
  if command -v check-jsonschema >/dev/null; then check-jsonschema "$@"; else python3 -m check_jsonschema "$@"; fi
}
ensure_tools

# ---------------------------------------------------------------------------
# Checks.
# ---------------------------------------------------------------------------
check_prom_config() {
  # Mirror the compose mounts: /etc/prometheus/{prometheus.yml,rules/}.
  local tmp
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' RETURN
  cp deploy/prometheus.yml "$tmp/prometheus.yml"
  cp -r rules "$tmp/rules"
  promtool check config "$tmp/prometheus.yml"
}

check_routes() {
  local cfg=deploy/alertmanager.yml
  amtool config routes test --config.file=$cfg --verify.receivers=pager severity=critical alertname=AccordDown
  amtool config routes test --config.file=$cfg --verify.receivers=pager severity=critical alertname=AccordExposedAgreementBurnRateFast feature=checkout_v2
  amtool config routes test --config.file=$cfg --verify.receivers=ticket severity=warning alertname=AccordLayerPairDivergence feature=checkout_v2
  amtool config routes test --config.file=$cfg --verify.receivers=ticket alertname=Unlabelled
  grep -Eq 'group_by: \[alertname, feature\]' $cfg
}

check_fast_rules() {
  scripts/ci/fast-rules.sh rules/accord.rules.yml "$OUT/accord.fast.rules.yml"
  promtool check rules "$OUT/accord.fast.rules.yml"
}

check_dashboard_queries() {
  ci_py ops_dashboards queries
  promtool check rules "$OUT/dashboard-queries.rules.yml"
}

check_logged "promtool check rules"           promtool check rules rules/accord.rules.yml
check_logged "promtool test rules"            promtool test rules rules/accord.rules.test.yml
check_logged "rules: fast for: variant"       check_fast_rules
check_logged "rules: alert hygiene"           ci_py ops_hygiene
check_logged "promtool check config"          check_prom_config
check_logged "amtool check-config"            amtool check-config deploy/alertmanager.yml
check_logged "alertmanager routing"           check_routes
check_logged "alertmanager inhibition (live)" ci_py ops_inhibition
check_logged "compose: compose-spec schema"   check_jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
check_logged "compose: docker-compose config" docker-compose -f docker-compose.yml config -q
check_logged "compose: conventions"           ci_py ops_deploy compose
check_logged "Dockerfile"                     ci_py ops_deploy dockerfile
check_logged "dashboards: JSON sanity"        ci_py ops_dashboards check
check_logged "dashboards: PromQL parses"      check_dashboard_queries
check_logged "metrics: names and labels"      ci_py ops_metrics
check_logged "synthetic Prometheus: rules + queries evaluate" ci_py ops_synthetic

summary_extra() {
  echo "queries for live tests: target/ops/dashboard-queries.txt (resolved: dashboard-queries.resolved.txt)"
}
results_summary
results_ok
