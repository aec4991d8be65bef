# shellcheck shell=bash
# Shared by the scripts a user runs: one line per step, saying what it does and how
# long it usually takes, so that a long step never looks like a hang.

# step WHAT [HOW_LONG]: prints "== WHAT (HOW_LONG)".
step() {
    if [ $# -gt 1 ]; then echo "== $1 ($2)"; else echo "== $1"; fi
}

# build_bins [CARGO_ARGS...]: builds exchange-server and exchange-client in the
# profile PROFILE names (release unless PROFILE=dev, which scripts/test uses to
# smoke-run the benchmark scripts with the binaries it has already built) and sets BIN
# to their folder.
# shellcheck disable=SC2034 # BIN is this function's result, read by its callers.
build_bins() {
    case ${PROFILE:-release} in
        release) cargo build --release --bins "$@"; BIN=target/release ;;
        dev) cargo build --bins "$@"; BIN=target/debug ;;
        *) echo "PROFILE must be release or dev" >&2; return 1 ;;
    esac
}
