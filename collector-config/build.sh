#!/usr/bin/env bash
# Build the otelcol-recursive Collector from builder-config.yaml, once per manifest content.
#
# The binary is cached OUTSIDE the git clone, keyed by the sha256 of the manifest:
#   ${OTEL_RECURSIVE_METRICS_CACHE:-$HOME/.cache/otel-recursive-metrics}/collector/<sha256>/otelcol-recursive
# If that binary exists, nothing is built. The last line on stdout is always the binary's path,
# so callers can do:  OTELCOL="$(collector-config/build.sh | tail -n 1)"
#
# Needs Go (>= 1.26, what the pinned release's go.mod asks for) and the Go module proxy.
# The first build takes several minutes on 2 cores; later runs return at once.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
manifest="${here}/builder-config.yaml"
cache_root="${OTEL_RECURSIVE_METRICS_CACHE:-${HOME}/.cache/otel-recursive-metrics}"

log() { printf 'build.sh: %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

[[ -f "${manifest}" ]] || die "manifest not found: ${manifest}"

if command -v sha256sum >/dev/null 2>&1; then
  manifest_sha="$(sha256sum "${manifest}" | cut -d' ' -f1)"
else
  manifest_sha="$(shasum -a 256 "${manifest}" | cut -d' ' -f1)"
fi
dist_dir="${cache_root}/collector/${manifest_sha}"
binary="${dist_dir}/otelcol-recursive"

if [[ -x "${binary}" ]]; then
  log "cached: ${binary}"
  printf '%s\n' "${binary}"
  exit 0
fi

# Go: from PATH, else the usual install location.
if ! command -v go >/dev/null 2>&1 && [[ -x /usr/local/go/bin/go ]]; then
  PATH="/usr/local/go/bin:${PATH}"
fi
command -v go >/dev/null 2>&1 \
  || die "Go is not installed (no 'go' on PATH nor /usr/local/go/bin/go). Install Go >= 1.26 and re-run."
# Never let the go command fetch another toolchain behind our back; set GOTOOLCHAIN to override.
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

# The builder release is the core release the manifest pins (its `telemetry` line).
ocb_version="$(sed -n 's|^[[:space:]]*gomod:[[:space:]]*go.opentelemetry.io/collector/service[[:space:]]\{1,\}\(v[0-9][^[:space:]]*\).*|\1|p' "${manifest}" | head -n 1)"
[[ -n "${ocb_version}" ]] || die "cannot read the core release from the telemetry line of ${manifest}"

ocb_dir="${cache_root}/builder/${ocb_version}"
ocb="${ocb_dir}/builder"
if [[ ! -x "${ocb}" ]]; then
  log "installing go.opentelemetry.io/collector/cmd/builder@${ocb_version} into ${ocb_dir}"
  mkdir -p "${ocb_dir}"
  GOBIN="${ocb_dir}" go install "go.opentelemetry.io/collector/cmd/builder@${ocb_version}" >&2
fi

# Build into a scratch folder beside the final one and rename it into place at the end, so an
# interrupted build never leaves a half-made distribution that a later run would take as done.
mkdir -p "${cache_root}/collector"
work_dir="$(mktemp -d "${cache_root}/collector/${manifest_sha}.tmp.XXXXXX")"
trap 'rm -rf "${work_dir}"' EXIT

log "building otelcol-recursive (${ocb_version}) in ${work_dir}; this takes minutes the first time"
start_s="$(date +%s)"
# The manifest has no output_path (it depends on the cache location): add it to a copy.
build_manifest="${work_dir}/builder-config.build.yaml"
awk -v out="${work_dir}" '{ print } /^dist:[[:space:]]*$/ { print "  output_path: \"" out "\"" }' \
  "${manifest}" > "${build_manifest}"
"${ocb}" --config "${build_manifest}" >&2
[[ -x "${work_dir}/otelcol-recursive" ]] || die "builder finished but ${work_dir}/otelcol-recursive is missing"
cp "${manifest}" "${work_dir}/builder-config.yaml"
rm -f "${build_manifest}"

if ! mv -T "${work_dir}" "${dist_dir}" 2>/dev/null; then
  # Another run finished first; keep its result.
  [[ -x "${binary}" ]] || die "could not move ${work_dir} to ${dist_dir}"
fi
trap - EXIT
rm -rf "${work_dir}"
log "built in $(( $(date +%s) - start_s )) s: ${binary}"
printf '%s\n' "${binary}"
