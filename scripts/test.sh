#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, then lints, runs the Solidity
# suite with forge, and runs the Python suite against real anvil, PostgreSQL and broker
# processes that the tests start themselves on free 127.0.0.1 ports.
#   scripts/test.sh            everything
#   scripts/test.sh --fast     lint, types, unit/operator/helm tests: no forge, no integration
#   scripts/test.sh -k keeper  extra arguments go to pytest
#
# The Python suite spends most of its time waiting (services starting, chains mining, back-offs,
# outages held on purpose), so pytest runs it in PERPEX_TEST_WORKERS processes (pytest-xdist,
# default 3; 0 runs it in this process). Whole files go to one process (--dist loadfile), so a
# file's module fixtures and its order stay as written; each process starts its own anvil,
# PostgreSQL and broker. For the same reason mypy runs beside `forge build`, and `forge test`
# beside pytest (its output follows pytest's). pytest needs only the contracts and the deploy
# scripts built (`forge build --skip test`, about 20 s from scratch instead of 45 s); forge test
# builds everything in .perpex/forge-test/, so the two never write the same build output.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FAST=0
if [ "${1:-}" = "--fast" ]; then
  FAST=1
  shift
fi
bash scripts/bootstrap.sh

LOG_DIR="$ROOT/.perpex/logs"
mkdir -p "$LOG_DIR"
# background jobs of this script do not outlive it (Ctrl-C, a failed step)
trap 'jobs -p | xargs -r kill 2>/dev/null || true' EXIT

WORKERS="${PERPEX_TEST_WORKERS:-3}"
XDIST=(-n "$WORKERS" --dist loadfile)

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --check .; exit 1; }

if [ "$FAST" = "1" ]; then
  echo "== mypy"
  .venv/bin/mypy shared services perpex_cli perpex_dev
  echo "== pytest (fast: not integration)"
  set +e
  .venv/bin/pytest -q -p no:cacheprovider "${XDIST[@]}" -m "not integration" "$@"
  rc=$?
else
  echo "== mypy (beside forge build)"
  .venv/bin/mypy shared services perpex_cli perpex_dev >"$LOG_DIR/mypy.log" 2>&1 &
  mypy_pid=$!
  echo "== forge build (contracts and scripts)"
  scripts/forge.sh build --quiet --skip test
  if ! wait "$mypy_pid"; then
    cat "$LOG_DIR/mypy.log"
    exit 1
  fi
  cat "$LOG_DIR/mypy.log"

  echo "== forge test (beside pytest; its output follows pytest's)"
  FORGE_TEST_DIR="$ROOT/.perpex/forge-test"
  FOUNDRY_OUT="$FORGE_TEST_DIR/out" FOUNDRY_CACHE_PATH="$FORGE_TEST_DIR/cache" \
    scripts/forge.sh test >"$LOG_DIR/forge-test.log" 2>&1 &
  forge_pid=$!

  echo "== pytest"
  set +e
  .venv/bin/pytest -q -p no:cacheprovider "${XDIST[@]}" -m "not serial" "$@"
  rc=$?
  # Tests whose promise is a number of blocks or a share of reverted transactions under races
  # and faults (marked `serial`) run alone, not beside two other busy test processes.
  echo "== pytest (serial: timing-sensitive, alone)"
  .venv/bin/pytest -q -p no:cacheprovider -m serial "$@"
  serial_rc=$?
  if [ "$rc" -eq 5 ] && [ "$serial_rc" -eq 5 ]; then
    rc=5
  elif [ "$rc" -eq 0 ] || [ "$rc" -eq 5 ]; then
    rc=$serial_rc
    [ "$rc" -eq 5 ] && rc=0
  fi
  wait "$forge_pid"
  forge_rc=$?
  echo "== forge test"
  cat "$LOG_DIR/forge-test.log"
  if [ "$forge_rc" -ne 0 ]; then
    echo "forge test failed (exit $forge_rc)" >&2
    [ "$rc" -eq 0 ] && rc=1
  fi
fi
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
