//! The level pass on the shared models: N = 2^16 bootstrappable parameters, levels enforced,
//! same accuracy bounds as the unleveled plans, and the KV-aware placement against the greedy
//! waterline and (decoders) a placement that ignores the cache state; the scheduled plan
//! computes the same outputs with a peak of live ciphertexts no higher.

use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{
    LevelOptions, Leveled, StatePolicy, Strategy, assign_levels, calibrated_bound, place,
};
use cachemir_compiler::reference::{Case, models_dir};
use cachemir_compiler::schedule::schedule;
use cachemir_ir::Graph;
use cachemir_ir::plan::{Parameters, Plan};
use cachemir_tests::{
    approximated, check_decoder_outputs, check_sentence_embedding, lower_model, run_sim,
};

fn level(plan: &Plan, graph: &Graph, strategy: Strategy) -> Leveled {
    let mut options = LevelOptions::new(by_name("N16BootFull").unwrap());
    options.strategy = strategy;
    let start = std::time::Instant::now();
    let leveled = assign_levels(plan, &|site| calibrated_bound(graph, site), &options).unwrap();
    eprintln!(
        "{strategy:?}: {} bootstrapped sites, {} bootstrapped ciphertexts, estimated {:.1} s, exact \
         {}, {} instructions ({:.2?})",
        leveled.placement.bootstraps(),
        leveled.bootstrapped_ciphertexts,
        leveled.placement.cost_ms / 1e3,
        leveled.placement.exact,
        leveled.plan.instructions.len(),
        start.elapsed()
    );
    leveled
}

fn check_decoder(model: &str) {
    let Some(dir) = models_dir() else { return };
    let (_, graph, _) = approximated(&dir, model, 32);
    let lowered = lower_model(&graph, model);
    let aware = level(
        &lowered.plan,
        &graph,
        Strategy::Optimal(StatePolicy::Optimised),
    );
    let scheduled = schedule(&aware.plan).unwrap();
    eprintln!(
        "{model}: schedule: peak {} → {} live ciphertexts ({:?} → {:?} bytes), {} → {} registers",
        scheduled.before.peak_ciphertexts,
        scheduled.after.peak_ciphertexts,
        scheduled.before.peak_bytes,
        scheduled.after.peak_bytes,
        aware.plan.registers,
        scheduled.plan.registers
    );
    assert!(scheduled.after.peak_ciphertexts <= scheduled.before.peak_ciphertexts);
    assert!(scheduled.after.peak_bytes <= scheduled.before.peak_bytes);
    assert!(scheduled.plan.registers < aware.plan.registers);
    for index in 0..2 {
        let case = Case::load(&dir.join(model).join(format!("case{index}.json"))).unwrap();
        let outputs = run_sim(&lowered, &aware.plan, &graph, &case);
        check_decoder_outputs(&format!("{model} case{index} leveled"), &case, &outputs);
        // The same values in another order and other registers: identical outputs.
        let reordered = run_sim(&lowered, &scheduled.plan, &graph, &case);
        assert_eq!(reordered, outputs, "{model} case{index}: scheduled plan");
    }
    let greedy = level(&lowered.plan, &graph, Strategy::Greedy);
    let mut options = LevelOptions::new(by_name("N16BootFull").unwrap());
    options.strategy = Strategy::Optimal(StatePolicy::IgnoreCache);
    let ignore = place(&lowered.plan, &|s| calibrated_bound(&graph, s), &options)
        .unwrap()
        .placement;
    eprintln!(
        "{model}: estimated per-token cost (default CPU model): KV-aware {:.1} s ({} bootstrapped \
         sites), greedy waterline {:.1} s ({}), ignoring the cache state {:.1} s ({})",
        aware.placement.cost_ms / 1e3,
        aware.placement.bootstraps(),
        greedy.placement.cost_ms / 1e3,
        greedy.placement.bootstraps(),
        ignore.cost_ms / 1e3,
        ignore.bootstraps()
    );
    assert!(aware.placement.cost_ms < greedy.placement.cost_ms);
    assert!(aware.placement.cost_ms < ignore.cost_ms);
}

#[test]
fn tiny_llama_decode_step_leveled() {
    check_decoder("tiny_llama_decode_step_p15_ts17");
}

#[test]
fn tiny_gpt2_decode_step_leveled() {
    check_decoder("tiny_gpt2_decode_step_p15_ts17");
}

/// MiniLM (batch 1 × 16, case0, 8 calibration samples) leveled for `parameters`, run on `sim`
/// with levels enforced: the sentence-embedding cosine bound of the unleveled plan (≥ 0.999). An
/// encoder has no KV cache, so the placement that ignores the cache state is the KV-aware one;
/// only the greedy waterline is compared.
fn check_minilm(parameters: Parameters) {
    let Some(dir) = models_dir() else { return };
    let model = "minilm_l6_dyn_ts17";
    let (_, graph, _) = approximated(&dir, model, 8);
    let lowered = lower_model(&graph, model);
    let name = parameters.name.clone();
    let mut options = LevelOptions::new(parameters);
    let bound = |site: &str| calibrated_bound(&graph, site);
    let start = std::time::Instant::now();
    let aware = assign_levels(&lowered.plan, &bound, &options)
        .unwrap_or_else(|e| panic!("{model} at {name}: {e}"));
    eprintln!(
        "{model} at {name}: {} bootstrapped sites, {} bootstrapped ciphertexts, estimated {:.1} s, \
         exact {}, {} instructions ({:.2?})",
        aware.placement.bootstraps(),
        aware.bootstrapped_ciphertexts,
        aware.placement.cost_ms / 1e3,
        aware.placement.exact,
        aware.plan.instructions.len(),
        start.elapsed()
    );
    let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
    let outputs = run_sim(&lowered, &aware.plan, &graph, &case);
    check_sentence_embedding(&format!("{model} case0 leveled at {name}"), &case, &outputs);
    options.strategy = Strategy::Greedy;
    let greedy = assign_levels(&lowered.plan, &bound, &options).unwrap();
    eprintln!(
        "{model} at {name}: estimated cost (default CPU model): optimal {:.1} s ({} bootstrapped \
         sites, {} ciphertexts), greedy waterline {:.1} s ({}, {})",
        aware.placement.cost_ms / 1e3,
        aware.placement.bootstraps(),
        aware.bootstrapped_ciphertexts,
        greedy.placement.cost_ms / 1e3,
        greedy.placement.bootstraps(),
        greedy.bootstrapped_ciphertexts
    );
    assert!(aware.placement.bootstraps() > 0);
    assert!(aware.placement.cost_ms <= greedy.placement.cost_ms);
}

/// MiniLM at N16BootFull (see [`check_minilm`]). The GELU of layers 0 and 1 (Chebyshev degree
/// 88 on its calibrated domain ≈ [−21, 29] for 2^−12) consumes 8 of the 9 levels a bootstrap
/// leaves; this fits because the bootstrap multiplies its input back by its bound inside
/// SlotsToCoeffs instead of spending a level on it.
#[test]
fn minilm_leveled() {
    check_minilm(by_name("N16BootFull").unwrap());
}
