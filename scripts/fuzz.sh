#!/usr/bin/env bash
# Runs every fuzz target of fuzz/ for 10^7 executions or 30 minutes, whichever first
# (override: RUNS=..., SECONDS_PER_TARGET=...), one after the other, then minimises each
# corpus. Needs the nightly toolchain and cargo-fuzz (`cargo install cargo-fuzz`).
# Crashes are left in fuzz/artifacts/<target>/: copy them to fuzz/regressions/<target>/
# once fixed, so that `cargo test` replays them. Prints executions and findings per target.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"
export CARGO_TARGET_DIR="${CARGO_FUZZ_TARGET_DIR:-$HOME/.cache/binlog-server-fuzz-target}"
RUNS="${RUNS:-10000000}"
SECS="${SECONDS_PER_TARGET:-1800}"
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(binlog_file wire_packets replica_input gtid_text pitr_request config_text)
mkdir -p logs
for t in "${targets[@]}"; do
  mkdir -p "corpus/$t"
  start=$(date +%s)
  set +e
  cargo +nightly fuzz run -O "$t" "corpus/$t" -- -runs="$RUNS" -max_total_time="$SECS" \
    -print_final_stats=1 -max_len=65536 > "logs/$t.log" 2>&1
  rc=$?
  set -e
  end=$(date +%s)
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "logs/$t.log" | grep -o '[0-9]*$' || echo "?")
  crashes=$(ls "artifacts/$t" 2>/dev/null | wc -l)
  echo "$t: exit $rc, $execs executions in $((end - start)) s, $crashes crash/timeout/oom artifacts"
  cargo +nightly fuzz cmin -O "$t" "corpus/$t" > "logs/$t.cmin.log" 2>&1 || true
done
