#!/usr/bin/env bash
# The main job on the embedded defaults: installs MariaDB if absent, builds
# binlog-server, starts a sandbox MariaDB primary with a write load, runs binlog-server
# against it (SQLite catalog and archive in a temporary directory), and prints
# GET /v1/sources and the binlog list while files go ACTIVE -> REPORTED -> SUCC, takes a
# physical base through the API under load and a logical one with `snapshotter take`,
# and lists them.
# Options are passed on: --seconds N (load duration, default 30), --dir DIR (keep the
# archive there), --fleet (the fleet demo instead: PostgreSQL, the S3-compatible server
# and three nodes; the owner is killed under load, another takes the source over, a node
# that never owned it restores it, and the archive is shown identical to the primary's).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/binlog-server-target}"
cargo build -p binlog-server -p verifier -p binlog-tests --bins
exec "$CARGO_TARGET_DIR/debug/demo" "$@"
