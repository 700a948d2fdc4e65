#!/usr/bin/env bash
# Installs everything Perp-EX needs into the checkout, from PyPI, npm and Debian only.
# Idempotent: a second run with nothing changed returns in about a second.
#   .venv/          Python >= 3.11 virtualenv with perpex installed editable (+ dev, local extras)
#   .venv-helm/     Python 3.12 virtualenv with helm-sdkpy (the real Helm engine, for `helm lint`)
#   node_modules/   Foundry (forge, anvil, cast), solcjs, OpenZeppelin (5, and 4 under an alias for
#                   LayerZero's EndpointV2), LayerZero V2 (oapp-evm, protocol-v2, messagelib-v2)
#                   (.npmrc: legacy-peer-deps, so their optional peers are not installed)
#   PostgreSQL 15 server binaries and Chromium (browser test) from Debian when missing
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
STAMP_DIR="$ROOT/.perpex/stamps"
mkdir -p "$STAMP_DIR"
log() { printf '[bootstrap] %s\n' "$*" >&2; }
LOG_DIR="$ROOT/.perpex/logs"
mkdir -p "$LOG_DIR"
# Run a noisy install step with its output in a log file; show the tail when it fails.
quiet() {
  local name="$1"; shift
  if ! "$@" >"$LOG_DIR/$name.log" 2>&1; then
    log "$name failed; last lines of $LOG_DIR/$name.log:"
    tail -n 40 "$LOG_DIR/$name.log" >&2
    exit 1
  fi
}

hash_of() { cat "$@" 2>/dev/null | sha256sum | cut -d' ' -f1; }

# ---- PostgreSQL server (Debian) ----
pg_bindir() {
  for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && { echo "$d"; return 0; }
  done
  return 1
}
if ! pg_bindir >/dev/null; then
  log "installing PostgreSQL server from Debian packages"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  quiet apt $SUDO apt-get update
  quiet apt $SUDO apt-get install -y postgresql
fi

# ---- Headless Chromium (Debian) for the dashboard's browser test ----
if ! command -v chromium >/dev/null 2>&1 && [ "${PERPEX_SKIP_BROWSER:-0}" != "1" ]; then
  log "installing Chromium from Debian packages (PERPEX_SKIP_BROWSER=1 skips)"
  export DEBIAN_FRONTEND=noninteractive
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  quiet apt $SUDO apt-get update
  quiet apt $SUDO apt-get install -y chromium
fi

# ---- Python virtualenv ----
PY="${PERPEX_PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  log "creating .venv with $($PY --version)"
  "$PY" -m venv .venv
fi
want="$(hash_of pyproject.toml)"
if [ "$(cat "$STAMP_DIR/pip" 2>/dev/null)" != "$want" ]; then
  log "installing Python packages"
  quiet pip .venv/bin/pip install --disable-pip-version-check --upgrade pip
  quiet pip .venv/bin/pip install --disable-pip-version-check -e ".[dev,local]"
  echo "$want" > "$STAMP_DIR/pip"
fi

# ---- Node toolchain (Foundry, solcjs, OpenZeppelin, LayerZero) ----
want="$(hash_of package.json package-lock.json)"
if [ "$(cat "$STAMP_DIR/npm" 2>/dev/null)" != "$want" ] || [ ! -x node_modules/@foundry-rs/forge-linux-amd64/bin/forge ]; then
  log "installing npm packages"
  if [ -f package-lock.json ]; then quiet npm npm ci --no-audit --no-fund; else quiet npm npm install --no-audit --no-fund; fi
  echo "$want" > "$STAMP_DIR/npm"
fi

# ---- Helm engine (helm-sdkpy needs Python >= 3.12) ----
if [ ! -x .venv-helm/bin/python ] || ! .venv-helm/bin/python -c 'import helm_sdkpy' 2>/dev/null; then
  PY312=""
  for cand in python3.13 python3.12 "$HOME/.pyenv/versions/3.12.1/bin/python3" "$HOME/.pyenv/versions/3.13.0/bin/python3"; do
    if command -v "$cand" >/dev/null 2>&1 && "$cand" -c 'import sys; sys.exit(sys.version_info < (3, 12))' 2>/dev/null; then
      PY312="$cand"; break
    fi
    if [ -z "$PY312" ] && command -v pyenv >/dev/null 2>&1; then
      p="$(PYENV_VERSION=3.12.1 pyenv which python3 2>/dev/null || true)"
      [ -n "$p" ] && [ -x "$p" ] && { PY312="$p"; break; }
    fi
  done
  if [ -n "$PY312" ]; then
    log "creating .venv-helm with $($PY312 --version)"
    "$PY312" -m venv .venv-helm
    quiet helm-pip .venv-helm/bin/pip install --disable-pip-version-check "helm-sdkpy==0.1.32"
  else
    log "WARNING: no Python >= 3.12 found; helm lint will be skipped"
  fi
fi
log "ready"
