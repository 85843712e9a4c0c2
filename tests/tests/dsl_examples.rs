//! The hand-written models in `examples/`: the tiny Llama and tiny GPT-2 decode steps evaluate
//! to onnxruntime's outputs with the weights the importer writes, and shape-only Llama-3-8B
//! builds its graph quickly without allocating its weights.

use cachemir_compiler::reference::{Case, compare, models_dir, run_case};
use cachemir_dsl::print::print_model;
use cachemir_dsl::{LoadOptions, load_file, weights};
use cachemir_ir::npy::read_npy;
use cachemir_ir::{Op, Precision};
use cachemir_onnx::{ImportOptions, import_file};
use std::path::PathBuf;
use std::time::Instant;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes the weights of `onnx` (imported with `dims` bound) the way `cachemirc import --emit dsl`
/// does, then evaluates the example on the given cases of the model: logits and hidden states
/// within 1e-4, everything else within 1e-5.
fn check_example(example: &str, onnx: &str, dims: &[(&str, usize)], cases: &[usize]) {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let weights_path = scratch.path().join("weights.safetensors");
    let options = ImportOptions {
        dims: dims.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
        ..Default::default()
    };
    let imported = import_file(&dir.join(format!("{onnx}.onnx")), &options).unwrap();
    weights::save(
        &weights_path,
        &print_model(&imported.graph, "unused").weights,
    )
    .unwrap();
    let options = LoadOptions {
        weights: Some(weights_path),
    };
    let graph = load_file(&repo().join("examples").join(example), &options)
        .unwrap_or_else(|e| panic!("{e}"));
    for &case_index in cases {
        let case = Case::load(&dir.join(onnx).join(format!("case{case_index}.json"))).unwrap();
        let outputs = run_case(&graph, &case, Precision::F32).unwrap();
        for (name, path) in &case.expected {
            let c = compare(name, &outputs[name], &read_npy(path).unwrap(), None).unwrap();
            let bound = if name == "logits" || name == "last_hidden_state" {
                1e-4
            } else {
                1e-5
            };
            assert!(
                c.max_abs_error <= bound,
                "{example} case{case_index} {name}: {:.3e}",
                c.max_abs_error
            );
        }
    }
}

#[test]
fn hand_written_tiny_llama_matches_onnxruntime() {
    check_example(
        "tiny_llama_decode_step.cmr",
        "tiny_llama_decode_step_p15_ts17",
        &[],
        &[0, 1],
    );
}

#[test]
fn hand_written_tiny_gpt2_matches_onnxruntime() {
    check_example(
        "tiny_gpt2_decode_step.cmr",
        "tiny_gpt2_decode_step_p15_ts17",
        &[],
        &[0, 1],
    );
}

#[test]
fn shape_only_llama3_8b_builds_fast_without_weights() {
    let start = Instant::now();
    let graph = load_file(
        &repo().join("examples/llama3_8b_decode_step.cmr"),
        &LoadOptions::default(),
    )
    .unwrap();
    let elapsed = start.elapsed();
    assert!(elapsed.as_secs_f64() < 2.0, "took {elapsed:?}");
    let histogram = graph.op_histogram();
    assert_eq!(histogram["Attention"], 32);
    assert_eq!(histogram["RmsNorm"], 65);
    assert_eq!(
        histogram.get("Constant"),
        Some(&2),
        "only the RoPE frequency tables hold data"
    );
    // Llama-3-8B's 8.03e9 parameters less the 0.53e9 of the embedding table, which stays with
    // the client: all synthetic, counted at 4 bytes each, none of them allocated.
    let parameters = graph.constant_bytes() / 4;
    assert!(
        (7_450_000_000..7_550_000_000).contains(&parameters),
        "{parameters} parameters"
    );
    let dense_bytes: usize = graph
        .node_indices()
        .iter()
        .filter_map(|&n| match &graph.node(n).op {
            Op::Constant(t) => Some(t.size_bytes()),
            _ => None,
        })
        .sum();
    assert!(
        dense_bytes < 1024,
        "{dense_bytes} bytes of weights were allocated"
    );
    let logits = graph.outputs().iter().find(|o| o.name == "logits").unwrap();
    assert_eq!(
        graph.value_type(logits.value).unwrap().shape,
        vec![1, 1, 128256]
    );
}

#[test]
fn hand_written_minilm_matches_onnxruntime() {
    // Case 0 is the one batch-1, 16-token sentence the example is written for.
    check_example(
        "minilm_l6_encoder.cmr",
        "minilm_l6_dyn_ts17",
        &[("batch", 1), ("sequence", 16)],
        &[0],
    );
}
