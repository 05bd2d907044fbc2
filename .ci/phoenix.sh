#!/usr/bin/env bash
# Build (once per machine, cached) the Arize Phoenix venv the OTLP backend tests run, and print
# its python path on stdout. .ci/run exports it as SSETAP_PHOENIX_PYTHON:
#   SSETAP_PHOENIX_PYTHON=$(bash .ci/phoenix.sh) || true
# Phoenix is an OpenTelemetry backend (OTLP/HTTP protobuf at /v1/traces) from PyPI, ~800 MB,
# so it lives in its own venv outside the project's, like the mcp>=2 peer venv.
set -euo pipefail
venv="${SSETAP_PHOENIX_VENV:-$HOME/.cache/ssetap/phoenix-venv}"
python=${PHOENIX_BUILD_PYTHON:-python3}
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import phoenix' 2>/dev/null; then
  echo "== phoenix venv ($venv), a one-time install of arize-phoenix" >&2
  rm -rf "$venv"
  mkdir -p "$(dirname "$venv")"
  "$python" -m venv "$venv"
  "$venv/bin/pip" install -q --upgrade pip >&2
  "$venv/bin/pip" install -q arize-phoenix >&2
fi
echo "$venv/bin/python"
