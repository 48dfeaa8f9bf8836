#!/usr/bin/env bash
# Installs what building and testing Keyward needs, idempotently: each tool is checked first
# and only installed when missing or at the wrong version. Used by `make run`, `make test` and CI.
#   .ci/tools.sh build   -> wasm target, cargo-leptos, wasm-bindgen-cli, npm build tools
#   .ci/tools.sh test    -> the above plus rustfmt/clippy and Chromium (Debian) for end-to-end tests
set -euo pipefail
cd "$(dirname "$0")/.."
mode="${1:-build}"
export PATH="$HOME/.cargo/bin:$PWD/node_modules/.bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*"; }

if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-unknown-unknown; then
  say "adding the wasm32-unknown-unknown target"
  rustup target add wasm32-unknown-unknown
fi

if [ "$mode" = test ]; then
  for c in rustfmt clippy; do
    rustup component list --installed 2>/dev/null | grep -q "^$c" || rustup component add "$c"
  done
fi

# cargo-leptos 0.3.4 is the newest that builds with rustc 1.95; `no_downloads` turns a missing
# wasm-bindgen/wasm-opt into a clear error instead of a download attempt.
if [ "$(cargo leptos --version 2>/dev/null | awk '{print $2}')" != "0.3.4" ]; then
  say "installing cargo-leptos 0.3.4 (about 10 minutes on 2 cores, once)"
  cargo install cargo-leptos --version 0.3.4 --locked --features no_downloads
fi

# wasm-bindgen-cli must match the wasm-bindgen crate in Cargo.lock exactly.
wb_version=$(awk '/^name = "wasm-bindgen"$/{getline; gsub(/"/,"",$3); print $3; exit}' Cargo.lock)
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$wb_version" ]; then
  say "installing wasm-bindgen-cli $wb_version"
  # Without --locked: the CLI's own lockfile pins a crate version the registry no longer has.
  cargo install wasm-bindgen-cli --version "$wb_version"
fi

# wasm-opt (npm binaryen) and playwright-core, pinned in package-lock.json.
if [ ! -x node_modules/.bin/wasm-opt ] || [ ! -d node_modules/playwright-core ] \
   || [ package-lock.json -nt node_modules/.package-lock.json ]; then
  say "installing npm build tools (binaryen, playwright-core)"
  npm ci --no-audit --no-fund
fi

if [ "$mode" = test ] && [ ! -x /usr/bin/chromium ]; then
  say "installing Chromium from Debian for the end-to-end tests"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
