# shellcheck shell=bash
# Shared by scripts/bench and scripts/scale, which run the server under
# `exchange-client load`: waiting for the server's port, and reading the load's
# `--json` report.

# await_port PORT: returns once something accepts connections on 127.0.0.1:PORT
# (or after 10 s; the load that follows then reports the failure).
await_port() {
    for _ in $(seq 100); do
        (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
        sleep 0.1
    done
}

# report_field NAME: the number NAME holds in the JSON report on standard input.
report_field() { sed -E "s/.*\"$1\":([0-9.]+).*/\1/"; }

# report_latency NAME: latency_ms.NAME (p50, p99, ...) of the JSON report on standard input.
report_latency() { sed -E "s/.*\"latency_ms\":\{[^}]*\"$1\":([0-9.]+).*/\1/"; }
