#!/usr/bin/env bash
# Compile-time benchmarks that are too large for the debug test suite: the Llama-3-8B shape-only
# decode step (cache of 1023 tokens) lowered to a plan at 2^15 slots, with per-layer op and
# rotation counts. Run from the repository root: `bash examples/bench_compile.sh`.
set -euo pipefail
cargo test --release -p cachemir-compiler --test llama3_8b_plan -- --ignored --nocapture
