#!/usr/bin/env bash
# The benchmark table of BENCHMARKS.md: builds the release daemon and the fake API server,
# runs the dedup store micro-benchmark, then the end-to-end benchmark (benches/pipeline.rs),
# which prints one table. Extra arguments go to benches/pipeline.rs, e.g.
#   benches/run.sh --frames 200000 --idle-secs 10      (a quick run)
# Needs a quiet machine for figures worth comparing; takes about 3 minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --bin kube-event-pipe --example fake_apiserver
out="$(mktemp)"
trap 'rm -f "$out"' EXIT
cargo bench --bench store | tee "$out"
cargo bench --bench pipeline -- --store-output "$out" "$@"
