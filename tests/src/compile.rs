//! The compile pipeline as the tests run it on the shared models: the tensor-level passes, the
//! lowering (printing its counts), and the level and bootstrap placement.

use crate::embedding_output;
use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, Strategy, assign_levels, calibrated_bound};
use cachemir_compiler::lower::{LowerOptions, Lowered, lower};
use cachemir_compiler::passes::approximate::Approximate;
use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pass, Pipeline, Recognize, Rewrite};
use cachemir_compiler::reference::Case;
use cachemir_ir::Graph;
use cachemir_ir::plan::Plan;
use std::path::Path;

/// Slots of the plans the model tests compile.
pub const SLOTS: usize = 1 << 15;

/// The shared model `model` imported with case0's shapes, encrypted from its embedding output,
/// and taken through the tensor-level pipeline (recognize, rewrite, decompose, calibrate on the
/// first `samples` calibration samples, approximate): `(imported, approximated, approximation
/// sites)`.
///
/// # Panics
/// When a model file is unreadable or a pass fails (a test failure, by design).
pub fn approximated(dir: &Path, model: &str, samples: usize) -> (Graph, Graph, Approximate) {
    let case = Case::load(&dir.join(model).join("case0.json")).expect("case0.json");
    let options = cachemir_onnx::ImportOptions {
        input_shapes: case.input_shapes(),
        ..Default::default()
    };
    let original = cachemir_onnx::import_file(&dir.join(format!("{model}.onnx")), &options)
        .expect("the model imports")
        .graph;
    let mut graph = original.clone();
    graph
        .encrypt_from(embedding_output(model))
        .expect("the embedding output exists");
    let calibration = Calibration::load(&dir.join(model).join("calib.json"))
        .expect("calib.json")
        .truncated(samples);
    let approximate = tensor_passes(&mut graph, calibration);
    (original, graph, approximate)
}

/// The tensor-level passes of `cachemirc compile` on `graph`, in place: recognize, rewrite,
/// decompose, calibrate on `calibration`, approximate; the approximation pass, which lists its
/// sites.
///
/// # Panics
/// When a pass fails (a test failure, by design).
pub fn tensor_passes(graph: &mut Graph, calibration: Calibration) -> Approximate {
    let mut pipeline = Pipeline::new()
        .with(Recognize)
        .with(Rewrite::default())
        .with(Decompose::default())
        .with(Calibrate { calibration });
    pipeline
        .run(graph, None, &[], &mut |_, _| {})
        .expect("the tensor-level passes");
    let mut approximate = Approximate::default();
    approximate.run(graph).expect("approximation");
    approximate
}

/// Lowers a graph at [`SLOTS`] slots, printing the counts and the costliest sites.
///
/// # Panics
/// If lowering fails (test helper).
pub fn lower_model(graph: &Graph, model: &str) -> Lowered {
    lower_model_at(graph, model, SLOTS)
}

/// Lowers a graph at `slots` slots per ciphertext, printing the counts and the costliest sites.
///
/// # Panics
/// If lowering fails (test helper).
pub fn lower_model_at(graph: &Graph, model: &str, slots: usize) -> Lowered {
    let start = std::time::Instant::now();
    let lowered = lower_at(graph, slots);
    eprintln!(
        "{model}: lowered in {:.2?}: period {}, {} instructions, {:?}",
        start.elapsed(),
        lowered.period,
        lowered.plan.instructions.len(),
        lowered.plan.counts()
    );
    let mut costly: Vec<_> = lowered.site_counts.iter().collect();
    costly.sort_by_key(|(_, _, c)| std::cmp::Reverse(c.rotations));
    for (site, _, c) in costly.iter().take(6) {
        eprintln!("  {site}: {c:?}");
    }
    lowered
}

/// Lowers a graph at `slots` slots per ciphertext, its weights file named `w.safetensors`.
///
/// # Panics
/// If lowering fails (test helper).
pub fn lower_at(graph: &Graph, slots: usize) -> Lowered {
    lower(
        graph,
        &LowerOptions {
            slots,
            period: None,
            weights_file: "w.safetensors".into(),
        },
    )
    .unwrap()
}

/// A shared decode-step model as the encrypted tests compile it: [`approximated`] on all its
/// calibration samples, [lowered](lower_model_at) at `slots` slots, levels and bootstraps placed
/// for the named parameter set by `strategy`: `(approximated graph, lowering, leveled plan)`.
///
/// # Panics
/// When a model file is unreadable, `params` names no set or a pass fails (a test failure).
pub fn compile_leveled(
    dir: &Path,
    model: &str,
    slots: usize,
    params: &str,
    strategy: Strategy,
) -> (Graph, Lowered, Plan) {
    let (_, graph, _) = approximated(dir, model, usize::MAX);
    let lowered = lower_model_at(&graph, model, slots);
    let mut options = LevelOptions::new(by_name(params).expect("a named parameter set"));
    options.strategy = strategy;
    let plan = assign_levels(
        &lowered.plan,
        &|site| calibrated_bound(&graph, site),
        &options,
    )
    .expect("levels and bootstraps placed")
    .plan;
    (graph, lowered, plan)
}
