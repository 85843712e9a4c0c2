//! Generation plans (`cachemirc compile --generation --max-context N`): an imported decode step
//! (a decoder-with-past export bound to one token against `N − 1` cache positions, see
//! `cachemir_onnx::ImportOptions::decode_context`) made into a step that a runtime repeats once
//! per token — each step writes its key and value into the cache by a masked add
//! ([`cachemir_ir::kv_window`]), so each step's states feed the next — and the metadata the
//! runtime needs to feed it ([`Generation`]).
//!
//! The prompt runs through the same step token by token: on an encrypted KV cache a prefill of
//! `S` tokens costs `S` decode steps' worth of attention and matrix products anyway (one token's
//! activations fill a ciphertext's slots), and one plan keeps a single cache layout and level.

use crate::passes::calibrate::Calibration;
use cachemir_ir::plan::Generation;
use cachemir_ir::{
    Graph, InputRole, Interpreter, IrError, OutputRole, Precision, Tensor, kv_window,
};
use std::collections::HashMap;

/// The inputs and outputs a decoder-with-past export names (`optimum` convention).
const TOKEN_INPUT: &str = "input_ids";
const POSITION_INPUT: &str = "position_ids";
const MASK_INPUT: &str = "attention_mask";
const LOGITS_OUTPUT: &str = "logits";

/// A graph that cannot become a generation step.
#[derive(Debug, thiserror::Error)]
pub enum GenerationSetupError {
    #[error(
        "a generation plan needs the decoder-with-past input `{0}` (inputs `input_ids`, `position_ids`, `attention_mask`, `past_key_values.{{i}}.key`/`.value`)"
    )]
    MissingInput(&'static str),
    #[error("a generation plan needs the output `logits`")]
    MissingLogits,
    #[error("a generation plan needs KV-cache states (`past_key_values.*` in, `present.*` out)")]
    NoStates,
    #[error(
        "`attention_mask` has shape {shape:?}; a context of {max_context} tokens needs [1, {max_context}]"
    )]
    Context {
        shape: Vec<usize>,
        max_context: usize,
    },
    #[error(
        "a calibration sample has {have} past positions, more than the {} cache slots of a {max_context}-token context: give --max-context {} or more",
        max_context - 1,
        have + 1
    )]
    CalibrationPast { have: usize, max_context: usize },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// Makes `graph` a generation step for contexts of `max_context` tokens: checks the
/// decoder-with-past interface, slides its KV-cache states, and returns the plan metadata.
///
/// # Errors
/// [`GenerationSetupError`] naming the missing input or output, a mask whose length is not
/// `max_context`, or a state that does not append one position.
pub fn generation_step(
    graph: &mut Graph,
    max_context: usize,
) -> Result<Generation, GenerationSetupError> {
    for name in [TOKEN_INPUT, POSITION_INPUT, MASK_INPUT] {
        if !graph.inputs().iter().any(|i| graph.input_name(i) == name) {
            return Err(GenerationSetupError::MissingInput(name));
        }
    }
    let mask = graph
        .inputs()
        .iter()
        .find(|i| graph.input_name(i) == MASK_INPUT)
        .map(|i| graph.input_type(i).shape.clone())
        .expect("checked above");
    if mask != [1, max_context] {
        return Err(GenerationSetupError::Context {
            shape: mask,
            max_context,
        });
    }
    if !graph.outputs().iter().any(|o| o.name == LOGITS_OUTPUT) {
        return Err(GenerationSetupError::MissingLogits);
    }
    if !graph
        .outputs()
        .iter()
        .any(|o| matches!(o.role, OutputRole::State { .. }))
    {
        return Err(GenerationSetupError::NoStates);
    }
    kv_window::write_kv_cache(graph)?;
    Ok(Generation {
        max_context,
        token_input: TOKEN_INPUT.into(),
        position_input: POSITION_INPUT.into(),
        mask_input: MASK_INPUT.into(),
        write_mask_input: kv_window::WRITE_MASK_INPUT.into(),
        logits_output: LOGITS_OUTPUT.into(),
    })
}

/// Calibration samples for a generation plan: the recorded decode-step samples, each cache
/// extended to the plan's `max_context − 1` slots with masked zeros after its recorded positions
/// (`past_key_values.*` on axis 2; `attention_mask` gets zeros before its last entry, the current
/// token) and a write mask for the first free slot; plus the inputs of every step of
/// [`ROLLOUTS`] greedy generations of `max_context` tokens run by the reference interpreter on
/// `step` (the generation step graph), each started from a recorded sample's token. Recorded
/// samples cover one cache length; the rollouts cover them all, from a softmax over one position
/// (a denominator of 1) to a full context, so every polynomial's calibrated domain holds at every
/// step.
///
/// # Errors
/// [`GenerationSetupError::CalibrationPast`] for a sample with more past positions than the plan
/// has cache slots; [`GenerationSetupError::Ir`] when the reference interpreter fails.
pub fn generation_calibration(
    calibration: &mut Calibration,
    generation: &Generation,
    step: &Graph,
) -> Result<(), GenerationSetupError> {
    let max_context = generation.max_context;
    let slots = max_context - 1;
    for sample in &mut calibration.samples {
        let mut recorded = None;
        for (name, tensor) in sample.iter_mut() {
            let shape = tensor.shape().to_vec();
            let (axis, have, at) = if name == &generation.mask_input && shape.len() == 2 {
                // Slots, then the current token.
                (1, shape[1] - 1, shape[1] - 1)
            } else if name.starts_with("past_key_values.") && shape.len() > kv_window::POSITION_AXIS
            {
                let have = shape[kv_window::POSITION_AXIS];
                (kv_window::POSITION_AXIS, have, have)
            } else {
                continue;
            };
            if have > slots {
                return Err(GenerationSetupError::CalibrationPast { have, max_context });
            }
            recorded = Some(have);
            if have < slots {
                *tensor = insert_zeros(tensor, axis, at, slots - have);
            }
        }
        if let Some(have) = recorded {
            let write: Vec<f32> = (0..slots)
                .map(|slot| f32::from(u8::from(slot == have.min(slots - 1))))
                .collect();
            let write = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[1, 1, slots, 1]), write)
                .expect("slots values");
            sample.insert(generation.write_mask_input.clone(), Tensor::F32(write));
        }
    }
    let starts: Vec<i64> = calibration
        .samples
        .iter()
        .filter_map(|s| s.get(&generation.token_input))
        .filter_map(|t| t.to_i64_vec().first().copied())
        .take(ROLLOUTS)
        .collect();
    for start in starts {
        let recorded = rollout(step, generation, start)?;
        calibration.samples.extend(recorded);
    }
    Ok(())
}

/// Greedy generations per [`generation_calibration`].
pub const ROLLOUTS: usize = 8;

/// The inputs of each step of a greedy generation of `max_context` tokens from `start`, run by
/// the reference interpreter on the step graph (f64), empty caches first.
fn rollout(
    step: &Graph,
    generation: &Generation,
    start: i64,
) -> Result<Vec<HashMap<String, Tensor>>, GenerationSetupError> {
    let interpreter = Interpreter::new(step, Precision::F64);
    let mut states: HashMap<String, Tensor> = HashMap::new();
    let mut pairs = Vec::new();
    for input in step.inputs() {
        if let InputRole::State { output } = &input.role {
            let ty = step.input_type(input);
            let zeros = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&ty.shape));
            states.insert(step.input_name(input).to_string(), Tensor::F32(zeros));
            pairs.push((step.input_name(input).to_string(), output.clone()));
        }
    }
    let mut token = start;
    let mut samples = Vec::with_capacity(generation.max_context);
    for position in 0..generation.max_context {
        let mut inputs: HashMap<String, Tensor> = generation
            .step_inputs(position, token)
            .map_err(|e| IrError::Malformed(e.to_string()))?
            .into_iter()
            .collect();
        inputs.extend(states.drain());
        let mut outputs = interpreter.run(&inputs)?;
        for (input, output) in &pairs {
            let next = outputs
                .remove(output)
                .ok_or_else(|| IrError::UnknownValue(output.clone()))?;
            states.insert(input.clone(), next);
        }
        let logits = outputs
            .get(&generation.logits_output)
            .ok_or_else(|| IrError::UnknownValue(generation.logits_output.clone()))?
            .to_f64();
        token = logits
            .iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            })
            .0 as i64;
        samples.push(inputs);
    }
    Ok(samples)
}

/// `tensor` with `count` zeros inserted along `axis` before index `at` (element type kept).
fn insert_zeros(tensor: &Tensor, axis: usize, at: usize, count: usize) -> Tensor {
    fn insert<T: Clone + Default>(
        a: &ndarray::ArrayD<T>,
        axis: usize,
        at: usize,
        count: usize,
    ) -> ndarray::ArrayD<T> {
        let mut shape = a.shape().to_vec();
        shape[axis] = count;
        let zeros = ndarray::ArrayD::<T>::default(ndarray::IxDyn(&shape));
        let (before, after) = a.view().split_at(ndarray::Axis(axis), at);
        ndarray::concatenate(ndarray::Axis(axis), &[before, zeros.view(), after])
            .expect("same rank")
    }
    match tensor {
        Tensor::F32(a) => Tensor::F32(insert(a, axis, at, count)),
        Tensor::F64(a) => Tensor::F64(insert(a, axis, at, count)),
        Tensor::I64(a) => Tensor::I64(insert(a, axis, at, count)),
        Tensor::Bool(a) => Tensor::Bool(insert(a, axis, at, count)),
    }
}
