#!/usr/bin/env bash
# The benchmark of issue 5, in one command from the repository root:
#
#   bash bench/run.sh [countersign-bench options]    (e.g. --quick, --seconds 5)
#
# Builds the service (`countersign`, the root package) and the benchmark
# client (`countersign-bench`, the workspace member in bench/) in release
# mode, then runs countersign-bench, which seeds a temporary SQLite database
# with 1,000,000 audit events, starts `countersign serve` on it in its
# default durability (WAL, synchronous=FULL) and runs scenarios a–h and w
# (the writer floor) on loopback. Prints the table; writes
# bench/results.json (or --out PATH). See docs/BENCH.md.
set -euo pipefail
cd "$(dirname "$0")/.."

cargo build --release -p countersign -p countersign-bench

# Scenario g holds 10,000 connections open on each side of loopback.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 20500 ]; then
    echo "note: ulimit -n is $(ulimit -n); scenario g needs about 10,100 per process" >&2
fi

exec target/release/countersign-bench "$@"
