#!/usr/bin/env bash
# Installs what vpbx's tests and local mode need on a fresh Debian 12 machine (as root),
# then syncs the Python workspace. Idempotent, and quick when everything is present.
#
# The tests run private redis/clickhouse/kamailio instances on random loopback ports,
# so the system services these packages ship must not run: their start is refused
# during installation (policy-rc.d) and anything that got started anyway is stopped
# and disabled.
#
# Options:
#   --no-sync    skip `uv sync` (e.g. when another process owns the virtualenv)
#   --check      only report what is missing; exit 1 if anything is
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# espeak-ng: the control API renders IVR text prompts to speech with it.
# chromium: the agent workspace's browser tests drive it (Playwright, /usr/bin/chromium).
PACKAGES=(redis-server clickhouse-server sip-tester baresip kamailio postgresql iproute2 procps espeak-ng chromium)
# The agent workspace (crm/web) is built with Node.js 18 or newer and npm: Debian's, unless
# the machine already has a node of its own.
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
    PACKAGES+=(nodejs npm)
fi
# System services the packages above may start on installation.
SERVICES=(redis-server clickhouse-server kamailio postgresql)

do_sync=1
check_only=0
for arg in "$@"; do
    case "$arg" in
        --no-sync) do_sync=0 ;;
        --check) check_only=1 ;;
        -h | --help)
            sed -n '2,13p' "$0"
            exit 0
            ;;
        *)
            echo "install-deps: unknown option: $arg" >&2
            exit 2
            ;;
    esac
done

say() { echo "install-deps: $*"; }

is_installed() {
    [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == "install ok installed" ]]
}

missing=()
for package in "${PACKAGES[@]}"; do
    is_installed "$package" || missing+=("$package")
done

need_uv=0
command -v uv >/dev/null 2>&1 || need_uv=1

if ((check_only)); then
    status=0
    if ((${#missing[@]})); then
        say "missing Debian packages: ${missing[*]}"
        status=1
    fi
    if ((need_uv)); then
        say "missing: uv"
        status=1
    fi
    ((status)) || say "all Debian packages and uv are present"
    exit "$status"
fi

if ((${#missing[@]} || need_uv)) && [[ "$(id -u)" != 0 ]]; then
    wanted=("${missing[@]}")
    ((need_uv)) && wanted+=(uv)
    say "must run as root to install: ${wanted[*]}" >&2
    exit 1
fi

stop_system_services() {
    for service in "${SERVICES[@]}"; do
        [[ -e "/etc/init.d/$service" || -e "/lib/systemd/system/$service.service" ]] || continue
        if [[ -d /run/systemd/system ]]; then
            say "disabling system service $service (tests run private instances)"
            systemctl disable --now "$service" >/dev/null 2>&1 || true
        else
            if service "$service" status >/dev/null 2>&1; then
                say "stopping system service $service (tests run private instances)"
                service "$service" stop || say "could not stop $service" >&2
            fi
            update-rc.d "$service" disable >/dev/null 2>&1 || true
        fi
    done
}

apt_install() {
    # Refuse service starts from maintainer scripts while we install, unless the
    # administrator already has a policy of their own.
    local policy=/usr/sbin/policy-rc.d own_policy=0
    if [[ ! -e "$policy" ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        own_policy=1
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    say "apt-get update"
    DEBIAN_FRONTEND=noninteractive apt-get update -q
    say "apt-get install $*"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@"
    if ((own_policy)); then
        rm -f "$policy"
        trap - EXIT
    fi
    stop_system_services
}

to_install=("${missing[@]}")
if ((need_uv)) && ! python3 -m pip --version >/dev/null 2>&1; then
    to_install+=(python3-pip)
fi

if ((${#to_install[@]})); then
    apt_install "${to_install[@]}"
else
    say "Debian packages present: ${PACKAGES[*]}"
fi

if ((need_uv)); then
    say "installing uv with pip"
    # Debian marks its Python as externally managed (PEP 668); uv is a standalone tool.
    python3 -m pip install --quiet --break-system-packages uv
    # Under pyenv a newly installed console script is reachable only once the shims are rebuilt.
    if command -v pyenv >/dev/null 2>&1; then
        pyenv rehash
    fi
    hash -r
    command -v uv >/dev/null 2>&1 || {
        say "uv installed but not on PATH (looked in: $PATH)" >&2
        exit 1
    }
else
    say "uv present: $(command -v uv)"
fi

if ((do_sync)); then
    cd "$REPO_ROOT"
    export UV_PYTHON_DOWNLOADS=never
    if [[ -f uv.lock ]]; then
        say "uv sync --frozen in $REPO_ROOT"
        uv sync --frozen
    else
        say "no uv.lock: uv sync in $REPO_ROOT"
        uv sync
    fi
else
    say "skipping uv sync (--no-sync)"
fi
say "done"
