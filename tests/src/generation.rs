//! Generation plans of the shared decoder-with-past exports: the reference transcript
//! (`generation.json`) and the tensor-level pipeline of `cachemirc compile --generation`.

use crate::compile::tensor_passes;
use crate::embedding_output;
use cachemir_compiler::generation::{generation_calibration, generation_step};
use cachemir_compiler::passes::calibrate::Calibration;
use cachemir_ir::plan::Generation;
use cachemir_ir::{Graph, InputRole, Interpreter, Precision, Tensor};
use ndarray::{ArrayD, IxDyn};
use serde_json::Value;
use std::collections::HashMap;
use std::path::Path;

/// A model's `generation.json`: the greedy continuation of a prompt by the exported model
/// (onnxruntime).
#[derive(Debug, Clone)]
pub struct Transcript {
    pub prompt_text: String,
    pub prompt_ids: Vec<i64>,
    pub generated_ids: Vec<i64>,
    pub generated_text: String,
    /// Top-1 minus top-2 logit at each generated token.
    pub margins: Vec<f64>,
}

impl Transcript {
    /// Reads `models/MODEL/generation.json`.
    ///
    /// # Panics
    /// When the file is unreadable or lacks a field (a test failure).
    pub fn load(models: &Path, model: &str) -> Self {
        let path = models.join(model).join("generation.json");
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let json: Value = serde_json::from_str(&text).expect("generation.json is JSON");
        let text = |key: &str| json[key].as_str().expect(key).to_string();
        Transcript {
            prompt_text: text("prompt_text"),
            prompt_ids: token_ids(&json["prompt_token_ids"]),
            generated_ids: token_ids(&json["generated_token_ids"]),
            generated_text: text("generated_text"),
            margins: json["top1_minus_top2_logit_per_step"]
                .as_array()
                .expect("top1_minus_top2_logit_per_step")
                .iter()
                .map(|v| v.as_f64().expect("a margin"))
                .collect(),
        }
    }
}

/// The token ids of a JSON array.
///
/// # Panics
/// When `value` is not an array of integers (a test failure).
pub fn token_ids(value: &Value) -> Vec<i64> {
    value
        .as_array()
        .expect("an array of token ids")
        .iter()
        .map(|v| v.as_i64().expect("a token id"))
        .collect()
}

/// The shared model `model` imported for contexts of `max_context` tokens and made a generation
/// step with its KV-cache writes: the graph the f64 reference interpreter runs.
///
/// # Panics
/// When the model is unreadable or not a decoder with past (a test failure).
pub fn reference_generation_step(
    models: &Path,
    model: &str,
    max_context: usize,
) -> (Graph, Generation) {
    let options = cachemir_onnx::ImportOptions {
        decode_context: Some(max_context),
        ..Default::default()
    };
    let mut reference = cachemir_onnx::import_file(&models.join(format!("{model}.onnx")), &options)
        .expect("the model imports")
        .graph;
    let generation = generation_step(&mut reference, max_context).expect("a generation step");
    (reference, generation)
}

/// The reference interpreter (f64) on one generation step: feeds `token` at `step` with the
/// KV-cache `states` (by input name; empty caches as zeros at step 0) and returns the logits and
/// the next states.
///
/// # Panics
/// When the step's inputs cannot be built or the interpreter fails (a test failure).
pub fn reference_step(
    graph: &Graph,
    generation: &Generation,
    step: usize,
    token: i64,
    states: &HashMap<String, Tensor>,
) -> (Vec<f64>, HashMap<String, Tensor>) {
    let mut inputs: HashMap<String, Tensor> = generation
        .step_inputs(step, token)
        .unwrap()
        .into_iter()
        .collect();
    inputs.extend(states.clone());
    let outputs = Interpreter::new(graph, Precision::F64)
        .run(&inputs)
        .unwrap();
    let mut next = HashMap::new();
    for input in graph.inputs() {
        if let InputRole::State { output } = &input.role {
            next.insert(graph.input_name(input).to_string(), outputs[output].clone());
        }
    }
    let logits = outputs[&generation.logits_output]
        .to_f64()
        .iter()
        .copied()
        .collect();
    (logits, next)
}

/// The empty KV-cache states of a generation step's `graph` (zeros, by input name).
pub fn empty_states(graph: &Graph) -> HashMap<String, Tensor> {
    graph
        .inputs()
        .iter()
        .filter(|i| matches!(i.role, InputRole::State { .. }))
        .map(|i| {
            let shape = graph.input_type(i).shape.clone();
            let zeros = ArrayD::<f32>::zeros(IxDyn(&shape));
            (graph.input_name(i).to_string(), Tensor::F32(zeros))
        })
        .collect()
}

/// A decoder-with-past export made a generation step, in its reference and compiled forms.
#[derive(Debug)]
pub struct GenerationStep {
    /// The step as imported with its KV-cache writes, for the reference interpreter.
    pub reference: Graph,
    /// The same step encrypted from its embedding output and taken through the tensor-level
    /// passes.
    pub approximated: Graph,
    pub generation: Generation,
}

/// The shared model `model` as `cachemirc compile --generation --max-context CONTEXT
/// --encrypt-from EMBEDDING` takes it to the lowering: imported for contexts of `max_context`
/// tokens, made a generation step, encrypted from its embedding output, calibrated on its first
/// `samples` recorded samples (`usize::MAX`: all) extended by
/// [`generation_calibration`], then recognized, rewritten, decomposed and approximated.
///
/// # Panics
/// When a model file is unreadable or a pass fails (a test failure, by design).
pub fn compile_generation_step(
    models: &Path,
    model: &str,
    max_context: usize,
    samples: usize,
) -> GenerationStep {
    let (reference, generation) = reference_generation_step(models, model, max_context);
    let mut approximated = reference.clone();
    approximated
        .encrypt_from(embedding_output(model))
        .expect("the embedding output exists");
    let mut calibration = Calibration::load(&models.join(model).join("calib.json"))
        .expect("calib.json")
        .truncated(samples);
    generation_calibration(&mut calibration, &generation, &approximated)
        .expect("generation calibration");
    tensor_passes(&mut approximated, calibration);
    GenerationStep {
        reference,
        approximated,
        generation,
    }
}
