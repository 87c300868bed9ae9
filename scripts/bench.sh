#!/usr/bin/env bash
# Benchmarks (release build), each against the stock tools in the same run:
#   bash scripts/bench.sh [--mb N] [--rounds N]
#                                            capture: binlog-server (CRC checks, fsync, index)
#                                            with the archive off and shipping to S3 (moto,
#                                            zstd + AES) against `mariadb-binlog --raw`
#                                            (default 1024 MB, 3 interleaved rounds)
#   bash scripts/bench.sh --pitr [--mb N] [--threads N]
#                                            PITR replay through the fake primary against
#                                            `mariadb-binlog | mariadb` and a native replica
#                                            of the primary (default 750 MB, 4 threads), and
#                                            once more from files evicted to the store
#   bash scripts/bench.sh --files 100,10000  shipping time per file and idle CPU of one
#                                            source against its archive's file count
#   bash scripts/bench.sh --standby-plan 1000,10000
#                                            PITR planning on a fleet node that never
#                                            captured the source (PostgreSQL, S3), first
#                                            and later plans, against the file count
#   bash scripts/bench.sh --sources 100,1000 [--rate N] [--load-secs S]
#                                            cost per source: RSS, threads, fds, CPU and
#                                            catalog calls, idle and under load, with N
#                                            sources over 4 sandbox primaries
#   bash scripts/bench.sh --semi-sync [--secs S] [--rounds N] [--threads N]
#                                            one primary under an oltp_write_only-like load:
#                                            async, semi-sync to binlog-server and semi-sync
#                                            to a native replica, interleaved: trx/s, COMMIT
#                                            latency, commit-to-durable p50/p99/max
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/binlog-server-target}"
cargo build --release -p binlog-server -p binlog-benches
if [ "${1:-}" = "--files" ]; then
    exec "$CARGO_TARGET_DIR/release/many_files" "$@"
fi
if [ "${1:-}" = "--sources" ]; then
    exec "$CARGO_TARGET_DIR/release/sources" "$@"
fi
if [ "${1:-}" = "--standby-plan" ]; then
    exec "$CARGO_TARGET_DIR/release/standby_plan" "$@"
fi
if [ "${1:-}" = "--semi-sync" ]; then
    exec "$CARGO_TARGET_DIR/release/semi_sync" "$@"
fi
if [ "${1:-}" = "--pitr" ]; then
    shift
    exec "$CARGO_TARGET_DIR/release/pitr_replay" "$@"
fi
exec "$CARGO_TARGET_DIR/release/catchup" "$@"
