//! What the client commands and the cleartext `run --backend sim` flow share, so both encode and
//! decode the same way: reading a plan (decoded, validated and its levels traced before any
//! work), running the plan's client program on the raw inputs, encoding the encrypted inputs by
//! the plan's layouts, computing the public tensors the plaintexts read, and decoding outputs
//! into `.npy` files named as `cachemirc eval` names them.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cachemir_ir::case::output_file_name;
use cachemir_ir::npy::write_npy;
use cachemir_ir::plan::{Ciphertexts, Plan, TensorRef, levels};
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use cachemir_vm::cpu::bundle::PublicTensor;
use ndarray::{ArrayD, IxDyn};

use crate::exit::input_error;

/// Reads the plan file at `path`: decoded and [validated](Plan::validate), and, for a leveled
/// plan, its level rules checked ([`levels::trace`]), so a bad plan is refused before any work.
///
/// # Errors
/// An [`InputError`](crate::exit::InputError) naming the file: unreadable, not a plan, another
/// format version, inconsistent, or breaking the level rules.
pub fn load_plan(path: &Path) -> Result<Plan> {
    let bytes = std::fs::read(path)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(input_error)?;
    let plan = Plan::from_bytes(&bytes)
        .with_context(|| format!("reading {}", path.display()))
        .map_err(input_error)?;
    levels::trace(&plan)
        .map_err(|e| anyhow!("{}: the plan breaks the level rules: {e}", path.display()))
        .map_err(input_error)?;
    Ok(plan)
}

/// The folder of a plan file (its weights file is found relative to it).
pub fn plan_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// Runs a plan program (Tensor IR as JSON; empty = none) on the inputs it reads, in f64.
///
/// # Errors
/// The JSON is not a valid graph, or an input is missing or of the wrong type.
pub fn run_program(
    json: &str,
    which: &str,
    inputs: &HashMap<String, Tensor>,
) -> Result<HashMap<String, Tensor>> {
    if json.is_empty() {
        return Ok(HashMap::new());
    }
    let graph: Graph = serde_json::from_str(json)
        .with_context(|| format!("the plan's {which} program is not a Tensor IR graph"))?;
    graph
        .verify()
        .with_context(|| format!("the plan's {which} program"))?;
    let wanted: Vec<&str> = graph.inputs().iter().map(|i| graph.input_name(i)).collect();
    let inputs: HashMap<String, Tensor> = inputs
        .iter()
        .filter(|(name, _)| wanted.contains(&name.as_str()))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Interpreter::new(&graph, Precision::F64)
        .run(&inputs)
        .with_context(|| format!("running the plan's {which} program on the inputs"))
}

/// The slot vectors of every encrypted input of `plan` (`[input][part]`), from the raw inputs:
/// the client program's outputs, or the raw inputs themselves (KV-cache states always come from
/// the raw inputs), checked against the layout's shape and encoded by it.
///
/// # Errors
/// Input errors: an encrypted input neither given nor produced, of another shape, or that the
/// client program cannot compute.
pub fn encode_inputs(plan: &Plan, inputs: &HashMap<String, Tensor>) -> Result<Vec<Vec<Vec<f64>>>> {
    encode_inputs_with(plan, inputs, false)?
        .into_iter()
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| anyhow!("a state left out although every input was required"))
}

/// [`encode_inputs`], leaving out (`None`) the KV-cache states not given when
/// `states_optional` (a server session holds them after the first step).
///
/// # Errors
/// As [`encode_inputs`].
pub fn encode_inputs_with(
    plan: &Plan,
    inputs: &HashMap<String, Tensor>,
    states_optional: bool,
) -> Result<Vec<Option<Vec<Vec<f64>>>>> {
    let client = run_program(&plan.client_program, "client", inputs).map_err(input_error)?;
    let states: Vec<&str> = plan.states.iter().map(|s| s.input.as_str()).collect();
    let mut encoded = Vec::with_capacity(plan.inputs.len());
    for io in &plan.inputs {
        let is_state = states.contains(&io.name.as_str());
        let tensor = if is_state {
            inputs.get(&io.name)
        } else {
            client.get(&io.name).or_else(|| inputs.get(&io.name))
        };
        let Some(tensor) = tensor else {
            if is_state && states_optional {
                encoded.push(None);
                continue;
            }
            return Err(input_error(anyhow!(
                "encrypted input `{}`: neither given nor produced by the plan's client program",
                io.name
            )));
        };
        if tensor.shape() != io.layout.shape.as_slice() {
            return Err(input_error(anyhow!(
                "encrypted input `{}` has shape {:?}; the plan's layout expects {:?}",
                io.name,
                tensor.shape(),
                io.layout.shape
            )));
        }
        let values: Vec<f64> = tensor.to_f64().iter().copied().collect();
        let slots = io
            .layout
            .encode(&values)
            .with_context(|| format!("encoding input `{}`", io.name))
            .map_err(input_error)?;
        encoded.push(Some(slots));
    }
    Ok(encoded)
}

/// The public tensors the plan's plaintexts read (`TensorRef::Public`), from the plan's public
/// program run on the raw inputs, or the raw inputs themselves. Absent ones are left out (the VM names the first instruction that needs one).
///
/// # Errors
/// An input error when the public program cannot run on the inputs.
pub fn public_values(plan: &Plan, inputs: &HashMap<String, Tensor>) -> Result<Vec<PublicTensor>> {
    let public = run_program(&plan.public_program, "public", inputs).map_err(input_error)?;
    let mut out: Vec<PublicTensor> = Vec::new();
    for plaintext in &plan.plaintexts {
        let Some(TensorRef::Public(name)) = plaintext.tensor() else {
            continue;
        };
        if out.iter().any(|t| &t.name == name) {
            continue;
        }
        if let Some(tensor) = public.get(name).or_else(|| inputs.get(name)) {
            out.push(PublicTensor {
                name: name.clone(),
                shape: tensor.shape().to_vec(),
                values: tensor.to_f64().iter().copied().collect(),
            });
        }
    }
    Ok(out)
}

/// Decodes the slot vectors of output `io` by its layout and writes them as an f32 `.npy`.
///
/// # Errors
/// The slots do not fit the layout, or the file cannot be written.
pub fn write_output(io: &Ciphertexts, parts: &[Vec<f64>], path: &Path) -> Result<()> {
    let values = io
        .layout
        .decode(parts)
        .with_context(|| format!("decoding output `{}`", io.name))?;
    let array = ArrayD::from_shape_vec(
        IxDyn(&io.layout.shape),
        values.iter().map(|&v| v as f32).collect(),
    )
    .with_context(|| format!("output `{}`", io.name))?;
    write_npy(path, &Tensor::F32(array))?;
    Ok(())
}

/// Where output `name` goes in folder `dir` (`cachemirc eval`'s file name).
pub fn output_path(dir: &Path, name: &str) -> PathBuf {
    dir.join(output_file_name(name))
}
