//! The tensor-level passes for shape-only models (DSL `weights none`): recognition, rewriting,
//! decomposition, ranges assumed in [−8, 8] (no calibration data), approximation.

use cachemir_compiler::passes::approximate::Approximate;
use cachemir_compiler::passes::calibrate::AssumeRanges;
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pass, Pipeline, Recognize, Rewrite};
use cachemir_ir::Graph;

/// Runs the passes on `graph` in place.
///
/// # Panics
/// If a pass fails (test helper).
pub fn prepare(graph: &mut Graph) {
    let mut pipeline = Pipeline::new()
        .with(Recognize)
        .with(Rewrite::default())
        .with(Decompose::default())
        .with(AssumeRanges::default());
    pipeline.run(graph, None, &[], &mut |_, _| {}).unwrap();
    Approximate::default().run(graph).unwrap();
}
