//! Composite-op recognition on every shared reference model and case: the expected composites
//! are formed (exact counts), the rewritten graph verifies, computes what the imported one does
//! (f64 interpreter, max abs difference ≤ 1e-5 on every output) and a second run finds nothing.
//!
//! Models live in `../shared/models` (override with `CACHEMIR_MODELS`); where absent, the test
//! prints a notice and passes without checking anything.

use cachemir_compiler::reference::{Case, models_dir};
use cachemir_ir::recognize::recognize;
use cachemir_onnx::{ImportOptions, import_file};
use cachemir_tests::{ReferenceCase, f64_outputs, reference_cases};
use std::time::Instant;

/// Largest difference allowed between the imported and the rewritten graph's outputs.
const TOLERANCE: f64 = 1e-5;

/// Ops that occur in the models only inside the recognised patterns.
const LEFTOVERS: [&str; 8] = [
    "Softmax",
    "Erf",
    "Tanh",
    "Sigmoid",
    "Sqrt",
    "Neg",
    "Pow",
    "ReduceMean",
];

/// The composites each model must yield. Every case of a model (whatever its batch, sequence
/// and past lengths, prefill or decode) yields the same counts.
fn expected(model: &str) -> &'static [(&'static str, usize)] {
    match model {
        // 2 layers × (2 RMSNorms, SiLU, RoPE on q and on k, attention) + the final norm.
        "tiny_llama_decode_step_p15_ts17" | "tiny_llama_with_past_ts17" => {
            &[("Attention", 2), ("RmsNorm", 5), ("Rope", 4), ("Silu", 2)]
        }
        // 2 layers × (gelu_new, attention); the LayerNorms are already ONNX ops.
        "tiny_gpt2_decode_step_p15_ts17" | "tiny_gpt2_with_past_ts17" => {
            &[("Attention", 2), ("Gelu(Tanh)", 2)]
        }
        // 6 layers × (GELU, attention).
        "minilm_l6_dyn_ts17" => &[("Attention", 6), ("Gelu(Erf)", 6)],
        _ => &[],
    }
}

#[test]
fn every_model_forms_its_composites_and_computes_the_same() {
    let Some(dir) = models_dir() else { return };
    let mut checked = 0;
    for ReferenceCase {
        model,
        onnx,
        path,
        label,
    } in reference_cases(&dir)
    {
        let case = Case::load(&path).unwrap();
        let options = ImportOptions {
            input_shapes: case.input_shapes(),
            ..Default::default()
        };
        let imported = import_file(&onnx, &options).unwrap().graph;
        let mut graph = imported.clone();
        let start = Instant::now();
        let report = recognize(&mut graph);
        let elapsed = start.elapsed();
        graph.verify().unwrap_or_else(|e| panic!("{label}: {e}"));

        let formed: Vec<(&str, usize)> = report
            .formed
            .iter()
            .map(|(k, v)| (k.as_str(), *v))
            .collect();
        assert_eq!(formed, expected(&model), "{label}: {report}");
        let histogram = graph.op_histogram();
        for op in LEFTOVERS {
            assert!(!histogram.contains_key(op), "{label}: {op} left over");
        }
        let again = recognize(&mut graph);
        assert!(again.is_empty(), "{label}: second run {again}");

        let before = f64_outputs(&imported, &case.inputs);
        let after = f64_outputs(&graph, &case.inputs);
        let mut worst: f64 = 0.0;
        for (name, expected) in &before {
            let actual = &after[name];
            assert_eq!(actual.shape(), expected.shape(), "{label} {name}");
            let difference = (actual - expected)
                .iter()
                .fold(0.0, |m: f64, d| m.max(d.abs()));
            assert!(
                difference <= TOLERANCE,
                "{label} {name}: max abs difference {difference:.3e}"
            );
            worst = worst.max(difference);
        }
        eprintln!(
            "{label:<48} {report}; nodes {} -> {}; max abs diff {worst:.2e}; pass {:.1} ms",
            imported.node_count(),
            graph.node_count(),
            elapsed.as_secs_f64() * 1e3
        );
        checked += 1;
    }
    assert!(checked >= 11, "only {checked} cases found");
}
