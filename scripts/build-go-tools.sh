#!/usr/bin/env bash
# Builds helm and kubeconform from their Go modules at pinned versions (no prebuilt
# binaries can be downloaded here) into a per-version cache directory, and prints
# that directory's bin/ on stdout. A no-op when both binaries are already there,
# so tests can call it every run.
#
# Environment:
#   VPBX_HELM_VERSION, VPBX_KUBECONFORM_VERSION   override the pinned versions
#   XDG_CACHE_HOME                                 cache root (default ~/.cache)
set -euo pipefail

HELM_VERSION="${VPBX_HELM_VERSION:-v3.21.4}"
KUBECONFORM_VERSION="${VPBX_KUBECONFORM_VERSION:-v0.7.0}"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vpbx/go-tools"
tools_dir="${cache_root}/helm-${HELM_VERSION}_kubeconform-${KUBECONFORM_VERSION}"
bin_dir="${tools_dir}/bin"

say() { echo "build-go-tools: $*" >&2; }

if [[ -x "${bin_dir}/helm" && -x "${bin_dir}/kubeconform" ]]; then
    echo "${bin_dir}"
    exit 0
fi

# shellcheck source=lib/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go.sh"
use_go_toolchain

mkdir -p "${bin_dir}"
# Two test sessions starting at once must not build the same tools twice.
exec 9>"${cache_root}/build.lock"
flock 9
if [[ -x "${bin_dir}/helm" && -x "${bin_dir}/kubeconform" ]]; then
    echo "${bin_dir}"
    exit 0
fi
# Build into a temporary dir and move into place only on success, so an
# interrupted build never leaves a half-written binary that passes the -x check.
staging="$(mktemp -d "${tools_dir}/staging.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

build() {
    local name="$1" package="$2" version="$3" ldflags="$4"
    if [[ -x "${bin_dir}/${name}" ]]; then
        return 0
    fi
    say "building ${package}@${version} (the first build takes a few minutes)"
    # GOWORK=off: a go.work of the caller must not steer `go install pkg@version`.
    GOBIN="${staging}" GOWORK=off GOFLAGS=-buildvcs=false CGO_ENABLED=0 go install -trimpath \
        -ldflags "-s -w ${ldflags}" "${package}@${version}"
    mv "${staging}/${name}" "${bin_dir}/${name}"
}

# helm's release builds stamp the Kubernetes version of its client-go into the
# binary (the default of .Capabilities.KubeVersion and of `helm lint`'s
# deprecation checks); without it helm assumes Kubernetes 1.20. Do the same,
# reading the client-go version from helm's own go.mod.
helm_ldflags() {
    local gomod client_go minor
    gomod="$(GOWORK=off GOFLAGS= go mod download -json "helm.sh/helm/v3@${HELM_VERSION}" |
        sed -n 's/^[[:space:]]*"GoMod": "\(.*\)",\{0,1\}$/\1/p')"
    client_go="$(sed -n 's/^[[:space:]]*k8s.io\/client-go v0\.\([0-9]*\)\..*/\1/p' "${gomod}" | head -n 1)"
    [[ -n "${client_go}" ]] || {
        say "cannot find helm's client-go version in ${gomod}"
        exit 1
    }
    minor="${client_go}"
    echo "-X helm.sh/helm/v3/internal/version.version=${HELM_VERSION}" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=${minor}" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1" \
        "-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=${minor}"
}

if [[ ! -x "${bin_dir}/helm" ]]; then
    build helm helm.sh/helm/v3/cmd/helm "${HELM_VERSION}" "$(helm_ldflags)"
fi
build kubeconform github.com/yannh/kubeconform/cmd/kubeconform "${KUBECONFORM_VERSION}" \
    "-X main.version=${KUBECONFORM_VERSION}"

say "built into ${bin_dir}"
echo "${bin_dir}"
