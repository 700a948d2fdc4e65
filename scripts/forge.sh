#!/usr/bin/env bash
# Runs the npm-installed forge (Foundry 1.7.1) from contracts/ with the project's offline config.
#   scripts/forge.sh build | test | test --gas-report | script script/Deploy.s.sol ...
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
FORGE="$ROOT/node_modules/@foundry-rs/forge-linux-amd64/bin/forge"
if [ ! -x "$FORGE" ]; then
  echo "forge not found at $FORGE; run scripts/bootstrap.sh first" >&2
  exit 127
fi
cd "$ROOT/contracts"
# Keep forge from phoning home (no network here except package registries).
export FOUNDRY_OFFLINE=true
export FOUNDRY_DISABLE_NIGHTLY_WARNING=1
exec "$FORGE" "$@"
