#!/usr/bin/env bash
# Creates (once) the virtualenv a Python-driven test runs in: `venv.sh NAME` makes
# target/NAME-venv from end2end/NAME/requirements.txt (pinned, from PyPI). Idempotent:
# reinstalls only when that requirements file changed. Prints the virtualenv's bin directory.
#   NAME = sdk     the official openai and anthropic SDKs (tests/api/public_api.rs)
#   NAME = schema  schemathesis, the REST API schema fuzzer (tests/api/schema_fuzz.rs)
#   NAME = mail    aiosmtpd, an SMTP server that keeps what it receives (tests/api/sign_up.rs)
set -euo pipefail
name="${1:?usage: venv.sh sdk|schema|mail}"
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
reqs="$here/$name/requirements.txt"
venv="$root/target/$name-venv"
stamp="$venv/.requirements"
if [ ! -x "$venv/bin/python" ] || ! cmp -s "$reqs" "$stamp"; then
  python3 -m venv "$venv" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs" >&2
  cp "$reqs" "$stamp"
fi
echo "$venv/bin"
