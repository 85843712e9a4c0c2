//! KV-cache-aware bootstrap placement against the two baselines on a decode step with the tiny
//! Llama's shapes (hidden 128, 2 layers, 4 query heads sharing 2 KV heads, SwiGLU 344, vocabulary
//! 2048) at a cache of 128 tokens: the Llama-3-8B DSL example with those parameters, shape-only,
//! values assumed in [−8, 8]. Estimated per-token cost with the default CPU cost model.

#[path = "support/shape_only.rs"]
mod shape_only;
use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, StatePolicy, Strategy, calibrated_bound, place};
use cachemir_compiler::lower::{LowerOptions, lower};
use cachemir_dsl::{LoadOptions, load_source};
use std::path::Path;

fn tiny_llama_shaped(past: usize) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/llama3_8b_decode_step.cmr");
    let mut source = std::fs::read_to_string(path).unwrap();
    for (param, value) in [
        ("d_model", "128".to_string()),
        ("layers", "2".into()),
        ("heads", "4".into()),
        ("kv_heads", "2".into()),
        ("head_dim", "32".into()),
        ("d_ff", "344".into()),
        ("vocab", "2048".into()),
        ("past", past.to_string()),
    ] {
        let start = source.find(&format!("param {param} = ")).unwrap();
        let end = start + source[start..].find(';').unwrap();
        source.replace_range(start..end, &format!("param {param} = {value}"));
    }
    source
}

#[test]
fn kv_aware_placement_beats_greedy_and_cache_blind_at_cache_128() {
    let source = tiny_llama_shaped(127);
    let mut graph =
        load_source(&source, "tiny.cmr", Path::new("."), &LoadOptions::default()).unwrap();
    shape_only::prepare(&mut graph);
    let lowered = lower(
        &graph,
        &LowerOptions {
            slots: 1 << 15,
            period: None,
            weights_file: "w.safetensors".into(),
        },
    )
    .unwrap();
    let bound = |site: &str| calibrated_bound(&graph, site);
    let mut results = Vec::new();
    for strategy in [
        Strategy::Optimal(StatePolicy::Optimised),
        Strategy::Greedy,
        Strategy::Optimal(StatePolicy::IgnoreCache),
    ] {
        let mut options = LevelOptions::new(by_name("N16BootFull").unwrap());
        options.strategy = strategy;
        let placed = place(&lowered.plan, &bound, &options).unwrap();
        let ciphertexts: usize = placed
            .nodes
            .iter()
            .zip(&placed.placement.bootstrapped)
            .filter(|(_, b)| **b)
            .map(|(n, _)| n.ciphertexts())
            .sum();
        eprintln!(
            "{strategy:?}: {} bootstrapped sites, {ciphertexts} bootstrapped ciphertexts, \
             estimated {:.1} s per token",
            placed.placement.bootstraps(),
            placed.placement.cost_ms / 1e3
        );
        results.push(placed.placement.cost_ms);
    }
    let (aware, greedy, blind) = (results[0], results[1], results[2]);
    assert!(aware < greedy, "KV-aware {aware} ms, greedy {greedy} ms");
    assert!(
        aware < blind,
        "KV-aware {aware} ms, ignoring the cache {blind} ms"
    );
}
