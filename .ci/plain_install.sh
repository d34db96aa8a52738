#!/usr/bin/env bash
# A plain install, as a user makes it: a fresh virtualenv, `pip install .` with no extras, then
# the smoke test (store, OTLP gRPC and HTTP to loopback receivers); then the `instrument` extra
# and the no-code route (`opentelemetry-instrument`, with OTEL_METRICS_EXPORTER=recursive alone too),
# `opentelemetry-bootstrap -a install` (needs the index) and the route again. See .ci/plain_install_smoke.py.
set -euo pipefail
cd "$(dirname "$0")/.."
venv="$(mktemp -d "${TMPDIR:-/tmp}/orm-plain-venv.XXXXXX")"
trap 'rm -rf "${venv}"' EXIT
python -m venv "${venv}"
"${venv}/bin/python" -m pip install -q --disable-pip-version-check .
"${venv}/bin/python" .ci/plain_install_smoke.py plain
"${venv}/bin/python" -m pip install -q --disable-pip-version-check ".[instrument]"
"${venv}/bin/python" .ci/plain_install_smoke.py instrument
