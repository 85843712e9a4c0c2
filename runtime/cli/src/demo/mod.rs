//! `cachemir demo [--tokens N] [--prompt TEXT] [--max-context C] [--work-dir DIR] [--threads N]
//! [--public-prefix N] [--insecure-toy]`: the README's first command. It compiles the embedded
//! tiny Llama ([`model`]) as a generation plan, prints the plan's report summary, generates the
//! client's keys, then generates text encrypted, token by token, with the KV cache kept encrypted
//! between steps, and ends with who held which key, what was encrypted and the time taken.
//!
//! Every stage is the code of a command: the compile step is `cachemirc compile --generation`'s
//! call sequence ([`compile`]), the keys are `cachemir keygen`'s, the generation is `cachemir
//! generate`'s ([`crate::generate::generate`]: client and server in one process, greedy).
//! The default parameters are `N16BootFull` (N = 2^16, 128-bit by the HE standard bounds);
//! `--insecure-toy` takes `ToyBootN12` (N = 2^12, insecure, seconds per token instead of
//! minutes: for tests and a quick look), and says INSECURE wherever it prints the parameters.
//!
//! The work folder holds the model files, the plan and its weights, the report, the keys and
//! (with `--work-dir`) the session: a temporary folder removed at the end by default; with
//! `--work-dir DIR` it is kept, and a rerun reuses the plan and keys and resumes the session
//! until `--tokens` tokens exist in all. A folder made for other options is refused.

mod compile;
mod model;

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, anyhow};
use cachemir_ir::plan::Plan;
use cachemir_vm::{CpuParameters, Insecure};
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::client::load_plan;
use crate::exit::{cpu_error, input_error};
use crate::generate::{GenerateArgs, Outcome, PublicPrefix, Text};
use crate::keygen::KeygenArgs;
use crate::run::{BackendArg, set_threads};

pub use compile::{Compiled, Target};

/// The arguments of `cachemir demo`.
#[derive(Args, Debug)]
pub struct DemoArgs {
    /// Tokens to generate (in all: a resumed work folder counts those it has). About 12 minutes
    /// each at 128-bit on two cores.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub tokens: u64,
    /// The prompt (the model was trained on Shakespeare's plays).
    #[arg(long, default_value = "And")]
    pub prompt: String,
    /// Tokens the plan's KV cache holds, prompt and generated (the calibration needs 16 or more).
    #[arg(long, default_value_t = 16)]
    pub max_context: usize,
    /// Keep the plan, keys and session here (default: a temporary folder, removed at the end); a
    /// rerun with the same folder resumes.
    #[arg(long, value_name = "DIR")]
    pub work_dir: Option<PathBuf>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the first N prompt tokens in the clear (a public prefix; see `cachemir generate`).
    #[arg(long, value_name = "N")]
    pub public_prefix: Option<usize>,
    /// INSECURE toy parameters (ToyBootN12, N = 2^12): seconds per token, for tests and a quick
    /// look only.
    #[arg(long)]
    pub insecure_toy: bool,
}

/// Slots per ciphertext: ToyBootN12's full packing, and the 128-bit plan's too (sparse-slot
/// bootstrapping at N = 2^16), so both parameter sets run the same plan shape.
const SLOTS: usize = 2048;
/// The demo's softmax: two squaring steps (`--softmax-squarings 2`).
const SOFTMAX_SQUARINGS: u32 = 2;
/// The smallest context the embedded calibration fits (its samples hold 15 past tokens).
const MIN_CONTEXT: usize = 16;
const PLAN: &str = "demo.plan";
const WEIGHTS: &str = "demo.weights.safetensors";
const STAMP: &str = "demo.json";

/// What a work folder was made for; a rerun with other options is refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    /// SHA-256 of the embedded model files.
    model: String,
    cachemir: String,
    params: String,
    slots: usize,
    max_context: usize,
    softmax_squarings: u32,
}

/// Runs `cachemir demo` (see the module documentation).
///
/// # Errors
/// Input errors (exit 2) for bad options or a work folder made for other options; runtime
/// failures (exit 1) otherwise.
pub fn run(args: &DemoArgs) -> Result<()> {
    let started = Instant::now();
    set_threads(args.threads)?;
    let target = Target {
        params: if args.insecure_toy {
            "ToyBootN12"
        } else {
            "N16BootFull"
        },
        slots: SLOTS,
        max_context: args.max_context,
        softmax_squarings: SOFTMAX_SQUARINGS,
    };
    let temporary;
    let work = match &args.work_dir {
        Some(dir) => dir.clone(),
        None => {
            temporary = tempfile::Builder::new()
                .prefix("cachemir-demo-")
                .tempdir()
                .context("creating a temporary work folder")?;
            temporary.path().to_path_buf()
        }
    };
    let model_dir = work.join("model");
    model::write_to(&model_dir)?;
    check_request(args, &model_dir.join(model::TOKENIZER))?;
    claim_work_dir(&work, &target)?;

    println!(
        "cachemir demo: private text generation under CKKS with a tiny Llama (2 layers, 887,424 \
         parameters, ONNX {:.1} MB, embedded; examples/tiny_llama/PROVENANCE.md)",
        model::onnx_bytes() as f64 / 1e6
    );
    println!("{}", security_line(target.params, args.insecure_toy)?);
    println!(
        "work folder: {}{}",
        work.display(),
        if args.work_dir.is_some() {
            " (kept; a rerun resumes)"
        } else {
            " (temporary; --work-dir DIR keeps it)"
        }
    );

    // 1. Compile (the model owner or the server: no key involved).
    println!(
        "\n[1/3] compile: ONNX → generation plan ({}, {} slots, context {} tokens, softmax with {} \
         squarings)",
        target.params, target.slots, target.max_context, target.softmax_squarings
    );
    let plan_path = work.join(PLAN);
    let compile_start = Instant::now();
    let plan = if plan_path.exists() {
        println!("  reusing {}", plan_path.display());
        load_plan(&plan_path)?
    } else {
        let compiled = compile::compile(&model_dir, &target, &plan_path, WEIGHTS)?;
        println!(
            "  compiled in {:.1} s: {} instructions, {} bootstrap sites (placement {})",
            compiled.seconds,
            compiled.plan.instructions.len(),
            compiled.bootstrap_sites,
            compiled.placement
        );
        compiled.plan
    };
    let compile_s = compile_start.elapsed().as_secs_f64();
    let (summary, report) = compile::report_summary(&plan)?;
    println!("{summary}");
    let report_path = work.join("report.txt");
    std::fs::write(&report_path, report.text())
        .with_context(|| format!("writing {}", report_path.display()))?;
    println!(
        "  the whole report: {} (`cachemirc report {}`)",
        report_path.display(),
        plan_path.display()
    );

    // 2. Keys (the client).
    println!("\n[2/3] keygen (client): the secret key and the evaluation keys the plan lists");
    let keys = work.join("keys");
    let keygen_start = Instant::now();
    if keys.exists() {
        println!("  reusing {}", keys.display());
    } else {
        // Written under another name and renamed: a key folder in the work folder is whole.
        let partial = work.join("keys.partial");
        if partial.exists() {
            std::fs::remove_dir_all(&partial)
                .with_context(|| format!("removing {}", partial.display()))?;
        }
        crate::keygen::run(&KeygenArgs {
            plan: plan_path.clone(),
            output: partial.clone(),
            insecure: args.insecure_toy,
        })?;
        std::fs::rename(&partial, &keys)
            .with_context(|| format!("renaming {} to keys", partial.display()))?;
    }
    let keygen_s = keygen_start.elapsed().as_secs_f64();

    // 3. Encrypted generation (client and server in this process).
    println!(
        "\n[3/3] encrypted generation: prompt {:?}, {} tokens, greedy{}",
        args.prompt,
        args.tokens,
        args.public_prefix.map_or(String::new(), |n| format!(
            ", the first {n} prompt tokens in the clear"
        ))
    );
    let outcome = crate::generate::generate(&GenerateArgs {
        plan: plan_path.clone(),
        keys: Some(keys.clone()),
        tokenizer: model_dir.join(model::TOKENIZER),
        prompt: Some(args.prompt.clone()),
        tokens: args.tokens,
        greedy: true,
        temperature: None,
        seed: None,
        json: false,
        backend: BackendArg::Cpu,
        session: args.work_dir.as_ref().map(|_| work.join("session")),
        insecure: args.insecure_toy,
        threads: None,
        public_prefix: args.public_prefix,
        save_logits: None,
        tokens_in_all: true,
        step_lines: true,
    })?;

    println!("\n== summary");
    println!("{}", security_line(target.params, args.insecure_toy)?);
    print_roles(&plan, &keys, &outcome);
    let generation_s = outcome.elapsed.as_secs_f64();
    let t = &outcome.transcript;
    println!(
        "generated token ids {:?} after the prompt's {:?}",
        t.generated_token_ids, t.prompt_token_ids
    );
    println!(
        "time: compile {compile_s:.1} s, keygen {keygen_s:.1} s, generation {generation_s:.1} s \
         ({} steps, {} tokens in this run); total {:.1} s",
        outcome.step_ms.len(),
        outcome.new_tokens,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Refuses, before any work, a context the calibration does not fit, a prompt and tokens the
/// context does not hold, and a public prefix that leaves no prompt token private.
fn check_request(args: &DemoArgs, tokenizer: &Path) -> Result<()> {
    if args.max_context < MIN_CONTEXT {
        return Err(input_error(anyhow!(
            "--max-context {}: the demo model's calibration samples hold {} past tokens, so the \
             context must be {MIN_CONTEXT} or more",
            args.max_context,
            MIN_CONTEXT - 1
        )));
    }
    let prompt = Text::load(tokenizer)?.encode(&args.prompt)?;
    if let Some(n) = args.public_prefix {
        PublicPrefix::check(n, prompt.len())?;
    }
    let total = prompt.len() as u64 + args.tokens;
    if total > args.max_context as u64 {
        return Err(input_error(anyhow!(
            "the prompt's {} tokens and --tokens {} make {total}; --max-context {} holds fewer",
            prompt.len(),
            args.tokens,
            args.max_context
        )));
    }
    Ok(())
}

/// Refuses a work folder made for other options; stamps a new one.
fn claim_work_dir(work: &Path, target: &Target) -> Result<()> {
    std::fs::create_dir_all(work).with_context(|| format!("creating {}", work.display()))?;
    let stamp = Stamp {
        model: model::content_hash().to_string(),
        cachemir: env!("CARGO_PKG_VERSION").into(),
        params: target.params.into(),
        slots: target.slots,
        max_context: target.max_context,
        softmax_squarings: target.softmax_squarings,
    };
    let path = work.join(STAMP);
    if path.exists() {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let made: Option<Stamp> = serde_json::from_str(&text).ok();
        if made.as_ref() != Some(&stamp) {
            return Err(input_error(anyhow!(
                "{} holds a demo made for other options ({}); give another --work-dir or the \
                 same options (--insecure-toy, --max-context)",
                work.display(),
                made.map_or("unreadable".into(), |m| format!(
                    "{}, context {}",
                    m.params, m.max_context
                ))
            )));
        }
        return Ok(());
    }
    std::fs::write(&path, serde_json::to_string_pretty(&stamp)?)
        .with_context(|| format!("writing {}", path.display()))
}

/// The parameter set and its security: log2(QP) against the HE standard's 128-bit bound, or
/// INSECURE.
fn security_line(params: &str, insecure_toy: bool) -> Result<String> {
    let parameters = cachemir_compiler::levels::params::by_name(params)
        .ok_or_else(|| anyhow!("unknown parameter set {params}"))?;
    let cpu =
        CpuParameters::new(&parameters, Insecure::allowed_if(insecure_toy)).map_err(cpu_error)?;
    let ckks = cpu.context().params();
    let bound = ckks
        .security_bound()
        .map_err(|e| anyhow!("{params}: {e}"))?;
    let log_qp = ckks.log_qp();
    let security = if parameters.toy {
        let why = if log_qp > f64::from(bound) {
            format!("log2(QP) = {log_qp:.0} bits, above the 128-bit bound of {bound} bits")
        } else {
            format!("a test set (log2(QP) = {log_qp:.0} bits)")
        };
        format!("INSECURE toy parameters (--insecure-toy): {why}; tests and quick looks only")
    } else {
        format!(
            "128-bit security: log2(QP) = {log_qp:.0} bits ≤ {bound} (HE standard bound, \
             classical, {} secret)",
            ckks.secret
        )
    };
    Ok(format!(
        "parameters {}: N = 2^{}, scale 2^{}, {} levels fresh, {} after a bootstrap; {security}",
        parameters.name,
        parameters.log_n,
        parameters.log_scale,
        parameters.max_level,
        parameters.bootstrap_level.unwrap_or(0)
    ))
}

/// Who held which key and what was encrypted, from the plan.
fn print_roles(plan: &Plan, keys: &Path, outcome: &Outcome) {
    let states: Vec<&str> = plan.states.iter().map(|s| s.input.as_str()).collect();
    let count = |names: &mut dyn Iterator<Item = &cachemir_ir::plan::Ciphertexts>| {
        names.map(|io| io.layout.ciphertexts()).sum::<usize>()
    };
    let fresh: Vec<String> = plan
        .inputs
        .iter()
        .filter(|io| !states.contains(&io.name.as_str()))
        .map(|io| format!("`{}`", io.name))
        .collect();
    let state_cts = count(
        &mut plan
            .inputs
            .iter()
            .filter(|io| states.contains(&io.name.as_str())),
    );
    let generation = plan.generation.as_ref();
    println!(
        "encrypted by the client each step: {} (the token's embedding: the client looks the token \
         up in the clear and encrypts from there)",
        fresh.join(", ")
    );
    println!(
        "encrypted on the server, never decrypted: every activation of both layers and the KV \
         cache ({} states, {state_cts} ciphertexts, kept between steps); decrypted by the client \
         only: `{}`",
        states.len(),
        generation.map_or("logits", |g| g.logits_output.as_str())
    );
    println!(
        "public: the token positions and the attention mask (they reveal the step count only), \
         the weights (the server's){}",
        outcome.public.as_ref().map_or(String::new(), |p| format!(
            ", and the first {} prompt tokens (--public-prefix)",
            p.tokens
        ))
    );
    println!(
        "client: held the secret key ({}, mode 0600); tokenized, embedded, encrypted, decrypted \
         the logits and chose each token",
        keys.join("secret.key").display()
    );
    println!(
        "server: held the plan, the weights and the evaluation keys ({}: relinearization, \
         rotation and bootstrapping keys), never the secret key; one process plays both roles \
         here, and its server side (the VM running the plan) uses the evaluation keys only",
        keys.join("eval").display()
    );
}
