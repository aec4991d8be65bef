# shellcheck shell=bash
# Shared by scripts/bench, scripts/scale and scripts/compare-builds, which run the
# server under `exchange-client load`: preparing a database, waiting for the server's
# port, reading the load's `--json` report (with jq), and the time the hypervisor
# stole meanwhile.

# await_port PORT: returns once something accepts connections on 127.0.0.1:PORT
# (or after 10 s; the load that follows then reports the failure).
await_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
}

# require_jq: installs jq, which reads the load's JSON report, if it is missing.
require_jq() {
    command -v jq >/dev/null 2>&1 || apt_install jq
}

# report_field NAME: the number NAME holds in the JSON report on standard input.
report_field() { jq -r ".$1"; }

# report_latency NAME: latency_ms.NAME (p50, p99, ...) of the JSON report on standard input.
report_latency() { jq -r ".latency_ms.$1"; }

# migrate_db SERVER_BIN URL: brings URL's schema to SERVER_BIN's version. Builds from
# before `exchange-server migrate` applied their schema at start, and are left to.
migrate_db() {
    if "$1" --help | grep "^  migrate" >/dev/null; then
        "$1" migrate --database-url "$2" >/dev/null
    fi
}

# machine_ticks: the whole machine's stolen clock ticks, all its clock ticks and its
# idle ones (waiting for I/O included) so far, from /proc/stat: stolen is time the
# hypervisor gave to other guests while this one had work. Fields after "cpu": user
# nice system idle iowait irq softirq steal.
machine_ticks() { awk '/^cpu / { print $9, $2 + $3 + $4 + $5 + $6 + $7 + $8 + $9, $5 + $6 }' /proc/stat; }

# steal_pct "BEFORE" "AFTER": the percentage of the machine's time stolen between two
# machine_ticks readings. A round that lost much of it says the machine was slow then,
# not the build.
steal_pct() {
    awk -v b="$1" -v a="$2" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "%.0f", (y[2] > x[2]) ? 100 * (y[1] - x[1]) / (y[2] - x[2]) : 0
    }'
}

# idle_pct "BEFORE" "AFTER": the percentage of the machine's time no CPU had work
# between two machine_ticks readings. Two loads that keep the CPUs as busy cost in
# proportion to their CPU per unit; one that leaves them idler waits on something.
idle_pct() {
    awk -v b="$1" -v a="$2" 'BEGIN {
        split(b, x, " "); split(a, y, " ")
        printf "%.0f", (y[2] > x[2]) ? 100 * (y[3] - x[3]) / (y[2] - x[2]) : 0
    }'
}
