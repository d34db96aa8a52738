#!/usr/bin/env bash
# Build otelcol-recursive (via build.sh, cached) and validate every supported config stack:
# base.yaml plus each overlay, first with the defaults, then with the opt-in settings switched
# on (every exporter in the pipeline, headers, resource labels). Exits non-zero if any fails.
# Validation resolves ${env:...}, decodes every component's config and checks the pipelines; it
# opens no port and sends nothing. Beware: the prometheus_remote_write exporter (v0.161.0) accepts
# keys it does not know without a word (a typo there validates), so its settings are checked by
# the end-to-end tests in tests/collector/ instead.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
otelcol="$("${here}/build.sh" | tail -n 1)"
[[ -x "${otelcol}" ]] || { echo "validate.sh: error: build.sh gave no binary (${otelcol})" >&2; exit 1; }

overlays=(agent gateway dev dlq-replay)
passed=0
failed=0

check() {  # check LABEL OVERLAY [VAR=VALUE...]: validate base.yaml + OVERLAY.yaml in that environment
  local label="$1" overlay="$2"
  shift 2
  if (cd "${here}" && env "$@" "${otelcol}" validate --config base.yaml --config "${overlay}.yaml"); then
    echo "ok    ${label}"
    passed=$((passed + 1))
  else
    echo "FAIL  ${label}"
    failed=$((failed + 1))
  fi
}

for overlay in "${overlays[@]}"; do
  check "base.yaml + ${overlay}.yaml (defaults)" "${overlay}"
done

opt_in=(
  GATEWAY_EXPORTERS='[prometheus_remote_write, otlp_grpc/backend, otlp_http/backend]'
  DLQ_REPLAY_EXPORTERS='[prometheus_remote_write, otlp_grpc/backend, otlp_http/backend]'
  OTLP_BACKEND_HEADERS='{authorization: "Bearer not-a-secret"}'
  PRW_RESOURCE_LABELS='[training.run.id, training.rank, "k8s.*"]'
  GATEWAY_PROCESSORS='[memory_limiter]' PRW_QUEUE_ENABLED=false
  OTLP_GRPC_ENDPOINT=0.0.0.0:4317 OTLP_HTTP_ENDPOINT=0.0.0.0:4318
  GATEWAY_INSECURE=false DEBUG_VERBOSITY=detailed
)
for overlay in "${overlays[@]}"; do
  check "base.yaml + ${overlay}.yaml (opt-in settings)" "${overlay}" "${opt_in[@]}"
done

echo "collector configs: ${passed} passed, ${failed} failed"
[[ ${failed} -eq 0 ]]
