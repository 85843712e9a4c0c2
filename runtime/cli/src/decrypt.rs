//! `cachemir decrypt KEYDIR PLAN OUT.ct -o DIR|FILE.npy`: the client decrypts a plan's outputs.
//!
//! Decryption is noise-flooded by default (IND-CPA-D: see `CpuBackend::decrypt_flooded`;
//! `--flood-bits B` sets the Gaussian's standard deviation to 2^B, `--no-flood` turns it off for
//! values that never leave the client), each output is decoded by the plan's layout and written
//! as an f32 `.npy` named as `cachemirc eval` and `cachemir run --backend sim` name them, into
//! folder `DIR`; `-o FILE.npy` writes one output (`--name`, needed when the plan has several).

use std::path::PathBuf;

use anyhow::{Context, Result, anyhow};
use cachemir_vm::{CiphertextBundle, ClientKeys, CpuBackend, CpuOptions, CpuParameters, Insecure};
use clap::Args;

use crate::client::{load_plan, output_path, write_output};
use crate::exit::{cpu_error, input_error};

/// The arguments of `cachemir decrypt`.
#[derive(Args, Debug)]
pub struct DecryptArgs {
    /// The key folder of `cachemir keygen` (its `secret.key` is read).
    pub keys: PathBuf,
    /// The plan file.
    pub plan: PathBuf,
    /// The ciphertext file (from `cachemir run`).
    pub input: PathBuf,
    /// A folder (one `.npy` per output) or, with one output or `--name`, a `.npy` file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// The output to write when `-o` names a `.npy` file.
    #[arg(long)]
    pub name: Option<String>,
    /// log2 of the flooding noise's standard deviation (default: the scale's bits − 25).
    #[arg(long, conflicts_with = "no_flood", value_parser = clap::value_parser!(u32).range(1..=60))]
    pub flood_bits: Option<u32>,
    /// Exact decryption, without flooding (only for values that never leave the client).
    #[arg(long)]
    pub no_flood: bool,
    /// Accept toy (insecure) parameter sets.
    #[arg(long)]
    pub insecure: bool,
}

/// Runs `cachemir decrypt` (see the module documentation).
///
/// # Errors
/// Input errors (exit 2) for a bad plan, keys or a ciphertext file of other parameters or
/// another plan, a toy set without `--insecure`, a missing output; runtime failures otherwise.
pub fn run(args: &DecryptArgs) -> Result<()> {
    use cachemir_vm::Client;
    let plan = load_plan(&args.plan)?;
    let insecure = Insecure::allowed_if(args.insecure);
    let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
    let user = format!("plan {}", args.plan.display());
    let client =
        ClientKeys::read(&args.keys.join("secret.key"), &params, &user).map_err(cpu_error)?;
    let bundle =
        CiphertextBundle::read(&args.input, &params, plan.slots, &user).map_err(cpu_error)?;
    bundle
        .check_plan(
            plan.content_hash().map_err(input_error)?,
            &args.input.display().to_string(),
        )
        .map_err(cpu_error)?;
    let backend = CpuBackend::client(&plan, &client, CpuOptions::default()).map_err(cpu_error)?;

    let single = args.output.extension().is_some_and(|e| e == "npy");
    // A server session keeps the KV-cache states (`cachemir run --session`): a file without
    // them holds the other outputs.
    let states: Vec<&str> = plan.states.iter().map(|s| s.output.as_str()).collect();
    let available: Vec<_> = plan
        .outputs
        .iter()
        .filter(|o| bundle.entry(&o.name).is_some() || !states.contains(&o.name.as_str()))
        .collect();
    let wanted: Vec<_> = match (&args.name, single) {
        (Some(name), _) => {
            let io = plan
                .outputs
                .iter()
                .find(|o| &o.name == name)
                .ok_or_else(|| input_error(anyhow!("the plan has no output `{name}`")))?;
            vec![io]
        }
        (None, true) if available.len() != 1 => {
            let names: Vec<&str> = available.iter().map(|o| o.name.as_str()).collect();
            return Err(input_error(anyhow!(
                "-o {} names one file; the plan has {} outputs ({}): give --name or a folder",
                args.output.display(),
                names.len(),
                names.join(", ")
            )));
        }
        (None, _) => available,
    };
    if !single {
        std::fs::create_dir_all(&args.output)
            .with_context(|| format!("creating {}", args.output.display()))?;
    }
    for io in wanted {
        let entry = bundle.entry(&io.name).ok_or_else(|| {
            input_error(anyhow!(
                "{}: no ciphertexts for the plan's output `{}`",
                args.input.display(),
                io.name
            ))
        })?;
        let parts = entry
            .parts
            .iter()
            .map(|c| {
                if args.no_flood {
                    backend.decrypt(c)
                } else {
                    backend.decrypt_flooded(c, args.flood_bits)
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .with_context(|| format!("decrypting output `{}`", io.name))?;
        let path = if single {
            args.output.clone()
        } else {
            output_path(&args.output, &io.name)
        };
        write_output(io, &parts, &path)?;
        println!("wrote {}", path.display());
    }
    Ok(())
}
