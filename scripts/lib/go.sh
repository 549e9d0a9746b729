# Sourced by the scripts that build tools from Go modules: puts the Go toolchain
# on PATH (Debian's golang package or /usr/local/go), or fails with a clear message.
# Needs a `say` function for messages.

use_go_toolchain() {
    if ! command -v go >/dev/null 2>&1; then
        for candidate in /usr/local/go/bin /usr/lib/go/bin; do
            if [[ -x "${candidate}/go" ]]; then
                PATH="${candidate}:${PATH}"
                break
            fi
        done
    fi
    command -v go >/dev/null 2>&1 || {
        say "the Go toolchain is required (go not found on PATH)"
        exit 1
    }
}
