#!/usr/bin/env bash
# Builds the agent workspace (crm/web, TypeScript + Vite) into crm/web/dist, which the CRM
# serves at /. `make up` and `make test` run it; it is quick when nothing changed:
#
# - `npm ci` (exactly package-lock.json) runs only when the lock file differs from the one
#   node_modules was installed from (its hash in node_modules/.vpbx-lock.sha256).
# - The build runs only when the hash of its inputs (package.json, the lock file, index.html,
#   the configs, src/ and public/, the Node.js major version) differs from the one in
#   dist/.build-stamp, or the built files no longer hash to what the stamp recorded
#   (edited or deleted by hand).
# - It builds aside (dist.new) and swaps the directory in, so a CRM serving dist/ never
#   sees half a build.
#
# Options:
#   --force   install and build even when the stamps say nothing changed
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WEB="$REPO_ROOT/crm/web"
STAMP="$WEB/dist/.build-stamp"
LOCK_STAMP="$WEB/node_modules/.vpbx-lock.sha256"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,17p' "$0"
            exit 0
            ;;
        *)
            echo "build-web: unknown option: $arg" >&2
            exit 2
            ;;
    esac
done

say() { echo "build-web: $*"; }

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    say "node and npm are needed (Node.js 18 or newer): run scripts/install-deps.sh" >&2
    exit 1
fi
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if ((node_major < 18)); then
    say "Node.js $(node --version) is too old: 18 or newer is needed" >&2
    exit 1
fi

cd "$WEB"

hash_files() {
    # sha256 over the names and contents of the files given (NUL-separated on stdin).
    LC_ALL=C sort -z | xargs -0 -r sha256sum | sha256sum | cut -d' ' -f1
}

inputs_hash() {
    {
        find package.json package-lock.json index.html vite.config.ts tsconfig.json \
            tsconfig.node.json src public -type f -print0
    } | hash_files | { read -r files; echo "$files node$node_major"; }
}

output_hash() {
    (cd dist && find . -type f ! -name .build-stamp -print0 | hash_files)
}

lock_hash="$(sha256sum package-lock.json | cut -d' ' -f1)"
if ((force)) || [[ ! -f "$LOCK_STAMP" || "$(cat "$LOCK_STAMP")" != "$lock_hash" ]]; then
    say "npm ci (package-lock.json changed since the last install)"
    npm ci --no-audit --no-fund --loglevel=error
    echo "$lock_hash" >"$LOCK_STAMP"
fi

inputs="$(inputs_hash)"
if ((!force)) && [[ -f "$STAMP" && -f dist/index.html ]]; then
    if [[ "$(sed -n 's/^inputs //p' "$STAMP")" == "$inputs" &&
        "$(sed -n 's/^output //p' "$STAMP")" == "$(output_hash)" ]]; then
        say "crm/web/dist is up to date"
        exit 0
    fi
fi

say "building crm/web (tsc, vite) into crm/web/dist"
npm run --silent typecheck
rm -rf dist.new dist.old
node_modules/.bin/vite build --outDir dist.new --emptyOutDir --logLevel warn
[[ -d dist ]] && mv dist dist.old
mv dist.new dist
rm -rf dist.old
printf 'inputs %s\noutput %s\n' "$inputs" "$(output_hash)" >"$STAMP"
say "built crm/web/dist ($(find dist -type f | wc -l) files)"
