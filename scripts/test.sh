#!/usr/bin/env bash
# The one test command (README, CI): installs what is missing, then lints, runs the Solidity
# suite with forge, and runs the Python suite against real anvil, PostgreSQL and broker
# processes that the tests start themselves on free 127.0.0.1 ports.
#   scripts/test.sh            everything
#   scripts/test.sh --fast     lint, types, unit/operator/helm tests: no forge, no integration
#   scripts/test.sh -k keeper  extra arguments go to pytest
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
FAST=0
if [ "${1:-}" = "--fast" ]; then
  FAST=1
  shift
fi
bash scripts/bootstrap.sh

echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check . >/dev/null || { .venv/bin/ruff format --check .; exit 1; }
echo "== mypy"
.venv/bin/mypy shared services perpex_cli perpex_dev

if [ "$FAST" = "1" ]; then
  echo "== pytest (fast: not integration)"
  set +e
  .venv/bin/pytest -q -p no:cacheprovider -m "not integration" "$@"
  rc=$?
else
  echo "== forge build + test"
  scripts/forge.sh build --quiet
  scripts/forge.sh test

  echo "== pytest"
  set +e
  .venv/bin/pytest -q -p no:cacheprovider "$@"
  rc=$?
fi
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
