#!/usr/bin/env bash
# Copies the CRDs (crds/*.yaml, the source of truth) into the Helm chart's
# crds/ directory, where helm installs them before the templates. A copy, not
# symlinks: helm does not follow symlinks reliably when packaging or loading a
# chart. Files in the chart that are no longer in crds/ are removed.
#
#   --check   change nothing; exit 1 (and say which) when the copies differ
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="${repo_root}/crds"
chart_dir="${repo_root}/charts/vpbx/crds"

check_only=0
case "${1:-}" in
    "") ;;
    --check) check_only=1 ;;
    -h | --help)
        sed -n '2,7p' "$0"
        exit 0
        ;;
    *)
        echo "sync-chart-crds: unknown option: $1" >&2
        exit 2
        ;;
esac

shopt -s nullglob
sources=("${source_dir}"/*.yaml)
if ((${#sources[@]} == 0)); then
    echo "sync-chart-crds: no CRDs in ${source_dir}" >&2
    exit 1
fi

stale=0
for source in "${sources[@]}"; do
    target="${chart_dir}/$(basename "${source}")"
    if ! cmp -s "${source}" "${target}"; then
        stale=1
        if ((check_only)); then
            echo "sync-chart-crds: ${target#"${repo_root}"/} differs from ${source#"${repo_root}"/}" >&2
        else
            mkdir -p "${chart_dir}"
            cp "${source}" "${target}"
        fi
    fi
done
for target in "${chart_dir}"/*.yaml; do
    if [[ ! -e "${source_dir}/$(basename "${target}")" ]]; then
        stale=1
        if ((check_only)); then
            echo "sync-chart-crds: ${target#"${repo_root}"/} has no source in crds/" >&2
        else
            rm "${target}"
        fi
    fi
done

if ((check_only && stale)); then
    echo "sync-chart-crds: run scripts/sync-chart-crds.sh" >&2
    exit 1
fi
exit 0
