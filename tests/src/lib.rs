//! Helpers shared by the end-to-end tests in `tests/` and the CLI's tests: the reference models'
//! manifest, graph outputs in f64, where each shared model's client encryption starts, and the
//! checks of a run's outputs against the references; the compile pipeline in [`compile`], runs on
//! a backend in [`run`], generation plans in [`generation`].

pub mod compile;
pub mod generation;
pub mod run;

pub use compile::{
    SLOTS, approximated, compile_leveled, lower_model, lower_model_at, tensor_passes,
};
pub use run::{run_backend, run_sim};

use cachemir_compiler::reference::Case;
use cachemir_ir::interp::Value;
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use ndarray::ArrayD;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// A model of `../shared/models/manifest.json`.
#[derive(Debug, Clone)]
pub struct ModelEntry {
    pub name: String,
    pub onnx: PathBuf,
    /// The `caseN.json` files.
    pub cases: Vec<PathBuf>,
}

/// The models the manifest in `dir` lists.
///
/// # Panics
/// When the manifest is unreadable (a test failure, by design).
pub fn manifest(dir: &Path) -> Vec<ModelEntry> {
    let text = std::fs::read_to_string(dir.join("manifest.json")).expect("manifest.json");
    let json: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    json["models"]
        .as_array()
        .expect("a models list")
        .iter()
        .map(|m| {
            let folder = dir.join(m["dir"].as_str().expect("dir"));
            ModelEntry {
                name: m["name"].as_str().expect("name").to_string(),
                onnx: dir.join(m["onnx"].as_str().expect("onnx")),
                cases: m["cases"]
                    .as_array()
                    .expect("cases")
                    .iter()
                    .map(|c| folder.join(c.as_str().expect("case file")))
                    .collect(),
            }
        })
        .collect()
}

/// One reference case of one model, labelled `model caseN.json` for messages.
#[derive(Debug, Clone)]
pub struct ReferenceCase {
    pub model: String,
    pub onnx: PathBuf,
    /// The `caseN.json` file.
    pub path: PathBuf,
    pub label: String,
}

/// Every case of every model the manifest in `dir` lists.
pub fn reference_cases(dir: &Path) -> Vec<ReferenceCase> {
    manifest(dir)
        .into_iter()
        .flat_map(|entry| {
            entry.cases.into_iter().map(move |path| ReferenceCase {
                label: format!(
                    "{} {}",
                    entry.name,
                    path.file_name().unwrap_or_default().to_string_lossy()
                ),
                model: entry.name.clone(),
                onnx: entry.onnx.clone(),
                path,
            })
        })
        .collect()
}

/// Every graph output in f64 as computed, before rounding to its declared f32 type, so that a
/// comparison sees differences below f32 resolution too. `inputs` may hold more than the graph
/// reads.
///
/// # Panics
/// When the graph fails to run or an output is not a float (a test failure).
pub fn f64_outputs(
    graph: &Graph,
    inputs: &HashMap<String, Tensor>,
) -> HashMap<String, ArrayD<f64>> {
    let wanted: HashMap<String, Tensor> = graph
        .inputs()
        .iter()
        .map(|i| {
            let name = graph.input_name(i).to_string();
            let tensor = inputs[&name].clone();
            (name, tensor)
        })
        .collect();
    let values = Interpreter::new(graph, Precision::F64)
        .run_values(&wanted, &[])
        .expect("the graph runs");
    graph
        .outputs()
        .iter()
        .map(|o| match &values[&o.value] {
            Value::Float(a) => (o.name.clone(), a.clone()),
            other => panic!("output {} is not float: {other:?}", o.name),
        })
        .collect()
}

/// The value where a shared model's client encryption starts: its token embedding (the client
/// looks tokens up in the clear and encrypts the result).
pub fn embedding_output(model: &str) -> &'static str {
    if model.starts_with("tiny_llama") {
        "/model/model/embed_tokens/Gather_output_0"
    } else if model.starts_with("tiny_gpt2") {
        "/model/transformer/Add_output_0"
    } else {
        "/bert/embeddings/LayerNorm/LayerNormalization_output_0"
    }
}

/// Compares a decoder run's outputs with the case's onnxruntime references, printing each, and
/// asserts the lowering bounds on the logits: the same next token, max abs error ≤ 0.05.
///
/// # Panics
/// When a bound fails (test helper).
pub fn check_decoder_outputs(label: &str, case: &Case, outputs: &HashMap<String, Vec<f64>>) {
    for (name, path) in &case.expected {
        let expected = cachemir_ir::npy::read_npy(path).unwrap();
        let got = Tensor::F64(
            ArrayD::from_shape_vec(ndarray::IxDyn(expected.shape()), outputs[name].clone())
                .unwrap(),
        );
        let c = cachemir_compiler::reference::compare(name, &got, &expected, None).unwrap();
        eprintln!(
            "{label} {name}: max abs error {:.3e}, argmax {:?}",
            c.max_abs_error, c.same_argmax
        );
        if name == "logits" {
            assert_eq!(
                c.same_argmax.0, c.same_argmax.1,
                "{label}: next token changed"
            );
            assert!(c.max_abs_error <= 0.05, "{label}: {:.3e}", c.max_abs_error);
        }
    }
}

/// Cosine similarity of two vectors.
pub fn cosine(a: &[f64], r: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(r).map(|(x, y)| x * y).sum();
    dot / (a.iter().map(|x| x * x).sum::<f64>().sqrt()
        * r.iter().map(|x| x * x).sum::<f64>().sqrt())
}

/// The cosine between a MiniLM run's `sentence_embedding` and the case's reference.
///
/// # Panics
/// When the case has no sentence embedding or its file is unreadable (test helper).
pub fn sentence_embedding_cosine(case: &Case, outputs: &HashMap<String, Vec<f64>>) -> f64 {
    let (_, path) = case
        .expected
        .iter()
        .find(|(n, _)| n == "sentence_embedding")
        .expect("the case has a sentence embedding");
    let reference: Vec<f64> = cachemir_ir::npy::read_npy(path)
        .unwrap()
        .to_f64()
        .iter()
        .copied()
        .collect();
    cosine(&outputs["sentence_embedding"], &reference)
}

/// [`sentence_embedding_cosine`], printed and asserted ≥ 0.999.
///
/// # Panics
/// When the bound fails (test helper).
pub fn check_sentence_embedding(label: &str, case: &Case, outputs: &HashMap<String, Vec<f64>>) {
    let c = sentence_embedding_cosine(case, outputs);
    eprintln!("{label}: sentence-embedding cosine {c:.6}");
    assert!(c >= 0.999, "{label}: cosine {c}");
}
