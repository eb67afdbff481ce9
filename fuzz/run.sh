#!/usr/bin/env bash
# Runs every fuzz target for a fixed time, one after the other, and prints
# a Markdown table of what each did (the table in docs/FUZZING.md).
#
#   fuzz/run.sh [SECONDS]      # seconds per target, default 60
#   fuzz/run.sh 30 policy      # only the targets named
#
# Needs cargo-fuzz (`cargo install cargo-fuzz --locked`). cargo-fuzz builds
# with nightly-only rustc flags (-Zsanitizer=address and coverage options);
# this machine has only a stable toolchain, so RUSTC_BOOTSTRAP=1 is set to
# let stable rustc accept them. Not part of CI.
#
# Everything runs under `nice -n 19` with one libFuzzer worker: the machine
# is shared. Seeds are read from fuzz/seeds/<target>/; what the fuzzer adds
# goes to fuzz/corpus/<target>/ (not committed). A crash's input is saved in
# fuzz/artifacts/<target>/, its log in fuzz/artifacts/<target>.log, and the
# script exits 1 after the table.
set -euo pipefail

secs=${1:-60}
shift || true
cd "$(dirname "$0")/.."   # cargo fuzz works from the crate that owns fuzz/
export RUSTC_BOOTSTRAP=1

if [ "$#" -gt 0 ]; then
  targets="$*"
else
  targets=$(cargo fuzz list)
fi

nice -n 19 cargo fuzz build >&2

crashed=0
echo "| target | seconds | execs | execs/s | coverage (edges) | corpus | peak RSS | result |"
echo "|---|---:|---:|---:|---:|---:|---:|---|"
for t in $targets; do
  mkdir -p "fuzz/corpus/$t" "fuzz/artifacts/$t"
  log="fuzz/artifacts/$t.log"
  result="no crash"
  # -timeout: one input taking 10 s is a finding too (a slow parse is a DoS).
  if ! nice -n 19 cargo fuzz run "$t" "fuzz/corpus/$t" "fuzz/seeds/$t" -- \
      -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
      -print_final_stats=1 >"$log" 2>&1; then
    crashed=1
    artifact=$(grep -o 'Test unit written to [^ ]*' "$log" | tail -1 | sed 's/Test unit written to //')
    result="**CRASH** ${artifact:-see $log}"
  fi
  execs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -1)
  if [ -z "$execs" ]; then
    # libFuzzer's last status line, "#N DONE ..." or "#N ...".
    execs=$(grep -o '^#[0-9]*' "$log" | tail -1 | tr -d '#')
  fi
  rate=$(awk '/stat::average_exec_per_sec/ {print $2}' "$log" | tail -1)
  rss=$(awk '/stat::peak_rss_mb/ {print $2}' "$log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  corp=$(grep -o 'corp: [0-9]*' "$log" | tail -1 | awk '{print $2}')
  echo "| $t | $secs | ${execs:-?} | ${rate:-?} | ${cov:-?} | ${corp:-?} | ${rss:-?} MB | $result |"
done
exit "$crashed"
