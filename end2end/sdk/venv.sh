#!/usr/bin/env bash
# Creates (once) the virtualenv the SDK tests run in: target/sdk-venv with the pinned official
# openai and anthropic SDKs from PyPI. Idempotent: reinstalls only when requirements.txt changed.
# Prints the virtualenv's python.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="$root/target/sdk-venv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$here/requirements.txt" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$here/requirements.txt" >&2
  cp "$here/requirements.txt" "$stamp"
fi
echo "$venv/bin/python"
