#!/usr/bin/env bash
# Replay otel-recursive-metrics dead-letter files (OTLP JSON Lines) into a Collector.
#
# Each non-empty line is one ExportMetricsServiceRequest in OTLP/JSON; it is POSTed unchanged to
# the Collector's OTLP/HTTP receiver (Content-Type: application/json). Run a replay Collector
# first (base.yaml + dlq-replay.yaml, listening on localhost:4328), or point DLQ_REPLAY_URL at
# any Collector's OTLP/HTTP receiver, e.g. an agent's http://localhost:4318/v1/metrics.
#
# Environment:
#   DLQ_GLOB        files to replay        default ./otel-metrics/dead-letter/*.jsonl
#   DLQ_REPLAY_URL  where to POST          default http://${DLQ_REPLAY_HTTP_ENDPOINT:-localhost:4328}/v1/metrics
#
# Files are never changed or deleted. Lines the Collector refuses are copied, with their file and
# line number, to stderr's summary and to "<file>.rejected" beside the file; exit status is 1 if
# any line was refused or could not be sent, 0 otherwise.
set -euo pipefail

glob="${DLQ_GLOB:-./otel-metrics/dead-letter/*.jsonl}"
url="${DLQ_REPLAY_URL:-http://${DLQ_REPLAY_HTTP_ENDPOINT:-localhost:4328}/v1/metrics}"

command -v curl >/dev/null 2>&1 || { echo "replay-dlq.sh: error: curl is required" >&2; exit 2; }

shopt -s nullglob
# shellcheck disable=SC2206  # the glob is meant to expand here
files=(${glob})
if [[ ${#files[@]} -eq 0 ]]; then
  echo "replay-dlq.sh: no files match DLQ_GLOB=${glob}" >&2
  exit 0
fi

body_file="$(mktemp)"
trap 'rm -f "${body_file}"' EXIT
sent=0
refused=0
for file in "${files[@]}"; do
  line_no=0
  while IFS= read -r line || [[ -n "${line}" ]]; do
    line_no=$((line_no + 1))
    [[ -z "${line//[[:space:]]/}" ]] && continue
    # 200 = accepted (a partial_success body is printed); anything else: kept in .rejected.
    status="$(printf '%s' "${line}" | curl --silent --show-error --output "${body_file}" \
      --write-out '%{http_code}' --max-time 120 \
      --retry 5 --retry-delay 2 --retry-connrefused \
      -H 'Content-Type: application/json' --data-binary @- "${url}" || true)"
    body="$(cat "${body_file}" 2>/dev/null || true)"
    if [[ "${status}" == "200" ]]; then
      sent=$((sent + 1))
      if [[ "${body}" == *rejected* ]]; then
        echo "replay-dlq.sh: ${file}:${line_no}: partial success: ${body}" >&2
      fi
    else
      refused=$((refused + 1))
      echo "replay-dlq.sh: ${file}:${line_no}: HTTP ${status:-none}: ${body}" >&2
      printf '%s\n' "${line}" >> "${file}.rejected"
    fi
  done < "${file}"
done
echo "replay-dlq.sh: ${sent} request(s) accepted, ${refused} refused, from ${#files[@]} file(s) to ${url}" >&2
[[ ${refused} -eq 0 ]]
