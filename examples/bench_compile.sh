#!/usr/bin/env bash
# Compile-time benchmarks that are too large for the debug test suite: the Llama-3-8B shape-only
# decode step (cache of 1023 tokens) compiled to a leveled plan at 2^15 slots and N = 2^16, with
# per-layer op and rotation counts, bootstraps, rotation keys and the estimated per-token latency
# (default CPU cost model); then the same at cache lengths 128, 512 and 2048.
# Run from the repository root: `bash examples/bench_compile.sh`.
set -euo pipefail
cargo test --release -p cachemir-compiler --test llama3_8b_plan -- --ignored --nocapture --test-threads 1
