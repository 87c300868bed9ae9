#!/usr/bin/env bash
# The README's test command: set-up, formatting and lint checks, then every test of the
# workspace (unit tests, the corpus test, end-to-end tests against real MariaDB servers).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/binlog-server-target}"
export BINLOG_CORPUS_DIR="${BINLOG_CORPUS_DIR:-$(cd .. && pwd)/shared/fixtures/binlogs}"
if [ ! -d "$BINLOG_CORPUS_DIR" ]; then
  echo "test: binlog corpus not found at $BINLOG_CORPUS_DIR (set BINLOG_CORPUS_DIR)" >&2
  exit 1
fi
cargo fmt --all -- --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
