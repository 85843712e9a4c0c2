//! Helpers shared by the end-to-end tests in `tests/`: the reference models' manifest, graph
//! outputs in f64, and where each shared model's client encryption starts.

use cachemir_compiler::lower::weights::weight_values;
use cachemir_compiler::lower::{LowerOptions, Lowered, lower};
use cachemir_compiler::reference::Case;
use cachemir_ir::interp::Value;
use cachemir_ir::plan::{Plan, TensorRef};
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use cachemir_vm::{Client, Report, run_cleartext};
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

/// The shared model `model` imported with case0's shapes, encrypted from its embedding output,
/// and taken through the tensor-level pipeline (recognize, rewrite, decompose, calibrate on the
/// first `samples` calibration samples, approximate): `(imported, approximated, approximation
/// sites)`.
///
/// # Panics
/// When a model file is unreadable or a pass fails (a test failure, by design).
pub fn approximated(
    dir: &Path,
    model: &str,
    samples: usize,
) -> (
    Graph,
    Graph,
    cachemir_compiler::passes::approximate::Approximate,
) {
    use cachemir_compiler::passes::approximate::Approximate;
    use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
    use cachemir_compiler::passes::decompose::Decompose;
    use cachemir_compiler::passes::{Pass, Pipeline, Recognize, Rewrite};
    use cachemir_compiler::reference::Case;
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
    let mut pipeline = Pipeline::new()
        .with(Recognize)
        .with(Rewrite::default())
        .with(Decompose::default())
        .with(Calibrate { calibration });
    pipeline
        .run(&mut graph, None, &[], &mut |_, _| {})
        .expect("the tensor-level passes");
    let mut approximate = Approximate::default();
    approximate.run(&mut graph).expect("approximation");
    (original, graph, approximate)
}

/// Slots of the plans the model tests compile.
pub const SLOTS: usize = 1 << 15;

fn run_program(json: &str, inputs: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if json.is_empty() {
        return HashMap::new();
    }
    let graph: Graph = serde_json::from_str(json).unwrap();
    let feed: HashMap<String, Tensor> = graph
        .inputs()
        .iter()
        .map(|i| {
            let name = graph.input_name(i).to_string();
            (name.clone(), inputs[&name].clone())
        })
        .collect();
    Interpreter::new(&graph, Precision::F64).run(&feed).unwrap()
}

/// Runs a plan on the `sim` backend for one case: client and public programs in f64, weights
/// from the graph, inputs encoded and outputs decoded by the plan's layouts.
///
/// # Panics
/// On any failure (test helper).
pub fn run_sim(
    lowered: &Lowered,
    plan: &Plan,
    graph: &Graph,
    case: &Case,
) -> HashMap<String, Vec<f64>> {
    run_backend(
        &cachemir_vm::SimBackend::for_plan(plan),
        lowered,
        plan,
        graph,
        case,
    )
    .0
}

/// Runs a plan on any [`Client`] backend for one case (as [`run_sim`]: client and public
/// programs in f64, weights from the graph, inputs encrypted at their declared levels and
/// outputs decrypted and decoded by the plan's layouts), with the run's report.
///
/// # Panics
/// On any failure (test helper).
pub fn run_backend<B: Client>(
    backend: &B,
    lowered: &Lowered,
    plan: &Plan,
    graph: &Graph,
    case: &Case,
) -> (HashMap<String, Vec<f64>>, Report) {
    plan.validate().unwrap();
    let client = run_program(&plan.client_program, &case.inputs);
    let public = run_program(&plan.public_program, &case.inputs);
    let mut tensors: HashMap<TensorRef, Vec<f64>> = weight_values(lowered, graph)
        .into_iter()
        .map(|(name, (_, v))| (TensorRef::Weight(name), v))
        .collect();
    for (name, t) in public {
        tensors.insert(
            TensorRef::Public(name),
            t.to_f64().iter().copied().collect(),
        );
    }
    let inputs: Vec<Vec<Vec<f64>>> = plan
        .inputs
        .iter()
        .map(|io| {
            let tensor = client.get(&io.name).or(case.inputs.get(&io.name)).unwrap();
            let values: Vec<f64> = tensor.to_f64().iter().copied().collect();
            io.layout.encode(&values).unwrap()
        })
        .collect();
    let (outputs, report) = run_cleartext(backend, plan, &tensors, &inputs)
        .unwrap_or_else(|e| panic!("{} backend: {e}", backend.name()));
    let outputs = plan
        .outputs
        .iter()
        .zip(outputs)
        .map(|(io, slots)| (io.name.clone(), io.layout.decode(&slots).unwrap()))
        .collect();
    (outputs, report)
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
    let lowered = lower(
        graph,
        &LowerOptions {
            slots,
            period: None,
            weights_file: "w.safetensors".into(),
        },
    )
    .unwrap();
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

/// The cosine between a MiniLM run's `sentence_embedding` and the case's reference, printed and
/// asserted ≥ 0.999.
///
/// # Panics
/// When the bound fails (test helper).
pub fn check_sentence_embedding(label: &str, case: &Case, outputs: &HashMap<String, Vec<f64>>) {
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
    let c = cosine(&outputs["sentence_embedding"], &reference);
    eprintln!("{label}: sentence-embedding cosine {c:.6}");
    assert!(c >= 0.999, "{label}: cosine {c}");
}
