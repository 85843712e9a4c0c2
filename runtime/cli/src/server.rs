//! The server side of `cachemir run`: a plan on ciphertexts with the client's evaluation keys.
//!
//! Everything that can be refused is checked before the first instruction: the plan (decoded,
//! validated, level rules), its parameters (toy sets only with `--insecure`), the ciphertext
//! file (parameter hash, plan hash, every encrypted input present with its layout's number of
//! ciphertexts), the weights, and the keys (parameter hash; every key the plan needs, up to the
//! level it is needed at). The outputs go to one ciphertext file, KV-cache states marked as
//! such, bound to the plan like the input.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use cachemir_ir::plan::TensorRef;
use cachemir_vm::cpu::bundle::{BundleEntry, Role};
use cachemir_vm::{
    CiphertextBundle, CpuBackend, CpuOptions, CpuParameters, EvaluationKeys, Insecure, Vm,
};

use crate::client::{load_plan, plan_dir};
use crate::exit::{cpu_error, input_error};
use crate::progress::Observed;
use crate::run::{classify, load_weights};

/// What the encrypted flow of `cachemir run` reads and writes.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub plan: PathBuf,
    /// The evaluation-key folder.
    pub keys: PathBuf,
    /// The ciphertext file in, and the one to write.
    pub input: PathBuf,
    pub output: PathBuf,
    /// Accept toy (insecure) parameter sets.
    pub insecure: bool,
}

/// Runs the plan on the ciphertexts (see the module documentation) and prints a summary.
///
/// # Errors
/// Input errors (exit 2) for anything refused before the first instruction; runtime failures
/// (exit 1) for a failing instruction or an unwritable output.
pub fn run(args: &ServeArgs) -> Result<()> {
    let start = Instant::now();
    let plan = load_plan(&args.plan)?;
    let insecure = if args.insecure {
        Insecure::Allow
    } else {
        Insecure::Refuse
    };
    let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
    let user = format!("plan {}", args.plan.display());
    let bundle =
        CiphertextBundle::read(&args.input, &params, plan.slots, &user).map_err(cpu_error)?;
    let plan_hash = plan.content_hash().map_err(input_error)?;
    bundle
        .check_plan(plan_hash, &args.input.display().to_string())
        .map_err(cpu_error)?;
    let mut inputs = Vec::with_capacity(plan.inputs.len());
    for io in &plan.inputs {
        let entry = bundle.entry(&io.name).ok_or_else(|| {
            input_error(anyhow!(
                "{}: no ciphertexts for the plan's input `{}`",
                args.input.display(),
                io.name
            ))
        })?;
        if entry.parts.len() != io.layout.ciphertexts() {
            return Err(input_error(anyhow!(
                "{}: input `{}` has {} ciphertexts; the plan's layout has {}",
                args.input.display(),
                io.name,
                entry.parts.len(),
                io.layout.ciphertexts()
            )));
        }
        inputs.push(entry.parts.clone());
    }
    let mut tensors = load_weights(&plan, plan_dir(&args.plan)).map_err(input_error)?;
    for t in &bundle.public {
        tensors.insert(TensorRef::Public(t.name.clone()), t.values.clone());
    }
    let vm = Vm::new(&plan, &tensors).map_err(classify)?;

    let loaded = Instant::now();
    let (keys, key_hash) =
        EvaluationKeys::read_dir(&args.keys, &params, &user).map_err(cpu_error)?;
    let key_bytes = keys.bytes();
    let backend = CpuBackend::new(&plan, keys, CpuOptions::default()).map_err(cpu_error)?;
    eprintln!(
        "keys {key_hash} ({:.1} MiB) loaded in {:.2} s",
        key_bytes as f64 / f64::from(1u32 << 20),
        loaded.elapsed().as_secs_f64()
    );

    let observed = Observed::new(&backend, &plan);
    let execution = vm.run(&observed, inputs);
    observed.finish();
    let execution = execution.map_err(classify)?;

    let states: Vec<&str> = plan.states.iter().map(|s| s.output.as_str()).collect();
    let entries = plan
        .outputs
        .iter()
        .zip(execution.outputs)
        .map(|(io, parts)| BundleEntry {
            name: io.name.clone(),
            role: if states.contains(&io.name.as_str()) {
                Role::State
            } else {
                Role::Output
            },
            parts,
        })
        .collect();
    let out = CiphertextBundle {
        plan: plan_hash,
        entries,
        public: vec![],
    };
    out.write(&args.output, &params, plan.slots)
        .map_err(|e| anyhow!(e))?;
    let stats = backend.stats();
    println!("wrote {}", args.output.display());
    println!(
        "plan {}: {} slots, parameters {}",
        plan.name,
        plan.slots,
        params.parameters().name
    );
    println!("{}", execution.report);
    println!(
        "bootstraps {} in {:.3} s, key switches {}, plaintexts encoded {} (cache: {} hits, {} misses, {} evictions)",
        stats.bootstraps,
        stats.bootstrap_time.as_secs_f64(),
        stats.key_switches,
        stats.plaintexts_encoded,
        stats.cache.hits,
        stats.cache.misses,
        stats.cache.evictions
    );
    println!("total wall time {:.3} s", start.elapsed().as_secs_f64());
    Ok(())
}
