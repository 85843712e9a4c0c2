//! The server side of `cachemir run`: a plan on ciphertexts with the client's evaluation keys.
//!
//! Everything that can be refused is checked before the first instruction: the plan (decoded,
//! validated, level rules), its parameters (toy sets only with `--insecure`), the ciphertext
//! file (parameter hash, plan hash, every encrypted input present with its layout's number of
//! ciphertexts), the weights, and the keys (parameter hash; every key the plan needs, up to the
//! level it is needed at). The outputs go to one ciphertext file, KV-cache states marked as
//! such, bound to the plan like the input.
//!
//! With `--session DIR` the KV-cache states of a decode-step plan stay on the server
//! ([`cachemir_vm::Session`], bound to the plan, the evaluation keys and the parameters): the
//! first step takes them from the ciphertext file's state entries (e.g. the client's encryption
//! of an empty cache), every later step from the session's last complete step (the file needs no
//! state entries then; any it has are ignored). After the run the outputs are written to `-o`
//! (without the states), and only then the new states are committed, atomically, with the
//! SHA-256 of the input file: a server killed in between re-runs the same step from the same
//! states, and the same input file run again after its step was committed is refused rather
//! than applied twice.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Result, anyhow};
use cachemir_ir::plan::{ContentHash, TensorRef};
use cachemir_vm::cpu::bundle::{BundleEntry, Role};
use cachemir_vm::{
    CiphertextBundle, CpuBackend, CpuOptions, CpuParameters, EvaluationKeys, Insecure, Session,
    SessionIdentity, Vm,
};

use crate::client::{load_plan, plan_dir};
use crate::exit::{cpu_error, input_error};
use crate::progress::Observed;
use crate::run::{classify, load_weights};
use crate::states::{CpuStates, check_state_levels, commit_states, load_states, open_session};

/// What the encrypted flow of `cachemir run` reads and writes.
#[derive(Debug, Clone)]
pub struct ServeArgs {
    pub plan: PathBuf,
    /// The evaluation-key folder.
    pub keys: PathBuf,
    /// The ciphertext file in, and the one to write.
    pub input: PathBuf,
    pub output: PathBuf,
    /// The session keeping the KV-cache states between steps (see the module documentation).
    pub session: Option<PathBuf>,
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
    let insecure = Insecure::allowed_if(args.insecure);
    let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
    let user = format!("plan {}", args.plan.display());
    let bundle =
        CiphertextBundle::read(&args.input, &params, plan.slots, &user).map_err(cpu_error)?;
    let plan_hash = plan.content_hash().map_err(input_error)?;
    bundle
        .check_plan(plan_hash, &args.input.display().to_string())
        .map_err(cpu_error)?;
    if args.session.is_some() && plan.states.is_empty() {
        return Err(input_error(anyhow!(
            "--session keeps KV-cache states between decode steps; plan {} has none",
            args.plan.display()
        )));
    }
    let is_state = |name: &str| plan.states.iter().any(|s| s.input == name);
    let mut inputs = Vec::with_capacity(plan.inputs.len());
    for io in &plan.inputs {
        let Some(entry) = bundle.entry(&io.name) else {
            if args.session.is_some() && is_state(&io.name) {
                // Taken from the session below, once it is open.
                inputs.push(Vec::new());
                continue;
            }
            return Err(input_error(anyhow!(
                "{}: no ciphertexts for the plan's input `{}`",
                args.input.display(),
                io.name
            )));
        };
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
    let codec = CpuStates {
        params: &params,
        slots: plan.slots,
    };
    let mut session = match &args.session {
        Some(dir) => {
            let identity = SessionIdentity {
                plan_hash,
                key_hash,
                parameters_hash: params.hash(),
            };
            let session = open_session(dir, identity)?;
            let input_hash = file_hash(&args.input)?;
            session_states(
                &session,
                &plan,
                &codec,
                &args.input,
                input_hash,
                &mut inputs,
            )?;
            Some((session, input_hash))
        }
        None => None,
    };

    let observed = Observed::new(&backend, &plan);
    let execution = vm.run(&observed, inputs);
    observed.finish();
    let execution = execution.map_err(classify)?;

    let state_outputs: Vec<&str> = plan.states.iter().map(|s| s.output.as_str()).collect();
    let mut entries = Vec::with_capacity(plan.outputs.len());
    let mut new_states: Vec<Option<Vec<_>>> = vec![None; plan.states.len()];
    for (io, parts) in plan.outputs.iter().zip(execution.outputs) {
        match state_outputs.iter().position(|s| *s == io.name) {
            Some(k) if session.is_some() => new_states[k] = Some(parts),
            Some(_) => entries.push(BundleEntry {
                name: io.name.clone(),
                role: Role::State,
                parts,
            }),
            None => entries.push(BundleEntry {
                name: io.name.clone(),
                role: Role::Output,
                parts,
            }),
        }
    }
    let out = CiphertextBundle {
        plan: plan_hash,
        entries,
        public: vec![],
    };
    out.write(&args.output, &params, plan.slots)
        .map_err(|e| anyhow!(e))?;
    println!("wrote {}", args.output.display());
    if let Some((session, input_hash)) = &mut session {
        let states = new_states
            .into_iter()
            .zip(&plan.states)
            .map(|(parts, state)| {
                parts.ok_or_else(|| anyhow!("the plan wrote no state output `{}`", state.output))
            })
            .collect::<Result<Vec<_>>>()?;
        let metadata = serde_json::json!({
            "input_sha256": input_hash.to_hex(),
            "output": args.output.display().to_string(),
        });
        let step = commit_states(session, &codec, &states, metadata)?;
        println!(
            "session {}: step {step} committed ({} state ciphertexts)",
            session.dir().display(),
            states.iter().map(Vec::len).sum::<usize>()
        );
    }
    let stats = backend.stats();
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

/// The SHA-256 of the file at `path`.
fn file_hash(path: &std::path::Path) -> Result<ContentHash> {
    std::fs::read(path)
        .map(|bytes| ContentHash::of(&bytes))
        .map_err(|e| input_error(anyhow!("reading {}: {e}", path.display())))
}

/// Puts the session's states into `inputs` (at the plan's state inputs) past step 0; at step 0
/// checks that the ciphertext file gave them. Refuses an input file the session's last step
/// already ran.
fn session_states(
    session: &Session,
    plan: &cachemir_ir::plan::Plan,
    codec: &CpuStates<'_>,
    input: &std::path::Path,
    input_hash: ContentHash,
    inputs: &mut [Vec<cachemir_vm::CpuCiphertext>],
) -> Result<()> {
    let position = |name: &str| plan.inputs.iter().position(|io| io.name == name);
    if session.step() > 0 {
        check_state_levels(
            plan,
            &format!(
                "session {} is at step {}",
                session.dir().display(),
                session.step()
            ),
        )?;
    }
    let Some(states) = load_states(session, plan, codec)? else {
        for state in &plan.states {
            if position(&state.input).is_some_and(|k| inputs[k].is_empty()) {
                return Err(input_error(anyhow!(
                    "session {} has no step yet: the first step takes the KV-cache state `{}` \
                     from {}, which has none (encrypt the initial cache, e.g. zeros)",
                    session.dir().display(),
                    state.input,
                    input.display()
                )));
            }
        }
        return Ok(());
    };
    if session
        .metadata()
        .get("input_sha256")
        .and_then(|h| h.as_str())
        == Some(input_hash.to_hex().as_str())
    {
        return Err(input_error(anyhow!(
            "{} was already run at step {} of session {} (its outputs went to {}); encrypt the \
             next step's inputs",
            input.display(),
            session.step(),
            session.dir().display(),
            session
                .metadata()
                .get("output")
                .and_then(|o| o.as_str())
                .unwrap_or("its -o file")
        )));
    }
    let mut ignored = Vec::new();
    for (state, parts) in plan.states.iter().zip(states) {
        let k = position(&state.input).ok_or_else(|| {
            input_error(anyhow!(
                "the plan's state `{}` is not an encrypted input",
                state.input
            ))
        })?;
        if !inputs[k].is_empty() {
            ignored.push(state.input.as_str());
        }
        inputs[k] = parts;
    }
    eprintln!(
        "KV-cache states from session {} step {}{}",
        session.dir().display(),
        session.step(),
        if ignored.is_empty() {
            String::new()
        } else {
            format!(" ({} in {} ignored)", ignored.join(", "), input.display())
        }
    );
    Ok(())
}
