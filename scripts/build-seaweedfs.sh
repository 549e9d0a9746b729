#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (the S3-compatible server the object storage tests
# run against) from its Go module at a pinned version into a per-version cache
# directory, and prints that directory's bin/ on stdout. A no-op when the binary
# is already there, so tests and `make test` can call it every run.
#
# Environment:
#   VPBX_SEAWEEDFS_VERSION   override the pinned module version
#   XDG_CACHE_HOME           cache root (default ~/.cache)
set -euo pipefail

# The module has no tagged releases the proxy here serves; this pseudo-version is
# the one it does.
SEAWEEDFS_VERSION="${VPBX_SEAWEEDFS_VERSION:-v0.0.0-20261109003541-7506e5f91cd6}"
MODULE="github.com/seaweedfs/seaweedfs"

cache_root="${XDG_CACHE_HOME:-$HOME/.cache}/vpbx/go-tools"
tools_dir="${cache_root}/seaweedfs-${SEAWEEDFS_VERSION}"
bin_dir="${tools_dir}/bin"

say() { echo "build-seaweedfs: $*" >&2; }

if [[ -x "${bin_dir}/weed" ]]; then
    echo "${bin_dir}"
    exit 0
fi

# shellcheck source=lib/go.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib/go.sh"
use_go_toolchain

mkdir -p "${bin_dir}"
# Its own lock, not build-go-tools.sh's: the two builds are independent and each
# takes minutes, but two test sessions must not build the same binary twice.
exec 9>"${cache_root}/seaweedfs.lock"
flock 9
if [[ -x "${bin_dir}/weed" ]]; then
    echo "${bin_dir}"
    exit 0
fi
# Build into a temporary dir and move into place only on success, so an
# interrupted build never leaves a half-written binary that passes the -x check.
staging="$(mktemp -d "${tools_dir}/staging.XXXXXX")"
trap 'rm -rf "${staging}"' EXIT

say "building ${MODULE}/weed@${SEAWEEDFS_VERSION} (the first build takes 5-15 minutes)"
# `go install pkg@version` refuses this module: its go.mod has a replace
# directive (for a dependency deleted from GitHub). So fetch the module source
# and build inside a copy of it, where go.mod is the main module and the replace
# applies. The copy because the module cache is read-only.
# GOWORK=off: a go.work of the caller must not steer the build.
module_dir="$(GOWORK=off GOFLAGS= go mod download -json "${MODULE}@${SEAWEEDFS_VERSION}" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')"
[[ -n "${module_dir}" && -f "${module_dir}/go.mod" ]] || {
    say "go mod download of ${MODULE}@${SEAWEEDFS_VERSION} gave no source directory"
    exit 1
}
cp -R "${module_dir}" "${staging}/src"
chmod -R u+w "${staging}/src"
(
    cd "${staging}/src"
    GOWORK=off GOFLAGS="-buildvcs=false -mod=readonly" CGO_ENABLED=0 go build -trimpath \
        -ldflags "-s -w" -o "${staging}/weed" ./weed
)
mv "${staging}/weed" "${bin_dir}/weed"

say "built into ${bin_dir}"
echo "${bin_dir}"
