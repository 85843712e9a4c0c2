//! `cachemir run`: two flows.
//!
//! - Encrypted (the server): `cachemir run PLAN --keys KEYDIR/eval --input IN.ct -o OUT.ct
//!   [--backend cpu] [--threads N] [--session DIR]` runs the plan on the ciphertexts of `IN.ct`
//!   with the evaluation keys and writes the outputs (and KV-cache states) to `OUT.ct`; with
//!   `--session` the KV-cache states stay on the server, in the session, from one decode step to
//!   the next ([`crate::server`]).
//! - Cleartext: `cachemir run PLAN --backend sim --inputs CASE.json --out DIR` runs a plan end to
//!   end on a reference case — the client program and the encoding of the encrypted inputs, the
//!   plan on slot vectors, the decoding of the outputs — and writes each output as `.npy` (f32)
//!   into `DIR`, named as `cachemirc eval` names them, so the two can be compared file by file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cachemir_ir::case::Case;
use cachemir_ir::plan::{Plan, TensorRef};
use cachemir_vm::{SimBackend, VmError, run_cleartext};
use clap::{Args, ValueEnum};
use safetensors::{Dtype, SafeTensors};

use crate::client::{encode_inputs, load_plan, output_path, plan_dir, public_values, write_output};

/// The arguments of `cachemir run`.
#[derive(Args, Debug)]
pub struct RunCommand {
    /// The plan file (binary, as `cachemirc compile` writes it); its weights file is found
    /// relative to it.
    pub plan: PathBuf,
    /// Where to execute: `cpu` runs CKKS ciphertexts (`--keys`, `--input`, `-o`); `sim` runs
    /// cleartext slot vectors (no encryption) from a case file (`--inputs`, `--out`) with depth,
    /// level and scale bookkeeping, the plan's range checks and, for leveled plans, the level
    /// rules and bootstrap input ranges.
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    /// The evaluation-key folder (`KEYDIR/eval`, from `cachemir keygen`).
    #[arg(long, requires = "input")]
    pub keys: Option<PathBuf>,
    /// The ciphertext file (from `cachemir encrypt`).
    #[arg(long, requires = "keys")]
    pub input: Option<PathBuf>,
    /// The ciphertext file to write (outputs and KV-cache states).
    #[arg(short = 'o', long = "output", requires = "input")]
    pub output: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Keep the plan's KV-cache states in this session directory: the first step takes them
    /// from the ciphertext file, later steps from the session; each step's new states are
    /// committed atomically (and left out of `-o`). The session is bound to the plan and keys.
    #[arg(long, value_name = "DIR", requires = "input")]
    pub session: Option<PathBuf>,
    /// Accept toy (insecure) parameter sets.
    #[arg(long)]
    pub insecure: bool,
    /// `--backend sim`: the case file (JSON naming `.npy` inputs, as in
    /// `../shared/models/*/caseN.json`).
    #[arg(long, conflicts_with = "input")]
    pub inputs: Option<PathBuf>,
    /// `--backend sim`: output folder, one `.npy` (f32) per encrypted output of the plan.
    #[arg(long, requires = "inputs")]
    pub out: Option<PathBuf>,
}

/// The cleartext flow's options (`cachemir run PLAN --backend sim --inputs CASE --out DIR`).
#[derive(Debug, Clone)]
pub struct RunArgs {
    pub plan: PathBuf,
    pub backend: BackendArg,
    pub inputs: PathBuf,
    pub out: PathBuf,
}

/// The execution backends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum BackendArg {
    /// Cleartext slot vectors.
    Sim,
    /// CKKS on the CPU.
    Cpu,
    /// CKKS on an NVIDIA GPU (issue 10).
    Cuda,
}

pub use crate::exit::{InputError, input_error};

/// Runs `cachemir run` in the flow its arguments name (see the module documentation).
///
/// # Errors
/// Input errors (exit 2) for arguments of neither flow or a backend the flow does not take,
/// and as [`run`] and [`crate::server::run`].
pub fn command(args: &RunCommand) -> Result<()> {
    set_threads(args.threads)?;
    match (
        &args.keys,
        &args.input,
        &args.output,
        &args.inputs,
        &args.out,
    ) {
        (Some(keys), Some(input), Some(output), None, None) => {
            if args.backend == BackendArg::Cuda {
                return Err(input_error(anyhow!(cuda_unwired())));
            }
            if args.backend != BackendArg::Cpu {
                return Err(input_error(anyhow!(
                    "ciphertext files run on --backend cpu; --backend sim runs a case file in the clear (--inputs CASE.json --out DIR)"
                )));
            }
            crate::server::run(&crate::server::ServeArgs {
                plan: args.plan.clone(),
                keys: keys.clone(),
                input: input.clone(),
                output: output.clone(),
                session: args.session.clone(),
                insecure: args.insecure,
            })
        }
        (None, None, None, Some(inputs), Some(out)) => run(&RunArgs {
            plan: args.plan.clone(),
            backend: args.backend,
            inputs: inputs.clone(),
            out: out.clone(),
        }),
        _ => Err(input_error(anyhow!(
            "give --keys KEYDIR/eval --input IN.ct -o OUT.ct (encrypted), or --backend sim --inputs CASE.json --out DIR (cleartext)"
        ))),
    }
}

/// Why `--backend cuda` is refused (exit 2): a build without the `cuda` feature, or, with it,
/// the CUDA backend (`cachemir_cuda::CudaBackend`) not yet wired into the CLI flows.
pub fn cuda_unwired() -> &'static str {
    if cfg!(feature = "cuda") {
        "--backend cuda: the CUDA backend (cachemir-cuda) is not wired into the CLI yet; see runtime/cuda/README.md"
    } else {
        "--backend cuda: this cachemir was built without the cuda feature (rebuild with --features cuda)"
    }
}

/// Sizes rayon's global pool to `threads` workers (at least 1); `None` leaves all cores.
///
/// # Errors
/// An input error when the pool was already built.
pub fn set_threads(threads: Option<usize>) -> Result<()> {
    if let Some(threads) = threads {
        rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build_global()
            .map_err(|e| input_error(anyhow!("--threads {threads}: {e}")))?;
    }
    Ok(())
}

/// Runs the cleartext flow (see the module documentation) and prints a summary.
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
                "--backend cpu runs ciphertext files (cachemir encrypt, then --keys KEYDIR/eval --input IN.ct -o OUT.ct); case files run on --backend sim"
            )));
        }
        BackendArg::Cuda => {
            return Err(input_error(anyhow!(cuda_unwired())));
        }
    }
    let plan = load_plan(&args.plan)?;
    let mut tensors = load_weights(&plan, plan_dir(&args.plan)).map_err(input_error)?;
    let case = Case::load(&args.inputs).map_err(input_error)?;
    let inputs = encode_inputs(&plan, &case.inputs)?;
    for t in public_values(&plan, &case.inputs)? {
        tensors.entry(TensorRef::Public(t.name)).or_insert(t.values);
    }

    let backend = SimBackend::for_plan(&plan);
    let (outputs, report) = run_cleartext(&backend, &plan, &tensors, &inputs).map_err(classify)?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    for (io, parts) in plan.outputs.iter().zip(&outputs) {
        let path = output_path(&args.out, &io.name);
        write_output(io, parts, &path)?;
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
pub(crate) fn classify(e: VmError) -> anyhow::Error {
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
