#!/usr/bin/env bash
# Installs the gateways `make bench` compares Keyward with, pinned, into target/bench (once),
#   LiteLLM proxy from PyPI in a virtualenv (never 1.82.7 or 1.82.8), the Portkey gateway from npm,
#   and wrk from Debian. Idempotent: reinstalls only when a pinned version changes.
set -euo pipefail
cd "$(dirname "$0")/.."
LITELLM_VERSION=1.80.0
PORTKEY_VERSION=1.15.2
dir=target/bench
mkdir -p "$dir"
case "$LITELLM_VERSION" in 1.82.7|1.82.8) echo "refusing LiteLLM $LITELLM_VERSION" >&2; exit 1;; esac
if [ "$("$dir/litellm-venv/bin/python" -c 'import importlib.metadata as m; print(m.version("litellm"))' 2>/dev/null)" != "$LITELLM_VERSION" ]; then
  echo "==> installing LiteLLM $LITELLM_VERSION (proxy extras) into $dir/litellm-venv"
  rm -rf "$dir/litellm-venv"
  python3 -m venv "$dir/litellm-venv"
  "$dir/litellm-venv/bin/pip" install --quiet --disable-pip-version-check "litellm[proxy]==$LITELLM_VERSION"
fi
pk="$dir/portkey/node_modules/@portkey-ai/gateway/package.json"
if [ ! -f "$pk" ] || [ "$(node -p "require('./$pk').version")" != "$PORTKEY_VERSION" ]; then
  echo "==> installing @portkey-ai/gateway $PORTKEY_VERSION into $dir/portkey"
  mkdir -p "$dir/portkey"
  (cd "$dir/portkey" && { [ -f package.json ] || npm init -y >/dev/null; } \
    && npm install --no-audit --no-fund --save-exact "@portkey-ai/gateway@$PORTKEY_VERSION" >/dev/null)
fi
# wrk (Debian's package) drives the c=1 tail windows (server/examples/tail.rs).
if ! command -v wrk >/dev/null; then
  echo "==> installing wrk from Debian"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get install -y -qq wrk >/dev/null
fi
