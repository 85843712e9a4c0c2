//! The Llama-3-8B shape-only decode step (examples/llama3_8b_decode_step.cmr, cache of 1023
//! tokens) lowered to a plan at 2^15 slots: time and per-layer op and rotation counts. Ignored in
//! the debug suite; `examples/bench_compile.sh` runs it in release.

use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, assign_levels, calibrated_bound};
use cachemir_compiler::lower::{Counts, LowerOptions, lower};
use cachemir_compiler::passes::approximate::Approximate;
use cachemir_compiler::passes::calibrate::AssumeRanges;
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pass, Pipeline, Recognize, Rewrite};
use cachemir_dsl::{LoadOptions, load_file};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

#[test]
#[ignore = "a full 32-layer plan: run in release (examples/bench_compile.sh)"]
fn llama3_8b_decode_step_lowers_in_time() {
    let path = std::env::var_os("CACHEMIR_LLAMA3_DSL").map_or_else(
        || PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/llama3_8b_decode_step.cmr"),
        PathBuf::from,
    );
    let mut graph = load_file(&path, &LoadOptions::default()).unwrap();
    let start = Instant::now();
    let mut pipeline = Pipeline::new()
        .with(Recognize)
        .with(Rewrite::default())
        .with(Decompose::default())
        .with(AssumeRanges::default());
    let records = pipeline.run(&mut graph, None, &[], &mut |_, _| {}).unwrap();
    for record in &records {
        println!("{record:?}");
    }
    Approximate::default().run(&mut graph).unwrap();
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
    let mut per_layer: BTreeMap<Option<u32>, Counts> = BTreeMap::new();
    for (_, layer, counts) in &lowered.site_counts {
        let total = per_layer.entry(*layer).or_default();
        *total = *total + *counts;
    }
    println!(
        "Llama-3-8B decode step (cache 1023) at 2^15 slots: tensor-level passes {tensor_level:.2?}, \
         lowering {lowering:.2?}; period {}, {} instructions, {} rotation steps, {:?}",
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
    assert!(lowering.as_secs_f64() < 60.0, "lowering took {lowering:?}");
    // Levels and bootstraps at N = 2^16 (issue 8): the whole compile under two minutes.
    let start = Instant::now();
    let options = LevelOptions::new(by_name("N16BootFull").unwrap());
    let leveled = assign_levels(
        &lowered.plan,
        &|site| calibrated_bound(&graph, site),
        &options,
    )
    .unwrap();
    let leveling = start.elapsed();
    let mut boots: BTreeMap<Option<u32>, (usize, usize)> = BTreeMap::new();
    for (k, instruction) in leveled.plan.instructions.iter().enumerate() {
        if let cachemir_ir::plan::Instruction::Bootstrap { .. } = instruction {
            let site = &leveled.plan.sites[leveled.plan.instruction_sites[k] as usize];
            boots.entry(site.layer).or_default().0 += 1;
        }
    }
    println!(
        "levels: {leveling:.2?}; {} bootstrapped sites, {} bootstrapped ciphertexts, estimated \
         {:.1} s per token (default CPU model), placement exact: {}; {} instructions",
        leveled.placement.bootstraps(),
        leveled.bootstrapped_ciphertexts,
        leveled.placement.cost_ms / 1e3,
        leveled.placement.exact,
        leveled.plan.instructions.len()
    );
    for (layer, (ciphertexts, _)) in &boots {
        println!("layer {layer:?}: {ciphertexts} bootstrapped ciphertexts");
    }
    let mut per_site: BTreeMap<String, usize> = BTreeMap::new();
    for (k, instruction) in leveled.plan.instructions.iter().enumerate() {
        if let cachemir_ir::plan::Instruction::Bootstrap { .. } = instruction {
            let site = &leveled.plan.sites[leveled.plan.instruction_sites[k] as usize];
            if site.layer == Some(0) {
                *per_site.entry(site.name.clone()).or_default() += 1;
            }
        }
    }
    println!("layer 0 bootstraps by site: {per_site:?}");
    let total = tensor_level + lowering + leveling;
    assert!(total.as_secs_f64() < 120.0, "compile took {total:?}");
}
