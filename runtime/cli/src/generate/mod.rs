//! `cachemir generate PLAN --tokenizer tokenizer.json --prompt TEXT --tokens N [--keys KEYDIR]
//! [--backend cpu|sim] [--greedy | --temperature T [--seed S]] [--json] [--session DIR]
//! [--insecure] [--threads N]`: client and server in one process, generating text with a
//! generation plan (`cachemirc compile --generation --max-context N`).
//!
//! The client tokenizes the prompt (the model's Hugging Face `tokenizer.json`) and feeds it one
//! token a step through [`Generator`]: the plan's client program embeds the token, the embedding
//! is encrypted, the server runs the plan against the encrypted KV cache (kept as ciphertexts
//! between steps, never decrypted), the client decrypts the logits. From the prompt's last token
//! on, each step's logits choose the next token (greedy by default, or sampled at
//! `--temperature` with `--seed`, see [`Sampler`]), which the next step feeds. The text streams
//! to standard output; at the end a summary gives the per-token latency (the wall time of the
//! step that produced the token) and the bootstraps per step. `--json` prints only
//! `{"prompt_token_ids", "generated_token_ids", "generated_text", "per_token_ms"}`, the keys of
//! `../shared/models/*/generation.json`. `--backend cpu` encrypts under `--keys KEYDIR` (from
//! `cachemir keygen`; a toy parameter set needs `--insecure`); `--backend sim` runs the same
//! steps on cleartext slot vectors and needs no keys.
//!
//! # Sessions and resuming
//! With `--session DIR` every step commits atomically ([`cachemir_vm::session`]) the KV-cache
//! ciphertexts after the step and the [`Transcript`] (prompt, generated tokens, latencies), bound
//! to the plan, the evaluation keys and the parameters. Rerunning with the same session resumes
//! after its last complete step: the prompt is taken from the session (`--prompt`, if given,
//! must be the same text), the tokens generated so far are kept, and `--tokens N` generates `N`
//! more. A process killed between two steps (or in one) loses at most the step in flight, so
//! `generate --tokens 1` run twice gives the tokens of one `generate --tokens 2` (greedy, or
//! sampled with the same seed). The prompt and everything generated must fit the plan's context
//! (`--max-context`).
//!
//! # Public prefix
//! `--public-prefix N` runs the first `N` prompt tokens in the clear (see [`PublicPrefix`]): the
//! server computes their KV cache on cleartext slots, the client encrypts it, and the remaining
//! steps run encrypted; the summary gives the latency this saved against the measured encrypted
//! step. In a session the public steps are not committed (session step `k` is generation step
//! `N + k`), and a resumed session keeps its prefix.
//!
//! Exit codes: 2 for usage and input errors (a plan that is not a generation plan, a text longer
//! than the context, missing keys, toy parameters without `--insecure`, a session of another
//! plan or keys), found before the first step; 1 for failures while generating.

mod public_prefix;
mod sampling;
mod text;
mod transcript;

pub use public_prefix::PublicPrefix;
pub use sampling::Sampler;
pub use text::{Stream, Text};
pub use transcript::Transcript;

use std::collections::{BTreeMap, HashMap};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use cachemir_ir::Tensor;
use cachemir_ir::npy::write_npy;
use cachemir_ir::plan::{Generation, Instruction, Plan, TensorRef};
use cachemir_vm::{
    Backend, Client, ClientKeys, CpuBackend, CpuOptions, CpuParameters, EvaluationKeys,
    GenerationRunError, Generator, Insecure, SessionIdentity, SimBackend,
};
use clap::Args;
use serde::Serialize;

use crate::client::{load_plan, plan_dir};
use crate::exit::{cpu_error, input_error};
use crate::progress::Observed;
use crate::run::{BackendArg, classify, load_weights, set_threads};
use crate::states::{
    CpuStates, SimStates, StateCodec, check_state_levels, commit_states, load_states, open_session,
    sim_identity,
};

/// The arguments of `cachemir generate`.
#[derive(Args, Debug)]
pub struct GenerateArgs {
    /// The generation plan (`cachemirc compile --generation --max-context N`); its weights file
    /// is found relative to it.
    pub plan: PathBuf,
    /// The key folder of `cachemir keygen` (`secret.key` and `eval/`); `--backend cpu` only.
    #[arg(long)]
    pub keys: Option<PathBuf>,
    /// The model's Hugging Face tokenizer (`tokenizer.json`).
    #[arg(long)]
    pub tokenizer: PathBuf,
    /// The prompt; may be left out when resuming a session.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Tokens to generate in this run (a resumed session adds them to those it has).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub tokens: u64,
    /// Choose the most likely token at each step (the default).
    #[arg(long, conflicts_with = "temperature")]
    pub greedy: bool,
    /// Sample the next token from softmax(logits / T) instead (T > 0).
    #[arg(long, value_name = "T")]
    pub temperature: Option<f64>,
    /// Seed of the sampling (default 0).
    #[arg(long, requires = "temperature")]
    pub seed: Option<u64>,
    /// Print only the JSON transcript: prompt_token_ids, generated_token_ids, generated_text,
    /// per_token_ms.
    #[arg(long)]
    pub json: bool,
    /// `cpu`: CKKS ciphertexts under `--keys`; `sim`: cleartext slot vectors (no keys).
    #[arg(long, value_enum, default_value = "cpu")]
    pub backend: BackendArg,
    /// Keep the encrypted KV cache and the transcript in this session directory, one atomic
    /// commit per step; a rerun resumes there.
    #[arg(long, value_name = "DIR")]
    pub session: Option<PathBuf>,
    /// Accept toy (insecure) parameter sets.
    #[arg(long)]
    pub insecure: bool,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Run the first N prompt tokens in the clear (a public prefix: the server computes their KV
    /// cache on cleartext slots, the client encrypts it); the rest runs encrypted. At most the
    /// prompt's tokens minus one; a resumed session keeps the prefix it started with.
    #[arg(long, value_name = "N")]
    pub public_prefix: Option<usize>,
    /// Write each step's decrypted logits to `DIR/step-NNN.npy` (f64, flattened; `NNN` is the
    /// step, prompt steps included: step `n` runs with a cache of `n + 1` tokens) and one JSON
    /// line per step to `DIR/steps.jsonl` (step, the plan's context, token fed, token chosen, ms,
    /// bootstraps): the client's own record for accuracy and latency studies.
    #[arg(long, value_name = "DIR")]
    pub save_logits: Option<PathBuf>,
    /// `--tokens` counts every token of the generation, those of a resumed session included,
    /// instead of the tokens of this run: a rerun after an interruption finishes the same
    /// generation.
    #[arg(long)]
    pub tokens_in_all: bool,
    /// One line per step on standard output (the step, its token and text so far, latency,
    /// bootstraps) instead of the streamed text (`cachemir demo`).
    #[arg(skip)]
    pub step_lines: bool,
}

/// What a generation did (besides what it printed).
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The whole generation, tokens of earlier runs of a resumed session included.
    pub transcript: Transcript,
    /// Tokens generated by this run (the last ones of the transcript).
    pub new_tokens: usize,
    /// Wall time of each step this run ran on the backend (the public prefix's are not steps
    /// of the backend), ms.
    pub step_ms: Vec<f64>,
    /// Bootstraps per step → steps of this run with that count.
    pub bootstraps_per_step: BTreeMap<usize, usize>,
    /// The plan's bootstraps per step by layer, e.g. `layer 0: 14, layer 1: 21`.
    pub bootstraps_by_layer: String,
    /// The public prefix this run computed in the clear, if any.
    pub public: Option<PublicPrefix>,
    /// Wall time from the first step to the last.
    pub elapsed: Duration,
}

/// The `--json` output: exactly these keys of `generation.json`.
#[derive(Debug, Serialize)]
struct JsonTranscript<'a> {
    prompt_token_ids: &'a [i64],
    generated_token_ids: &'a [i64],
    generated_text: String,
    per_token_ms: &'a [f64],
}

/// Runs `cachemir generate` (see the module documentation).
///
/// # Errors
/// As [`generate`].
pub fn run(args: &GenerateArgs) -> Result<()> {
    generate(args).map(|_| ())
}

/// Runs `cachemir generate` (see the module documentation) and returns what it did.
///
/// # Errors
/// Input errors (exit 2) for anything refused before the first step; runtime failures (exit 1)
/// while generating.
pub fn generate(args: &GenerateArgs) -> Result<Outcome> {
    set_threads(args.threads)?;
    let plan = load_plan(&args.plan)?;
    let generation = plan.generation.clone().ok_or_else(|| {
        input_error(anyhow!(
            "{}: not a generation plan (compile it with `cachemirc compile --generation \
             --max-context N`)",
            args.plan.display()
        ))
    })?;
    let sampler = match args.temperature {
        None => Sampler::Greedy,
        Some(t) if t > 0.0 && t.is_finite() => Sampler::Temperature {
            temperature: t,
            seed: args.seed.unwrap_or(0),
        },
        Some(t) => {
            return Err(input_error(anyhow!(
                "--temperature {t}: a positive number (or --greedy)"
            )));
        }
    };
    let text = Text::load(&args.tokenizer)?;
    let vocabulary = logits_size(&plan, &generation)?;
    let prompt = match &args.prompt {
        Some(prompt) => {
            let ids = text.encode(prompt)?;
            if let Some(&id) = ids.iter().find(|&&id| id < 0 || id as usize >= vocabulary) {
                return Err(input_error(anyhow!(
                    "prompt token id {id} is outside the plan's vocabulary of {vocabulary}: \
                     is {} the model's tokenizer?",
                    args.tokenizer.display()
                )));
            }
            let mut transcript = Transcript::new(prompt, ids);
            transcript.public_prefix = args.public_prefix.unwrap_or(0);
            PublicPrefix::check(transcript.public_prefix, transcript.prompt_token_ids.len())?;
            Some(transcript)
        }
        None if args.session.is_some() => None,
        None => return Err(input_error(anyhow!("give --prompt TEXT"))),
    };
    if let Some(prompt) = &prompt {
        // Checked again against a resumed session's transcript; this catches it before the keys.
        check_context(prompt, more_tokens(args, prompt), &generation)?;
    }
    let weights = load_weights(&plan, plan_dir(&args.plan)).map_err(input_error)?;
    let request = Request {
        args,
        plan: &plan,
        generation: &generation,
        text: &text,
        sampler,
    };
    match args.backend {
        BackendArg::Sim => {
            if args.keys.is_some() {
                return Err(input_error(anyhow!(
                    "--backend sim runs on cleartext slots and takes no --keys"
                )));
            }
            let backend = SimBackend::for_plan(&plan);
            let codec = SimStates { slots: plan.slots };
            request.drive(&backend, &codec, sim_identity(&plan)?, prompt, weights)
        }
        BackendArg::Cpu => {
            let keys = args.keys.as_ref().ok_or_else(|| {
                input_error(anyhow!(
                    "--backend cpu needs --keys KEYDIR (from `cachemir keygen`); --backend sim \
                     runs without keys"
                ))
            })?;
            let insecure = Insecure::allowed_if(args.insecure);
            let params = CpuParameters::for_plan(&plan, insecure).map_err(cpu_error)?;
            let user = format!("plan {}", args.plan.display());
            let client =
                ClientKeys::read(&keys.join("secret.key"), &params, &user).map_err(cpu_error)?;
            let loaded = Instant::now();
            let (eval, key_hash) =
                EvaluationKeys::read_dir(&keys.join("eval"), &params, &user).map_err(cpu_error)?;
            // The VM's range checks would decrypt intermediate values: not what a server does.
            let options = CpuOptions {
                peek_with_secret: false,
                ..CpuOptions::default()
            };
            let backend = CpuBackend::new(&plan, eval, options)
                .map_err(cpu_error)?
                .with_secret(&client);
            eprintln!(
                "keys {key_hash} loaded in {:.2} s, parameters {}",
                loaded.elapsed().as_secs_f64(),
                params.parameters().name
            );
            let identity = SessionIdentity {
                plan_hash: plan.content_hash().map_err(input_error)?,
                key_hash,
                parameters_hash: params.hash(),
            };
            let codec = CpuStates {
                params: &params,
                slots: plan.slots,
            };
            let observed = Observed::new(&backend, &plan);
            request.drive(&observed, &codec, identity, prompt, weights)
        }
        BackendArg::Cuda => Err(input_error(anyhow!(
            "--backend cuda is not yet implemented (issue 10)"
        ))),
    }
}

/// Progress shown around each step (the `cpu` backend's instruction bar; nothing for `sim`).
pub trait StepProgress {
    fn start_step(&self) {}
    fn end_step(&self) {}
}

impl StepProgress for SimBackend {}

impl<B: Backend> StepProgress for Observed<'_, B> {
    fn start_step(&self) {
        self.restart();
    }
    fn end_step(&self) {
        self.finish();
    }
}

/// What every backend's generation shares.
struct Request<'a> {
    args: &'a GenerateArgs,
    plan: &'a Plan,
    generation: &'a Generation,
    text: &'a Text,
    sampler: Sampler,
}

impl Request<'_> {
    /// Resumes or starts the transcript (running a public prefix in the clear where asked), runs
    /// the steps, prints the text and the summary (or the JSON).
    fn drive<B, C>(
        &self,
        backend: &B,
        codec: &C,
        identity: SessionIdentity,
        prompt: Option<Transcript>,
        weights: HashMap<TensorRef, Vec<f64>>,
    ) -> Result<Outcome>
    where
        B: Client + StepProgress,
        C: StateCodec<Ciphertext = B::Ciphertext>,
    {
        let args = self.args;
        let mut session = match &args.session {
            Some(dir) => Some(open_session(dir, identity)?),
            None => None,
        };
        let (mut transcript, resumed) = match (&session, prompt) {
            (Some(s), prompt) if s.step() > 0 => {
                let resumed = Transcript::from_metadata(s.metadata(), s.step())?;
                if let Some(prompt) = prompt
                    && prompt.prompt_text != resumed.prompt_text
                {
                    return Err(input_error(anyhow!(
                        "session {} continues the prompt {:?}; give the same --prompt, none, or \
                         another session",
                        s.dir().display(),
                        resumed.prompt_text
                    )));
                }
                if let Some(n) = args.public_prefix
                    && n != resumed.public_prefix
                {
                    return Err(input_error(anyhow!(
                        "session {} continues a generation whose first {} prompt tokens ran in \
                         the clear; give --public-prefix {} or none",
                        s.dir().display(),
                        resumed.public_prefix,
                        resumed.public_prefix
                    )));
                }
                let states = load_states(s, self.plan, codec)?.expect("a session past step 0");
                let step = usize::try_from(s.step()).map_err(input_error)? + resumed.public_prefix;
                (resumed, Some((step, states)))
            }
            (_, Some(prompt)) => (prompt, None),
            (_, None) => return Err(input_error(anyhow!("give --prompt TEXT"))),
        };
        let more = more_tokens(args, &transcript);
        check_context(&transcript, more, self.generation)?;
        let target = transcript.generated_token_ids.len() + more as usize;
        // The last step is the one whose logits give the last token.
        let last_step = transcript.prompt_token_ids.len() + target - 2;
        if last_step > 0 {
            check_state_levels(
                self.plan,
                &format!(
                    "this generation runs steps {}..={last_step}",
                    resumed
                        .as_ref()
                        .map_or(transcript.public_prefix, |(step, _)| *step)
                ),
            )?;
        }
        let mut public = None;
        let mut generator = match resumed {
            Some((step, states)) => Generator::new(backend, self.plan, weights)
                .and_then(|g| g.resume(step, states))
                .map_err(generation_error)?,
            None if transcript.public_prefix > 0 => {
                let prefix = &transcript.prompt_token_ids[..transcript.public_prefix];
                let clear = PublicPrefix::run_in_clear(self.plan, weights.clone(), prefix)?;
                let encrypting = Instant::now();
                let states = clear.encrypt(backend, self.plan)?;
                eprintln!(
                    "public prefix: the first {} prompt tokens ({:?}) ran in the clear on the \
                     server in {:.1} ms; the client encrypted their KV cache ({} ciphertexts) in \
                     {:.1} ms",
                    clear.tokens,
                    self.text.decode(prefix)?,
                    clear.clear_ms,
                    states.iter().map(Vec::len).sum::<usize>(),
                    encrypting.elapsed().as_secs_f64() * 1e3
                );
                let generator = Generator::new(backend, self.plan, weights)
                    .and_then(|g| g.resume(clear.tokens, states))
                    .map_err(generation_error)?;
                public = Some(clear);
                generator
            }
            None => Generator::new(backend, self.plan, weights).map_err(generation_error)?,
        };
        let first_new = transcript.generated_token_ids.len();
        if let Some(s) = &session {
            eprintln!(
                "session {}: step {}, {} tokens generated so far",
                s.dir().display(),
                s.step(),
                first_new
            );
        }

        let log_steps = args.json || !std::io::stderr().is_terminal();
        let stream_text = !args.json && !args.step_lines;
        let mut stream = Stream::default();
        let mut out = std::io::stdout().lock();
        if stream_text {
            let so_far = self.text.decode(&transcript.generated_token_ids)?;
            write!(
                out,
                "{}{}",
                transcript.prompt_text,
                stream.piece(&so_far, false)
            )?;
            out.flush()?;
        }
        let started = Instant::now();
        let mut step_ms = Vec::new();
        let mut bootstraps = BTreeMap::<usize, usize>::new();
        while transcript.generated_token_ids.len() < target {
            let step = generator.step_index();
            let token = transcript
                .fed_at(step)
                .expect("a transcript holds the token of every step up to its last token");
            backend.start_step();
            let start = Instant::now();
            let result = generator.step(token);
            backend.end_step();
            let output = result.map_err(generation_error)?;
            let boots = output.report.counts.get("boot").copied().unwrap_or(0);
            *bootstraps.entry(boots).or_default() += 1;
            let yields = transcript.yields_token(step);
            let prompt_len = transcript.prompt_token_ids.len();
            let mut what = match step.checked_sub(prompt_len) {
                None => format!("prompt token {}/{prompt_len}", step + 1),
                Some(k) => format!("generated token {}", k + 1),
            };
            if yields {
                let index = transcript.generated_token_ids.len();
                let next = self.sampler.next(&output.logits, index as u64)?;
                // Microsecond resolution.
                let ms = (start.elapsed().as_secs_f64() * 1e6).round() / 1e3;
                transcript.push(next as i64, ms);
                what = format!(
                    "{what} → token {} = {next} {:?}",
                    index + 1,
                    self.text.decode(&[next as i64])?
                );
            }
            let ms = start.elapsed().as_secs_f64() * 1e3;
            step_ms.push(ms);
            if let Some(dir) = &args.save_logits {
                let record = StepRecord {
                    step,
                    max_context: self.generation.max_context,
                    token_fed: token,
                    token_chosen: yields
                        .then(|| transcript.generated_token_ids.last().copied())
                        .flatten(),
                    ms,
                    bootstraps: boots,
                };
                save_step(dir, &record, &output.logits)?;
            }
            let mut line = format!("step {step}: {what}; {ms:.1} ms, {boots} bootstraps");
            if let Some(session) = &mut session {
                let commit = Instant::now();
                commit_states(session, codec, generator.states(), transcript.to_metadata())?;
                line = format!(
                    "{line}; committed in {:.1} ms",
                    commit.elapsed().as_secs_f64() * 1e3
                );
            }
            if args.step_lines {
                writeln!(out, "{line}")?;
                if yields {
                    let so_far = self.text.decode(&transcript.generated_token_ids)?;
                    writeln!(out, "    {}{so_far}", transcript.prompt_text)?;
                }
                out.flush()?;
            } else if log_steps {
                eprintln!("{line}");
            }
            if yields && stream_text {
                let last = transcript.generated_token_ids.len() == target;
                let so_far = self.text.decode(&transcript.generated_token_ids)?;
                write!(out, "{}", stream.piece(&so_far, last))?;
                out.flush()?;
            }
        }
        let outcome = Outcome {
            new_tokens: transcript.generated_token_ids.len() - first_new,
            transcript,
            step_ms,
            bootstraps_per_step: bootstraps,
            bootstraps_by_layer: bootstraps_by_layer(self.plan),
            public,
            elapsed: started.elapsed(),
        };

        if args.json {
            let t = &outcome.transcript;
            let json = JsonTranscript {
                prompt_token_ids: &t.prompt_token_ids,
                generated_token_ids: &t.generated_token_ids,
                generated_text: self.text.decode(&t.generated_token_ids)?,
                per_token_ms: &t.per_token_ms,
            };
            writeln!(out, "{}", serde_json::to_string(&json)?)?;
            if let Some(line) = saved_line(&outcome) {
                eprintln!("{line}");
            }
            return Ok(outcome);
        }
        let t = &outcome.transcript;
        let latencies = &t.per_token_ms[first_new..];
        let mean = latencies.iter().sum::<f64>() / latencies.len().max(1) as f64;
        if stream_text {
            writeln!(out)?;
        }
        writeln!(out)?;
        writeln!(
            out,
            "{} tokens generated in this run ({} in all after a {}-token prompt), {} steps \
             in {:.3} s",
            latencies.len(),
            t.generated_token_ids.len(),
            t.prompt_token_ids.len(),
            outcome.step_ms.len(),
            outcome.elapsed.as_secs_f64()
        )?;
        writeln!(
            out,
            "per-token latency (ms): {}; mean {mean:.1}",
            latencies
                .iter()
                .map(|ms| format!("{ms:.1}"))
                .collect::<Vec<_>>()
                .join(", ")
        )?;
        writeln!(
            out,
            "bootstraps per step: {} ({})",
            outcome
                .bootstraps_per_step
                .iter()
                .map(|(boots, n)| format!("{boots} × {n} steps"))
                .collect::<Vec<_>>()
                .join(", "),
            outcome.bootstraps_by_layer
        )?;
        if let Some(line) = saved_line(&outcome) {
            writeln!(out, "{line}")?;
        }
        if let Some(s) = &session {
            writeln!(out, "session {}: step {}", s.dir().display(), s.step())?;
        }
        Ok(outcome)
    }
}

/// One step's line of `steps.jsonl` under `--save-logits DIR`.
#[derive(Debug, Serialize)]
struct StepRecord {
    step: usize,
    /// The plan's context (`cachemirc compile --max-context`).
    max_context: usize,
    token_fed: i64,
    /// The token this step's logits chose (steps from the prompt's last token on).
    token_chosen: Option<i64>,
    ms: f64,
    bootstraps: usize,
}

/// Writes a step's logits (`DIR/step-NNN.npy`, f64) and appends its record to `DIR/steps.jsonl`
/// (see [`GenerateArgs::save_logits`]).
fn save_step(dir: &Path, record: &StepRecord, logits: &[f64]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let array = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(&[logits.len()]), logits.to_vec())?;
    write_npy(
        &dir.join(format!("step-{:03}.npy", record.step)),
        &Tensor::F64(array),
    )?;
    let path = dir.join("steps.jsonl");
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    writeln!(file, "{}", serde_json::to_string(record)?)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

/// Tokens this run generates: `--tokens`, or with [`GenerateArgs::tokens_in_all`] what is
/// missing to `--tokens` in all.
fn more_tokens(args: &GenerateArgs, transcript: &Transcript) -> u64 {
    if args.tokens_in_all {
        args.tokens
            .saturating_sub(transcript.generated_token_ids.len() as u64)
    } else {
        args.tokens
    }
}

/// The latency a public prefix saved, against the mean encrypted step of this run.
fn saved_line(outcome: &Outcome) -> Option<String> {
    let public = outcome.public.as_ref()?;
    if outcome.step_ms.is_empty() {
        return None;
    }
    let step = outcome.step_ms.iter().sum::<f64>() / outcome.step_ms.len() as f64;
    Some(format!(
        "public prefix: {} prompt tokens in the clear took {:.1} ms instead of ≈ {} × {step:.1} \
         ms encrypted (this run's mean step): ≈ {:.3} s saved",
        public.tokens,
        public.clear_ms,
        public.tokens,
        public.saved_ms(step) / 1e3
    ))
}

/// The prompt, the tokens generated so far and `tokens` more must fit the plan's context.
fn check_context(transcript: &Transcript, tokens: u64, generation: &Generation) -> Result<()> {
    let total = transcript.len() as u64 + tokens;
    if total > generation.max_context as u64 {
        return Err(input_error(anyhow!(
            "{} prompt tokens{} and {tokens} more make {total} tokens; the plan's context holds \
             {} (cachemirc compile --max-context)",
            transcript.prompt_token_ids.len(),
            match transcript.generated_token_ids.len() {
                0 => String::new(),
                n => format!(", {n} generated"),
            },
            generation.max_context
        )));
    }
    Ok(())
}

/// The number of logits (the vocabulary) of the plan's logits output.
fn logits_size(plan: &Plan, generation: &Generation) -> Result<usize> {
    plan.outputs
        .iter()
        .find(|o| o.name == generation.logits_output)
        .and_then(|o| o.layout.shape.last().copied())
        .ok_or_else(|| {
            input_error(anyhow!(
                "the plan has no logits output `{}`",
                generation.logits_output
            ))
        })
}

/// The plan's bootstraps per step by layer, e.g. `layer 0: 30, layer 1: 30`.
fn bootstraps_by_layer(plan: &Plan) -> String {
    let mut layers = BTreeMap::<Option<u32>, usize>::new();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        if matches!(instruction, Instruction::Bootstrap { .. }) {
            let site = plan.instruction_sites.get(k).copied().unwrap_or(u32::MAX);
            let layer = plan.sites.get(site as usize).and_then(|s| s.layer);
            *layers.entry(layer).or_default() += 1;
        }
    }
    if layers.is_empty() {
        return "the plan has no bootstrap".into();
    }
    layers
        .iter()
        .map(|(layer, n)| match layer {
            Some(l) => format!("layer {l}: {n}"),
            None => format!("outside layers: {n}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// A generation error as an input error (the plan or its inputs are at fault) or a runtime
/// failure (the backend or an instruction failed).
fn generation_error(e: GenerationRunError) -> anyhow::Error {
    match e {
        GenerationRunError::Vm(e) => classify(e),
        GenerationRunError::Backend { .. } => anyhow::Error::new(e),
        _ => input_error(e),
    }
}
