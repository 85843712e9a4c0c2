//! `cachemir keygen PLAN -o KEYDIR [--insecure]`: the client's keys for a plan.
//!
//! Writes `KEYDIR/secret.key` (mode 0600; it never leaves the client) and `KEYDIR/eval/` (what
//! the server gets: `keys.json` and one file per key kind): the relinearization key up to the
//! highest ct-ct product, a Galois key per rotation step of the plan up to the highest level the
//! step is used at, and bootstrapping keys for each slot count the plan bootstraps at. Shows a
//! progress bar (bytes) and prints the total key bytes.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use cachemir_vm::{ClientKeys, CpuParameters, EvaluationKeys, Insecure, KeyRequirements};
use clap::Args;

use crate::client::load_plan;
use crate::exit::{cpu_error, input_error};
use crate::progress::bytes_bar;

/// The arguments of `cachemir keygen`.
#[derive(Args, Debug)]
pub struct KeygenArgs {
    /// The plan file (binary, as `cachemirc compile` writes it).
    pub plan: PathBuf,
    /// The key folder to write (`secret.key`, `eval/`).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Accept toy (insecure) parameter sets.
    #[arg(long)]
    pub insecure: bool,
}

/// Runs `cachemir keygen` (see the module documentation).
///
/// # Errors
/// Input errors (exit 2) for a bad plan, a toy set without `--insecure` or an unleveled plan;
/// runtime failures for unwritable files or an entropy failure.
pub fn run(args: &KeygenArgs) -> Result<()> {
    let start = Instant::now();
    let plan = load_plan(&args.plan)?;
    let insecure = Insecure::allowed_if(args.insecure);
    let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
    let requirements = KeyRequirements::for_plan(&plan).map_err(cpu_error)?;
    std::fs::create_dir_all(&args.output)
        .map_err(|e| input_error(anyhow!("creating {}: {e}", args.output.display())))?;

    let client = ClientKeys::generate(&params).map_err(cpu_error)?;
    let secret = args.output.join("secret.key");
    client.write(&secret).map_err(|e| anyhow!(e))?;

    let bar = bytes_bar(requirements.estimated_bytes(&params).map_err(cpu_error)?);
    let keys = EvaluationKeys::generate(&client, &requirements, &mut |p| {
        bar.set_length(p.total_bytes);
        bar.set_position(p.done_bytes);
        bar.set_message(p.current.clone());
    });
    bar.finish_and_clear();
    let keys = keys.map_err(|e| anyhow!(e))?;
    let eval = args.output.join("eval");
    let (hash, file_bytes) = keys.write_dir(&eval).map_err(|e| anyhow!(e))?;

    println!("wrote {} (mode 0600, client only)", secret.display());
    println!(
        "wrote {}: parameters {}, relinearization {}, {} rotation keys, bootstrapping at {:?} slots",
        eval.display(),
        params.parameters().name,
        requirements
            .relinearization
            .map_or("none".into(), |l| format!("up to level {l}")),
        requirements.rotations.len(),
        requirements.bootstrap_slots
    );
    println!("evaluation key set {hash}");
    println!(
        "total key bytes {} in memory, {} on disk (public halves expanded from seeds on load)",
        keys.bytes(),
        file_bytes
    );
    println!("keygen in {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}
