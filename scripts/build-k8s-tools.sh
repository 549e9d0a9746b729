#!/usr/bin/env bash
# Build the test kube-apiserver (with embedded etcd), kube-controller-manager
# and kubectl from
# tools/kube-apiserver into a cache directory named after a hash of the
# sources, and print that directory on stdout (progress goes to stderr).
# When every binary is already cached this is a no-op.
#
# Environment:
#   VPBX_K8S_CACHE   cache root (default ${XDG_CACHE_HOME:-$HOME/.cache}/vpbx)
#   GO               go binary (default: go from PATH)
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source_dir="$repo_root/tools/kube-apiserver"
cache_root="${VPBX_K8S_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/vpbx}"

# The hash covers everything that decides the binaries' content, so editing
# main.go or bumping the release in go.mod builds into a fresh directory.
source_hash="$(
    cd "$source_dir"
    find . -type f \( -name '*.go' -o -name go.mod -o -name go.sum \) -print0 \
        | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-16
)"
out_dir="$cache_root/k8s-$source_hash"
targets=(kube-apiserver kube-controller-manager kubectl)

all_built() {
    local target
    for target in "${targets[@]}"; do
        [[ -x "$1/$target" ]] || return 1
    done
}

if all_built "$out_dir"; then
    echo "$out_dir"
    exit 0
fi

log() { echo "build-k8s-tools: $*" >&2; }

go_bin="${GO:-go}"
if ! command -v "$go_bin" >/dev/null 2>&1; then
    # Non-login shells (make, CI) may lack the toolchain's directory in PATH.
    for candidate in /usr/local/go/bin/go /usr/lib/go/bin/go; do
        if [[ -x "$candidate" ]]; then
            go_bin="$candidate"
            break
        fi
    done
fi
if ! command -v "$go_bin" >/dev/null 2>&1; then
    log "the Go toolchain ($go_bin) is not in PATH"
    exit 1
fi

mkdir -p "$cache_root"
# Two test sessions starting at once must not build the same tree twice.
exec 9>"$cache_root/k8s-build.lock"
log "taking the build lock $cache_root/k8s-build.lock (another build may hold it)"
flock 9
if all_built "$out_dir"; then
    echo "$out_dir"
    exit 0
fi

k8s_version="$(awk '$1 == "k8s.io/kubernetes" && $2 ~ /^v/ {print $2; exit}' "$source_dir/go.mod")"
if [[ -z "$k8s_version" ]]; then
    log "cannot find the k8s.io/kubernetes version in $source_dir/go.mod"
    exit 1
fi
k8s_minor="${k8s_version#v1.}"
k8s_minor="${k8s_minor%%.*}"

# Without these the binaries call themselves v0.0.0-master: kubectl version
# output and the server's /version would be meaningless.
version_ldflags=""
for package in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    version_ldflags+=" -X $package.gitVersion=$k8s_version"
    version_ldflags+=" -X $package.gitMajor=1 -X $package.gitMinor=$k8s_minor"
    version_ldflags+=" -X $package.gitTreeState=clean"
    version_ldflags+=" -X $package.buildDate=1970-01-01T00:00:00Z"
done

jobs="$(nproc 2>/dev/null || echo 2)"
export CGO_ENABLED=0
export GOFLAGS="-trimpath -mod=readonly"
export GOTOOLCHAIN=local
export GOMAXPROCS="$jobs"

staging_dir="$(mktemp -d "$cache_root/k8s-$source_hash.tmp.XXXXXX")"
trap 'rm -rf "$staging_dir"' EXIT

started=$SECONDS
log "Kubernetes $k8s_version with $($go_bin version | cut -d' ' -f3), $jobs parallel jobs"
log "downloading modules (first run only)"
(cd "$source_dir" && "$go_bin" mod download)
log "modules ready after $((SECONDS - started))s"

for target in "${targets[@]}"; do
    if [[ "$target" == kube-apiserver ]]; then package=.; else package="./cmd/$target"; fi
    log "compiling $target (a cold build takes minutes)"
    step_started=$SECONDS
    (cd "$source_dir" && "$go_bin" build -p "$jobs" -ldflags "-s -w$version_ldflags" \
        -o "$staging_dir/$target" "$package")
    log "$target built in $((SECONDS - step_started))s"
done

# Publish all binaries at once so a reader never sees half a cache entry.
rm -rf "$out_dir"
mv "$staging_dir" "$out_dir"
trap - EXIT
log "done in $((SECONDS - started))s: $out_dir"
echo "$out_dir"
