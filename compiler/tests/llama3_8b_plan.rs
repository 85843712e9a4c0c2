//! The Llama-3-8B shape-only decode step (examples/llama3_8b_decode_step.cmr) compiled to a full
//! leveled plan at 2^15 slots and N = 2^16 (`N16BootFull`): compile time, per-layer op and
//! rotation counts, bootstraps per layer, rotation keys and their bytes, and the estimated
//! per-token latency (default CPU cost model) at several cache lengths. Ignored in the debug
//! suite; `examples/bench_compile.sh` runs it in release.

#[path = "support/shape_only.rs"]
mod shape_only;
use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, Leveled, assign_levels, calibrated_bound};
use cachemir_compiler::lower::{Counts, LowerOptions, Lowered, lower};
use cachemir_compiler::report::{PlanReport, ReportOptions};
use cachemir_dsl::{LoadOptions, load_file, load_source};
use cachemir_ir::Graph;
use cachemir_ir::plan::CostModel;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn example() -> PathBuf {
    std::env::var_os("CACHEMIR_LLAMA3_DSL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/llama3_8b_decode_step.cmr"),
        PathBuf::from,
    )
}

/// Phase times of one compile.
struct Times {
    tensor_level: Duration,
    lowering: Duration,
    levels: Duration,
}

fn compile(mut graph: Graph) -> (Graph, Lowered, Leveled, Times) {
    let start = Instant::now();
    shape_only::prepare(&mut graph);
    let tensor_level = start.elapsed();
    let start = Instant::now();
    let lowered = lower(
        &graph,
        &LowerOptions {
            slots: 1 << 15,
            period: None,
            weights_file: "llama3_8b.weights.safetensors".into(),
        },
    )
    .unwrap();
    let lowering = start.elapsed();
    let start = Instant::now();
    let options = LevelOptions::new(by_name("N16BootFull").unwrap());
    let leveled = assign_levels(
        &lowered.plan,
        &|site| calibrated_bound(&graph, site),
        &options,
    )
    .unwrap();
    let levels = start.elapsed();
    (
        graph,
        lowered,
        leveled,
        Times {
            tensor_level,
            lowering,
            levels,
        },
    )
}

/// Bootstrapped ciphertexts of layer 0, the key set and the estimated per-token latency.
fn summary(leveled: &Leveled) -> (usize, usize, u64, f64) {
    let report = PlanReport::new(
        &leveled.plan,
        &CostModel::default_cpu(),
        &ReportOptions::default(),
    )
    .unwrap();
    let layer0 = report
        .layers
        .iter()
        .find(|l| l.layer == Some(0))
        .map_or(0, |l| l.tally.bootstraps);
    (
        layer0,
        report.keys.rotation_steps,
        report.keys.total_bytes.unwrap_or(0),
        report.total.tally.latency_ms,
    )
}

#[test]
#[ignore = "a full 32-layer plan: run in release (examples/bench_compile.sh)"]
fn llama3_8b_decode_step_compiles_in_time() {
    let graph = load_file(&example(), &LoadOptions::default()).unwrap();
    let (_, lowered, leveled, times) = compile(graph);
    let mut per_layer: BTreeMap<Option<u32>, Counts> = BTreeMap::new();
    for (_, layer, counts) in &lowered.site_counts {
        let total = per_layer.entry(*layer).or_default();
        *total = *total + *counts;
    }
    println!(
        "Llama-3-8B decode step (cache 1023) at 2^15 slots: tensor-level passes {:.2?}, lowering \
         {:.2?}, levels {:.2?}; period {}, {} instructions unleveled, {} rotation steps, {:?}",
        times.tensor_level,
        times.lowering,
        times.levels,
        lowered.period,
        lowered.plan.instructions.len(),
        lowered.plan.rotations.len(),
        lowered.plan.counts()
    );
    println!("layer  rotations  ct-pt mults  ct-ct mults  scalar mults  additions");
    for (layer, c) in &per_layer {
        let name = layer.map_or("-".to_string(), |l| l.to_string());
        println!(
            "{name:>5}  {:>9}  {:>11}  {:>11}  {:>12}  {:>9}",
            c.rotations,
            c.plaintext_multiplications,
            c.ciphertext_multiplications,
            c.scalar_multiplications,
            c.additions
        );
    }
    let (layer0, keys, key_bytes, latency) = summary(&leveled);
    println!(
        "leveled at N16BootFull: {} instructions, {} bootstrapped ciphertexts ({layer0} in layer 0), \
         {keys} rotation keys ({:.1} GB with the relinearization key), estimated {:.0} s per \
         token (default CPU cost model), placement exact: {}",
        leveled.plan.instructions.len(),
        leveled.bootstrapped_ciphertexts,
        key_bytes as f64 / 1e9,
        latency / 1e3,
        leveled.placement.exact
    );
    assert!(
        times.lowering.as_secs_f64() < 60.0,
        "lowering took {:?}",
        times.lowering
    );
    let total = times.tensor_level + times.lowering + times.levels;
    assert!(total.as_secs_f64() < 120.0, "compile took {total:?}");
}

/// The example with `past` replaced (cache length `past + 1` after the step).
fn with_cache(past: usize) -> Graph {
    let path = example();
    let mut source = std::fs::read_to_string(&path).unwrap();
    let start = source.find("param past = ").unwrap();
    let end = start + source[start..].find(';').unwrap();
    source.replace_range(start..end, &format!("param past = {past}"));
    load_source(
        &source,
        &path.display().to_string(),
        Path::new("."),
        &LoadOptions::default(),
    )
    .unwrap()
}

#[test]
#[ignore = "three 32-layer plans: run in release (examples/bench_compile.sh)"]
fn llama3_8b_latency_by_cache_length() {
    println!(
        "cache  bootstrapped ciphertexts (layer 0 / all)  rotation keys  key GB  est. s/token"
    );
    for cache in [128, 512, 2048] {
        let (_, _, leveled, times) = compile(with_cache(cache - 1));
        let (layer0, keys, key_bytes, latency) = summary(&leveled);
        println!(
            "{cache:>5}  {layer0:>12} / {:<6}  {keys:>13}  {:>6.1}  {:>11.0}   (compiled in {:.1?})",
            leveled.bootstrapped_ciphertexts,
            key_bytes as f64 / 1e9,
            latency / 1e3,
            times.tensor_level + times.lowering + times.levels
        );
    }
}
