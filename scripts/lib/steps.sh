# shellcheck shell=bash
# Shared by the scripts a user runs: one line per step, saying what it does and how
# long it usually takes, so that a long step never looks like a hang.

# step WHAT [HOW_LONG]: prints "== WHAT (HOW_LONG)", and remembers WHAT for
# failed_step.
step() {
    STEP_NOW=$1
    if [ $# -gt 1 ]; then echo "== $1 ($2)"; else echo "== $1"; fi
}

# failed_step STATUS: for an EXIT trap; if STATUS is not 0, says which step failed.
failed_step() {
    [ "$1" = 0 ] || echo "== FAILED (exit status $1) in: ${STEP_NOW:-the set-up before the first step}" >&2
}

# build_bins [CARGO_ARGS...]: builds exchange-server and exchange-client in the
# profile PROFILE names (release unless PROFILE=dev, which scripts/test uses to
# smoke-run the benchmark scripts with the binaries it has already built) and sets BIN
# to their folder. --workspace: the client is a package of its own, which a build at
# the root would otherwise leave out.
# shellcheck disable=SC2034 # BIN is this function's result, read by its callers.
build_bins() {
    case ${PROFILE:-release} in
        release) cargo build --release --workspace --bins "$@"; BIN=target/release ;;
        dev) cargo build --workspace --bins "$@"; BIN=target/debug ;;
        *) echo "PROFILE must be release or dev" >&2; return 1 ;;
    esac
}
