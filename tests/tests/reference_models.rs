//! Every model and reference case in `../shared/models` (override with `CACHEMIR_MODELS`):
//! the importer plus the reference interpreter reproduce onnxruntime's outputs, static models
//! fold completely, and subgraph extraction cuts out one encoder layer exactly.
//!
//! Where the folder is absent (a fresh clone without `../shared`), each test prints a notice and
//! passes without checking anything.

use cachemir_compiler::reference::{Case, Comparison, compare, models_dir, run_case};
use cachemir_ir::npy::read_npy;
use cachemir_ir::{Interpreter, Precision, Tensor};
use cachemir_onnx::{ImportOptions, import_file};
use cachemir_tests::{ModelEntry, manifest};
use std::collections::HashMap;

/// Index filter over the real (unpadded) tokens, from a `[batch, positions]` attention mask
/// whose last `tokens` positions are the ones the output rows belong to.
fn real_tokens(mask: &Tensor, tokens: usize) -> impl Fn(&[usize]) -> bool + '_ {
    let mask = mask.as_i64().expect("integer mask").clone();
    let offset = mask.shape()[1] - tokens;
    move |index: &[usize]| mask[[index[0], offset + index[1]]] != 0
}

/// Checks one case; returns the comparisons for the log.
fn check_case(
    entry: &ModelEntry,
    case_path: &std::path::Path,
    precision: Precision,
) -> Vec<Comparison> {
    let case = Case::load(case_path).unwrap();
    let options = ImportOptions {
        input_shapes: case.input_shapes(),
        ..Default::default()
    };
    let imported = import_file(&entry.onnx, &options).unwrap();
    let outputs = run_case(&imported.graph, &case, precision).unwrap();
    let mask = &case.inputs["attention_mask"];
    let mut comparisons = Vec::new();
    for (name, path) in &case.expected {
        let reference = read_npy(path).unwrap();
        let actual = &outputs[name];
        let label = format!("{} {} {name}", entry.name, case_path.display());
        let (comparison, bound) = match name.as_str() {
            "last_hidden_state" => {
                let tokens = reference.shape()[1];
                let keep = real_tokens(mask, tokens);
                (
                    compare(name, actual, &reference, Some(&keep)).unwrap(),
                    1e-4,
                )
            }
            "logits" => {
                let tokens = reference.shape()[1];
                let keep = real_tokens(mask, tokens);
                assert_same_argmax(actual, &reference, mask, &label);
                (
                    compare(name, actual, &reference, Some(&keep)).unwrap(),
                    1e-3,
                )
            }
            _ => (compare(name, actual, &reference, None).unwrap(), 1e-4),
        };
        assert!(
            comparison.max_abs_error <= bound,
            "{label}: max abs error {:.3e} > {bound:e}",
            comparison.max_abs_error
        );
        comparisons.push(comparison);
    }
    assert!(
        !comparisons.is_empty(),
        "{}: no expected outputs",
        case_path.display()
    );
    comparisons
}

/// The next-token choice of every sequence (last position, real tokens only) is the reference's.
fn assert_same_argmax(actual: &Tensor, reference: &Tensor, mask: &Tensor, label: &str) {
    let (a, r) = (actual.to_f64(), reference.to_f64());
    let mask = mask.as_i64().unwrap();
    let (batch, tokens, vocab) = (r.shape()[0], r.shape()[1], r.shape()[2]);
    let argmax = |x: &ndarray::ArrayD<f64>, b: usize| {
        (0..vocab)
            .max_by(|&i, &j| x[[b, tokens - 1, i]].total_cmp(&x[[b, tokens - 1, j]]))
            .unwrap()
    };
    for b in 0..batch {
        if mask[[b, mask.shape()[1] - 1]] == 0 {
            continue;
        }
        assert_eq!(
            argmax(&a, b),
            argmax(&r, b),
            "{label}: next token of sequence {b}"
        );
    }
}

#[test]
fn every_case_reproduces_onnxruntime_in_f64() {
    let Some(dir) = models_dir() else { return };
    let mut checked = 0;
    for entry in manifest(&dir) {
        for case in &entry.cases {
            for c in check_case(&entry, case, Precision::F64) {
                eprintln!(
                    "{:<32} {:<12} {:<20} abs {:.2e} rel {:.2e}",
                    entry.name,
                    case.file_name().unwrap().to_string_lossy(),
                    c.name,
                    c.max_abs_error,
                    c.max_relative_error
                );
            }
            checked += 1;
        }
    }
    assert!(checked >= 11, "only {checked} cases found");
}

#[test]
fn decoders_reproduce_onnxruntime_in_f32() {
    let Some(dir) = models_dir() else { return };
    for entry in manifest(&dir)
        .iter()
        .filter(|e| e.name.starts_with("tiny_"))
    {
        for case in &entry.cases {
            check_case(entry, case, Precision::F32);
        }
    }
}

#[test]
fn static_models_fold_all_shape_arithmetic() {
    let Some(dir) = models_dir() else { return };
    let minilm_dims = ImportOptions {
        dims: HashMap::from([("batch".into(), 1), ("sequence".into(), 16)]),
        ..Default::default()
    };
    let cases = [
        (
            "tiny_llama_decode_step_p15_ts17.onnx",
            ImportOptions::default(),
        ),
        (
            "tiny_gpt2_decode_step_p15_ts17.onnx",
            ImportOptions::default(),
        ),
        ("minilm_l6_dyn_ts17.onnx", minilm_dims),
    ];
    for (file, options) in cases {
        let imported = import_file(&dir.join(file), &options).unwrap();
        let histogram = imported.graph.op_histogram();
        for op in ["Shape", "ConstantOfShape", "Range", "Expand"] {
            assert!(
                !histogram.contains_key(op),
                "{file}: {op} left after folding"
            );
        }
        let summary = imported.summary_text();
        let after = summary
            .split("ops after folding:")
            .nth(1)
            .and_then(|rest| rest.split("inputs:").next())
            .expect("summary lists the ops after folding");
        assert!(after.contains("MatMul"), "{file}: {after}");
        for op in ["Shape ", "ConstantOfShape", "Range", "Expand"] {
            assert!(
                !after.contains(op),
                "{file}: the summary lists {op} after folding"
            );
        }
        assert!(imported.summary.folded_nodes > 0, "{file}: nothing folded");
    }
}

#[test]
fn kv_cache_tensors_are_state() {
    let Some(dir) = models_dir() else { return };
    let imported = import_file(
        &dir.join("tiny_llama_decode_step_p15_ts17.onnx"),
        &ImportOptions::default(),
    )
    .unwrap();
    let graph = &imported.graph;
    let states: Vec<(String, String)> = graph
        .inputs()
        .iter()
        .filter_map(|i| match &i.role {
            cachemir_ir::InputRole::State { output } => {
                Some((graph.input_name(i).to_string(), output.clone()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(states.len(), 4);
    assert!(states.contains(&("past_key_values.1.value".into(), "present.1.value".into())));
    let secrecy = |name: &str| {
        let input = graph
            .inputs()
            .iter()
            .find(|i| graph.input_name(i) == name)
            .unwrap();
        graph.input_type(input).secrecy
    };
    assert_eq!(
        secrecy("past_key_values.0.key"),
        cachemir_ir::Secrecy::Encrypted
    );
    assert_eq!(secrecy("attention_mask"), cachemir_ir::Secrecy::Public);
}

#[test]
fn one_extracted_encoder_layer_equals_the_layer_inside_the_model() {
    let Some(dir) = models_dir() else { return };
    let onnx = dir.join("minilm_l6_dyn_ts17.onnx");
    let case = Case::load(&dir.join("minilm_l6_dyn_ts17/case0.json")).unwrap();
    let layer_input = "/bert/encoder/layer.0/output/LayerNorm/LayerNormalization_output_0";
    let layer_output = "/bert/encoder/layer.1/output/LayerNorm/LayerNormalization_output_0";
    let full = import_file(
        &onnx,
        &ImportOptions {
            input_shapes: case.input_shapes(),
            ..Default::default()
        },
    )
    .unwrap();
    let observe = [
        full.graph.find_value(layer_input).unwrap(),
        full.graph.find_value(layer_output).unwrap(),
    ];
    let values = Interpreter::new(&full.graph, Precision::F64)
        .run_values(&case.inputs, &observe)
        .unwrap();
    let as_tensor = |v: &cachemir_ir::interp::Value, dtype| v.clone().into_tensor(dtype).unwrap();
    use cachemir_ir::DType::{F32, F64};

    let layer = import_file(
        &onnx,
        &ImportOptions {
            input_shapes: case.input_shapes(),
            inputs_at: vec![layer_input.into()],
            outputs: Some(vec![layer_output.into()]),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(
        layer.graph.op_histogram()["LayerNormalization"],
        2,
        "one layer has two LayerNorms"
    );
    let mut inputs = HashMap::from([(
        layer_input.to_string(),
        as_tensor(&values[&observe[0]], F64),
    )]);
    inputs.insert(
        "attention_mask".into(),
        case.inputs["attention_mask"].clone(),
    );
    let out = Interpreter::new(&layer.graph, Precision::F64)
        .run(&inputs)
        .unwrap();
    // `run` rounds outputs to their declared f32 type; round the reference the same way.
    let expected = as_tensor(&values[&observe[1]], F32);
    let c = compare(layer_output, &out[layer_output], &expected, None).unwrap();
    assert_eq!(
        c.max_abs_error, 0.0,
        "extracted layer differs from the full model"
    );
}
