#!/usr/bin/env bash
# `make fuzz`: runs every fuzz target for FUZZ_SECS seconds (default 240), two at a time, then
# minimises each corpus (cargo fuzz cmin) so that what is committed stays small. Prints the
# executions per target and in total. A crash stops with libFuzzer's report; its reproducer is
# left in server/fuzz/artifacts/<target>/ (commit it: make test replays it).
# cargo-fuzz runs on the stable toolchain with RUSTC_BOOTSTRAP=1 (it needs -Z flags).
set -euo pipefail
cd "$(dirname "$0")/../.."
export RUSTC_BOOTSTRAP=1
secs="${FUZZ_SECS:-240}"
targets=(vault_blob sse translators markdown config)
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked
cargo fuzz build --fuzz-dir server/fuzz -O
logs=target/fuzz-logs
mkdir -p "$logs"
run() {
  local t="$1"
  mkdir -p "server/fuzz/corpus/$t"
  cargo fuzz run --fuzz-dir server/fuzz -O "$t" -- -max_total_time="$secs" -print_final_stats=1 \
    >"$logs/$t.log" 2>&1
}
pids=()
for t in "${targets[@]}"; do
  run "$t" & pids+=($!)
  if [ "${#pids[@]}" -ge 2 ]; then wait "${pids[0]}"; pids=("${pids[@]:1}"); fi
done
for p in "${pids[@]}"; do wait "$p"; done
total=0
printf '%-12s %14s %10s\n' target executions "exec/s"
for t in "${targets[@]}"; do
  n=$(grep -oE 'stat::number_of_executed_units: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' | tail -1)
  s=$(grep -oE 'stat::average_exec_per_sec: *[0-9]+' "$logs/$t.log" | grep -oE '[0-9]+$' | tail -1)
  total=$((total + ${n:-0}))
  printf '%-12s %14s %10s\n' "$t" "${n:-0}" "${s:-0}"
  cargo fuzz cmin --fuzz-dir server/fuzz -O "$t" >"$logs/$t.cmin.log" 2>&1
done
printf '%-12s %14s\n' total "$total"
