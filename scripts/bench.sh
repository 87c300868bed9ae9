#!/usr/bin/env bash
# Catch-up benchmark: about 1 GB of binlogs on a sandbox primary, then binlog-server
# (release build; CRC checks, fsync and index on) against
# `mariadb-binlog --read-from-remote-server --raw --to-last-log`, same primary, same run.
# Options: --mb N (amount of binlog to generate, default 1024).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/binlog-server-target}"
cargo build --release -p binlog-server -p binlog-benches
exec "$CARGO_TARGET_DIR/release/catchup" "$@"
