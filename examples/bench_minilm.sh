#!/usr/bin/env bash
# Encrypted MiniLM-L6 sentence embeddings through the CLI binaries (issue 10, item 3), per
# reference case: compile (the client looks the tokens up and computes the embeddings; the six
# encoder layers, pooling and normalisation run encrypted), report, keygen, encrypt, run, decrypt,
# one table row per case (wall time of the encrypted run, bootstraps, key bytes, peak memory, the
# report's estimate), then the accuracy test (tests/tests/encrypted_minilm.rs: cosine ≥ 0.99 with
# onnxruntime's sentence embedding). Each stage is skipped when its output exists, so a rerun
# continues where an interrupted one stopped (the encrypted run itself restarts).
#
# Usage (from the repository root, `../shared/models` beside it):
#   bash examples/bench_minilm.sh [OUT]                      # 128-bit N16BootFull
#   PARAMS=ToyBootN12 bash examples/bench_minilm.sh OUT      # INSECURE toy set: a smoke run
# Environment: MODELS (default ../shared/models), PARAMS (N16BootFull), CASES ("case0": batch
# 1 × 16 tokens; case1 is 2 × 18, which calib.json's 1 × 16 samples cannot calibrate yet), KEY_BUDGET (6: GB of rotation keys; the default compile budget
# of 16 GB leaves too little of a 24 GB machine for the run), THREADS (all cores).
set -euo pipefail

out=${1:-target/bench_minilm}
models=${MODELS:-../shared/models}
params=${PARAMS:-N16BootFull}
cases=${CASES:-case0}
key_budget=${KEY_BUDGET:-6}
insecure=()
[[ $params == Toy* ]] && insecure=(--insecure)
threads=()
[[ -n ${THREADS:-} ]] && threads=(--threads "$THREADS")

if [[ ! -d $models ]]; then
  echo "bench_minilm: $models not found (set MODELS)" >&2
  exit 2
fi
cargo build --release --bin cachemir --bin cachemirc
bin=target/release
model=minilm_l6_dyn_ts17
embedding=/bert/embeddings/LayerNorm/LayerNormalization_output_0

rows=()
for case in $cases; do
  dir=$out/$case-$params
  mkdir -p "$dir"
  sample=$models/$model/$case.json
  if [[ ! -f $dir/plan.plan ]]; then
    "$bin/cachemirc" compile "$models/$model.onnx" --calibration "$models/$model/calib.json" \
      --sample "$sample" --encrypt-from "$embedding" --params "$params" \
      --key-budget "$key_budget" "${insecure[@]}" \
      -o "$dir/plan.plan" > "$dir/compile.txt"
  fi
  "$bin/cachemirc" report "$dir/plan.plan" > "$dir/report.txt"
  if [[ ! -f $dir/keygen.txt ]]; then
    /usr/bin/time -v "$bin/cachemir" keygen "$dir/plan.plan" -o "$dir/keys" "${insecure[@]}" \
      > "$dir/keygen.tmp" 2> "$dir/keygen.time"
    mv "$dir/keygen.tmp" "$dir/keygen.txt"
  fi
  if [[ ! -f $dir/input.ct ]]; then
    "$bin/cachemir" encrypt "$dir/keys" "$dir/plan.plan" "$sample" -o "$dir/input.tmp" \
      "${insecure[@]}"
    mv "$dir/input.tmp" "$dir/input.ct"
  fi
  if [[ ! -f $dir/output.ct ]]; then
    start=$(date +%s.%N)
    /usr/bin/time -v "$bin/cachemir" run "$dir/plan.plan" --keys "$dir/keys/eval" \
      --input "$dir/input.ct" -o "$dir/output.tmp" "${threads[@]}" > "$dir/run.txt" \
      2> "$dir/run.log"
    echo "$(date +%s.%N) - $start" | bc > "$dir/run.seconds"
    mv "$dir/output.tmp" "$dir/output.ct"
  fi
  "$bin/cachemir" decrypt "$dir/keys" "$dir/plan.plan" "$dir/output.ct" -o "$dir/out" \
    "${insecure[@]}"
  rows+=("$(python3 - "$case" "$params" "$dir" <<'PY'
import re, sys
case, params, d = sys.argv[1:]
report = open(f"{d}/report.txt").read()
boots = re.search(r"^bootstraps: (\d+)", report, re.M)
est = re.search(r"^latency: ([\d.]+) ms", report, re.M)
keys = re.search(r"total key bytes (\d+)", open(f"{d}/keygen.txt").read())
peak = re.search(r"Maximum resident set size \(kbytes\): (\d+)", open(f"{d}/run.log").read())
seconds = float(open(f"{d}/run.seconds").read())
print(f"| MiniLM-L6 {case} | {params} | {seconds:.1f} s | {boots.group(1) if boots else '?'} | "
      f"{int(keys.group(1)) / 2**30:.2f} GiB | {int(peak.group(1)) / 2**20:.1f} GiB | "
      f"{float(est.group(1)) / 1e3:.1f} s |")
PY
)")
done

echo
echo "| model | parameters | encrypted run (wall) | bootstraps | key bytes (memory) | peak RSS | estimated |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
printf '%s\n' "${rows[@]}"

CACHEMIR_MINILM_DIR=$(realpath "$out") CACHEMIR_MINILM_PARAMS=$params \
  cargo test --release -p cachemir-tests --test encrypted_minilm -- --ignored --nocapture
