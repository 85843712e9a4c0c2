//! The egg rewrite pass on every shared reference model and case, encrypted from the embedding
//! on (and the KV cache encrypted): the result verifies, keeps the interface, computes what the
//! imported graph does (f64 interpreter, max abs difference ≤ 1e-5 on every output) at no more
//! FHE cost; and a snapshot of the rewritten tiny Llama decode step.
//!
//! Models live in `../shared/models` (override with `CACHEMIR_MODELS`); where absent, the tests
//! print a notice and pass without checking anything.

use cachemir_compiler::reference::{Case, models_dir};
use cachemir_compiler::rewrite::{RewriteOptions, RewriteReport, rewrite};
use cachemir_ir::printer::print_graph;
use cachemir_ir::{Graph, Secrecy};
use cachemir_onnx::{ImportOptions, import_file};
use cachemir_tests::{ReferenceCase, embedding_output, f64_outputs, reference_cases};
use std::path::Path;

/// Largest difference allowed between the imported and the rewritten graph's outputs.
const TOLERANCE: f64 = 1e-5;

/// The model imported for the case's shapes, encrypted from the embedding on.
fn import_encrypted(model: &str, onnx: &Path, case: &Case) -> Graph {
    let options = ImportOptions {
        input_shapes: case.input_shapes(),
        ..Default::default()
    };
    let mut graph = import_file(onnx, &options).unwrap().graph;
    graph.set_input_secrecy(|name, _| {
        if name.starts_with("past_key_values") {
            Secrecy::Encrypted
        } else {
            Secrecy::Public
        }
    });
    graph.encrypt_from(embedding_output(model)).unwrap();
    graph
}

/// Rewrites `graph` and checks the result against it on `case`; returns the rewritten graph.
fn check(label: &str, graph: &Graph, case: &Case) -> (Graph, RewriteReport) {
    let (after, report) =
        rewrite(graph, &RewriteOptions::default()).unwrap_or_else(|e| panic!("{label}: {e}"));
    after.verify().unwrap_or_else(|e| panic!("{label}: {e}"));
    assert!(report.cost_after <= report.cost_before, "{label}: {report}");
    let names = |g: &Graph| {
        let inputs: Vec<String> = g.inputs().iter().map(|i| g.input_name(i).into()).collect();
        let outputs: Vec<String> = g.outputs().iter().map(|o| o.name.clone()).collect();
        (inputs, outputs)
    };
    assert_eq!(names(&after), names(graph), "{label}");
    let before = f64_outputs(graph, &case.inputs);
    let rewritten = f64_outputs(&after, &case.inputs);
    for (name, expected) in &before {
        let actual = &rewritten[name];
        assert_eq!(actual.shape(), expected.shape(), "{label} {name}");
        let difference = (actual - expected)
            .iter()
            .fold(0.0, |m: f64, d| m.max(d.abs()));
        assert!(
            difference <= TOLERANCE,
            "{label} {name}: max abs difference {difference:.3e}"
        );
    }
    (after, report)
}

#[test]
fn every_model_rewrites_to_the_same_values_at_no_more_cost() {
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
        let graph = import_encrypted(&model, &onnx, &case);
        let (_, report) = check(&label, &graph, &case);
        eprintln!("{label}\n{report}");
        checked += 1;
    }
    assert!(checked >= 11, "only {checked} cases found");
}

#[test]
fn rewritten_tiny_llama_decode_step_snapshot() {
    let Some(dir) = models_dir() else { return };
    let model = "tiny_llama_decode_step_p15_ts17";
    let case = Case::load(&dir.join(model).join("case0.json")).unwrap();
    let graph = import_encrypted(model, &dir.join(format!("{model}.onnx")), &case);
    let (after, report) = check(model, &graph, &case);
    assert!(report.fired("fold-rotate-half-into-weight") > 0, "{report}");
    insta::assert_snapshot!("tiny_llama_decode_step_rewritten", print_graph(&after));
}
