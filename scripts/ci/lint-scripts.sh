#!/usr/bin/env bash
# Static checks of the CI scripts themselves:
#   - `bash -n` and shellcheck on every shell script: .ci/run,
#     scripts/ci/*.sh and scripts/ci/lib/*.sh (sourced files followed, -x);
#   - `python3 -m py_compile` and ruff (scripts/ci/lib/ruff.toml) on every
#     scripts/ci/lib/*.py.
# Installs shellcheck (Debian) and ruff (PyPI, pinned) when missing.
#
#   bash scripts/ci/lint-scripts.sh
#
# Prints one PASS/FAIL line per check and "lint-scripts: N passed, M
# failed" as the last line; exits 1 on any failure.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
ROOT=$PWD
# shellcheck source=scripts/ci/lib/common.sh
source scripts/ci/lib/common.sh

# Pinned: a newer ruff may add rules, and CI must not change under a commit.
ACCORD_RUFF_SPEC="${ACCORD_RUFF_SPEC:-ruff==0.17.6}"

shell_scripts=(.ci/run scripts/ci/*.sh scripts/ci/lib/*.sh)
python_modules=(scripts/ci/lib/*.py)

command -v shellcheck >/dev/null || apt_install shellcheck >/dev/null
command -v ruff >/dev/null || {
    pip_install "$ACCORD_RUFF_SPEC"
    hash -r
    command -v ruff >/dev/null || PATH="$("$(ci_python)" -m site --user-base)/bin:$PATH"
}

syntax_ok() {
    local f rc=0
    for f in "${shell_scripts[@]}"; do bash -n "$f" || rc=1; done
    return "$rc"
}
# Byte code goes to target/, not next to the sources.
compile_ok() { PYTHONPYCACHEPREFIX="$ROOT/target/pycache" "$(ci_python)" -m py_compile "${python_modules[@]}"; }

check "bash -n (${#shell_scripts[@]} shell scripts)" syntax_ok
check "shellcheck ($(shellcheck --version | sed -n 's/^version: //p'))" shellcheck -x "${shell_scripts[@]}"
check "py_compile (${#python_modules[@]} Python modules)" compile_ok
check "ruff check ($(ruff --version))" ruff check --no-cache scripts/ci/lib
results_summary
results_ok
