//! `cachemir encrypt KEYDIR PLAN INPUT… -o IN.ct`: the client encrypts a plan's inputs.
//!
//! The raw inputs are `.npy` files (`NAME=FILE.npy`, or `FILE.npy` named by its stem) and/or
//! case files (`CASE.json`, as in `../shared/models/*/caseN.json`). The plan's client program
//! runs on them (e.g. the token embedding), each encrypted input is encoded by the plan's layout
//! and encrypted under the secret key at its declared level, and KV-cache states are marked as
//! such; states not given are left out (a server session holds them after the first step, see
//! `cachemir run --session`). The public tensors the plan's plaintexts read (from its public program: positions,
//! masks) travel in the clear in the same file, which is bound to the plan's content hash.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use cachemir_ir::Tensor;
use cachemir_ir::case::Case;
use cachemir_ir::npy::read_npy;
use cachemir_vm::cpu::bundle::{BundleEntry, Role};
use cachemir_vm::{
    CiphertextBundle, Client, ClientKeys, CpuBackend, CpuOptions, CpuParameters, Insecure,
};
use clap::Args;

use crate::client::{encode_inputs_with, load_plan, public_values};
use crate::exit::{cpu_error, input_error};

/// The arguments of `cachemir encrypt`.
#[derive(Args, Debug)]
pub struct EncryptArgs {
    /// The key folder of `cachemir keygen` (its `secret.key` is read).
    pub keys: PathBuf,
    /// The plan file.
    pub plan: PathBuf,
    /// Raw inputs: `NAME=FILE.npy`, `FILE.npy` (named by its stem) or `CASE.json`.
    #[arg(required = true)]
    pub inputs: Vec<String>,
    /// The ciphertext file to write.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Accept toy (insecure) parameter sets.
    #[arg(long)]
    pub insecure: bool,
}

/// The raw inputs named on the command line (see the module documentation).
///
/// # Errors
/// An unreadable file, or one neither `.npy` nor `.json`.
pub fn read_inputs(args: &[String]) -> Result<HashMap<String, Tensor>> {
    let mut inputs = HashMap::new();
    for arg in args {
        let (name, path) = match arg.split_once('=') {
            Some((name, path)) => (Some(name.to_string()), Path::new(path)),
            None => (None, Path::new(arg.as_str())),
        };
        match path.extension().and_then(|e| e.to_str()) {
            Some("json") if name.is_none() => {
                let case = Case::load(path)?;
                inputs.extend(case.inputs);
            }
            Some("npy") => {
                let name = match name {
                    Some(n) => n,
                    None => path
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .ok_or_else(|| anyhow!("{arg}: no file name"))?,
                };
                let tensor = read_npy(path).with_context(|| format!("reading {arg}"))?;
                inputs.insert(name, tensor);
            }
            _ => {
                return Err(anyhow!("{arg}: give NAME=FILE.npy, FILE.npy or CASE.json"));
            }
        }
    }
    Ok(inputs)
}

/// Runs `cachemir encrypt` (see the module documentation).
///
/// # Errors
/// Input errors (exit 2) for a bad plan, keys of other parameters, a toy set without
/// `--insecure`, or inputs that do not fit the plan; runtime failures otherwise.
pub fn run(args: &EncryptArgs) -> Result<()> {
    let plan = load_plan(&args.plan)?;
    let insecure = Insecure::allowed_if(args.insecure);
    let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
    let user = format!("plan {}", args.plan.display());
    let client =
        ClientKeys::read(&args.keys.join("secret.key"), &params, &user).map_err(cpu_error)?;
    let raw = read_inputs(&args.inputs).map_err(input_error)?;
    let slots = encode_inputs_with(&plan, &raw, true)?;
    let public = public_values(&plan, &raw)?;
    let backend = CpuBackend::client(&plan, &client, CpuOptions::default()).map_err(cpu_error)?;
    let states: Vec<&str> = plan.states.iter().map(|s| s.input.as_str()).collect();
    let mut entries = Vec::with_capacity(plan.inputs.len());
    let mut left_out = Vec::new();
    for (io, parts) in plan.inputs.iter().zip(slots) {
        let Some(parts) = parts else {
            left_out.push(io.name.as_str());
            continue;
        };
        let parts = parts
            .iter()
            .map(|values| backend.encrypt_at(values, io.level))
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("encrypting input `{}`", io.name))?;
        entries.push(BundleEntry {
            name: io.name.clone(),
            role: if states.contains(&io.name.as_str()) {
                Role::State
            } else {
                Role::Input
            },
            parts,
        });
    }
    let count: usize = entries.iter().map(|e| e.parts.len()).sum();
    let bundle = CiphertextBundle {
        plan: plan.content_hash().map_err(input_error)?,
        entries,
        public,
    };
    bundle
        .write(&args.output, &params, plan.slots)
        .map_err(|e| anyhow!(e))?;
    if !left_out.is_empty() {
        println!(
            "KV-cache states not given, left to the server's session: {}",
            left_out.join(", ")
        );
    }
    println!(
        "wrote {}: {} inputs, {count} ciphertexts, {} public tensors, parameters {}",
        args.output.display(),
        bundle.entries.len(),
        bundle.public.len(),
        params.parameters().name
    );
    Ok(())
}
