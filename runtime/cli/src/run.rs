//! `cachemir run PLAN --backend sim --inputs CASE.json --out DIR`: runs a plan end to end on a
//! reference case — the client program and the encoding of the encrypted inputs, the plan on the
//! backend, the decoding of the outputs — and writes each output as `.npy` (f32) into `DIR`, named
//! as `cachemirc eval` names them, so the two can be compared file by file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cachemir_ir::case::{Case, output_file_name};
use cachemir_ir::npy::write_npy;
use cachemir_ir::plan::{Plan, TensorRef};
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use cachemir_vm::{SimBackend, VmError, run_cleartext};
use clap::{Args, ValueEnum};
use ndarray::{ArrayD, IxDyn};
use safetensors::{Dtype, SafeTensors};

/// Options of `cachemir run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The plan file (binary, as `cachemirc compile` writes it); its weights file is found
    /// relative to it.
    pub plan: PathBuf,
    /// Where to execute: `sim` runs cleartext slot vectors (no encryption) with depth, level and
    /// scale bookkeeping, the plan's range checks and, for leveled plans, the level rules and
    /// bootstrap input ranges.
    #[arg(long, value_enum)]
    pub backend: BackendArg,
    /// The case file (JSON naming `.npy` inputs, as in `../shared/models/*/caseN.json`).
    #[arg(long)]
    pub inputs: PathBuf,
    /// Output folder: one `.npy` (f32) per encrypted output of the plan.
    #[arg(long)]
    pub out: PathBuf,
}

/// The execution backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Cleartext slot vectors.
    Sim,
    /// CKKS on the CPU (issue 9).
    Cpu,
    /// CKKS on an NVIDIA GPU (issue 10).
    Cuda,
}

/// An error that is the user's input's fault (exit code 2); anything else exits 1.
#[derive(Debug)]
pub struct InputError(anyhow::Error);

impl std::fmt::Display for InputError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:#}", self.0)
    }
}

impl std::error::Error for InputError {}

/// Wraps `e` as an [`InputError`].
pub fn input_error(e: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(InputError(e.into()))
}

/// Runs `cachemir run` (see the module documentation) and prints a summary.
///
/// # Errors
/// [`InputError`] for unreadable or inconsistent plans, weights and cases (exit 2); other errors
/// (a failing instruction, unwritable outputs) exit 1.
pub fn run(args: &RunArgs) -> Result<()> {
    let start = std::time::Instant::now();
    match args.backend {
        BackendArg::Sim => {}
        BackendArg::Cpu => {
            return Err(input_error(anyhow!(
                "--backend cpu is not yet implemented (issue 9)"
            )));
        }
        BackendArg::Cuda => {
            return Err(input_error(anyhow!(
                "--backend cuda is not yet implemented (issue 10)"
            )));
        }
    }
    let bytes = std::fs::read(&args.plan)
        .with_context(|| format!("reading {}", args.plan.display()))
        .map_err(input_error)?;
    let plan = Plan::from_bytes(&bytes)
        .with_context(|| format!("reading {}", args.plan.display()))
        .map_err(input_error)?;
    let dir = args.plan.parent().unwrap_or(Path::new("."));
    let mut tensors = load_weights(&plan, dir).map_err(input_error)?;
    let case = Case::load(&args.inputs).map_err(input_error)?;

    let client = run_program(&plan.client_program, "client", &case).map_err(input_error)?;
    let states: Vec<&str> = plan.states.iter().map(|s| s.input.as_str()).collect();
    let mut inputs = Vec::with_capacity(plan.inputs.len());
    for io in &plan.inputs {
        let tensor = if states.contains(&io.name.as_str()) {
            case.inputs.get(&io.name)
        } else {
            client.get(&io.name).or_else(|| case.inputs.get(&io.name))
        };
        let tensor = tensor.ok_or_else(|| {
            input_error(anyhow!(
                "encrypted input `{}`: neither in the case file nor produced by the plan's client program",
                io.name
            ))
        })?;
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
        inputs.push(slots);
    }

    let public = run_program(&plan.public_program, "public", &case).map_err(input_error)?;
    for plaintext in &plan.plaintexts {
        let Some(TensorRef::Public(name)) = plaintext.tensor() else {
            continue;
        };
        let reference = TensorRef::Public(name.clone());
        if tensors.contains_key(&reference) {
            continue;
        }
        if let Some(tensor) = public.get(name).or_else(|| case.inputs.get(name)) {
            tensors.insert(reference, tensor.to_f64().iter().copied().collect());
        }
    }

    let backend = SimBackend::for_plan(&plan);
    let (outputs, report) = run_cleartext(&backend, &plan, &tensors, &inputs).map_err(classify)?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (io, parts) in plan.outputs.iter().zip(&outputs) {
        let values = io
            .layout
            .decode(parts)
            .with_context(|| format!("decoding output `{}`", io.name))?;
        let array = ArrayD::from_shape_vec(
            IxDyn(&io.layout.shape),
            values.iter().map(|&v| v as f32).collect(),
        )
        .with_context(|| format!("output `{}`", io.name))?;
        let path = args.out.join(output_file_name(&io.name));
        write_npy(&path, &Tensor::F32(array))?;
        println!("wrote {}", path.display());
    }
    println!("plan {}: {} slots", plan.name, plan.slots);
    println!("{report}");
    println!("total wall time {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}

/// VM errors caused by what the user gave (plan, weights, case) exit 2; execution failures exit
/// 1: failing instructions, a leveled plan breaking the level rules (out of levels, mismatched
/// levels or scales, outputs at the wrong level) and bootstrap inputs outside [−1, 1].
fn classify(e: VmError) -> anyhow::Error {
    match e {
        VmError::Instruction { .. }
        | VmError::Levels(_)
        | VmError::BootstrapRange { .. }
        | VmError::OutputNotWritten { .. }
        | VmError::Output { .. } => anyhow::Error::new(e),
        _ => input_error(e),
    }
}

/// The weights every plaintext of `plan` reads, from the safetensors file `plan.weights` in `dir`,
/// as row-major f64 (from f32 or f64 tensors).
///
/// # Errors
/// The file cannot be read or parsed, or a weight of `plan.weight_shapes` is absent, of another
/// shape, or of another element type.
pub fn load_weights(plan: &Plan, dir: &Path) -> Result<HashMap<TensorRef, Vec<f64>>> {
    let mut tensors = HashMap::new();
    if plan.weight_shapes.is_empty() {
        return Ok(tensors);
    }
    let path = dir.join(&plan.weights);
    let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
    let file = SafeTensors::deserialize(&bytes)
        .map_err(|e| anyhow!("{}: not a safetensors file: {e}", path.display()))?;
    for (name, shape) in &plan.weight_shapes {
        let view = file.tensor(name).map_err(|_| {
            anyhow!(
                "{}: the plan needs weight `{name}` of shape {shape:?}, which the file does not hold",
                path.display()
            )
        })?;
        if view.shape() != shape.as_slice() {
            return Err(anyhow!(
                "{}: weight `{name}` has shape {:?}; the plan needs {shape:?}",
                path.display(),
                view.shape()
            ));
        }
        let data = view.data();
        let values: Vec<f64> = match view.dtype() {
            Dtype::F32 => data
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect(),
            Dtype::F64 => data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                .collect(),
            other => {
                return Err(anyhow!(
                    "{}: weight `{name}` is {other:?}; f32 or f64 expected",
                    path.display()
                ));
            }
        };
        tensors.insert(TensorRef::Weight(name.clone()), values);
    }
    Ok(tensors)
}

/// Runs a plan program (Tensor IR as JSON; empty = none) on the case inputs it reads, in f64.
///
/// # Errors
/// The JSON is not a valid graph, or a case input is missing or of the wrong type.
fn run_program(json: &str, which: &str, case: &Case) -> Result<HashMap<String, Tensor>> {
    if json.is_empty() {
        return Ok(HashMap::new());
    }
    let graph: Graph = serde_json::from_str(json)
        .with_context(|| format!("the plan's {which} program is not a Tensor IR graph"))?;
    graph
        .verify()
        .with_context(|| format!("the plan's {which} program"))?;
    let wanted: Vec<&str> = graph.inputs().iter().map(|i| graph.input_name(i)).collect();
    let inputs: HashMap<String, Tensor> = case
        .inputs
        .iter()
        .filter(|(name, _)| wanted.contains(&name.as_str()))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Interpreter::new(&graph, Precision::F64)
        .run(&inputs)
        .with_context(|| format!("running the plan's {which} program on the case"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::plan::levels::{LevelError, LevelRule};

    fn is_input_error(e: &anyhow::Error) -> bool {
        e.downcast_ref::<InputError>().is_some()
    }

    #[test]
    fn level_and_bootstrap_errors_are_runtime_failures() {
        let levels = classify(VmError::Levels(LevelError {
            instruction: 2,
            text: "rescale r2, r1".into(),
            site: "mlp.scale (onnx)".into(),
            rule: LevelRule::OutOfLevels,
        }));
        assert!(!is_input_error(&levels));
        assert!(
            format!("{levels:#}").contains(
                "level rules: instruction 2 (rescale r2, r1) at site mlp.scale (onnx): rescale at level 0"
            ),
            "{levels:#}"
        );
        assert_eq!(
            format!("{levels:#}").matches("instruction 2").count(),
            1,
            "{levels:#}"
        );
        let boot = classify(VmError::BootstrapRange {
            index: 4,
            instruction: "boot r4, r3, slots=8, level=3".into(),
            site: "ffn.boot".into(),
            slot: 1,
            value: 1.5,
            min: -0.5,
            max: 1.5,
            occupied: 8,
        });
        assert!(!is_input_error(&boot));
        assert!(
            format!("{boot:#}")
                .contains("instruction 4 `boot r4, r3, slots=8, level=3` (ffn.boot)"),
            "{boot:#}"
        );
        // Inputs that do not fit the plan stay input errors (exit 2).
        assert!(is_input_error(&classify(VmError::Inputs {
            given: 0,
            expected: 1
        })));
    }
}
