//! `cachemir generate` through the binary on the tiny Llama generation plan (compiled with the
//! compiler library as `cachemirc compile --generation` compiles it), and `cachemir run
//! --session` over two decode steps:
//!
//! - on `sim` at 2^15 slots (context 40) the greedy tokens of the prompt of `generation.json`
//!   equal its transcript up to the first disagreement, which may only come at a step whose
//!   reference margin is at most 0.1 (no teacher forcing through the CLI);
//! - encrypted on `cpu` at ToyBootN12 (2048 slots, INSECURE, for CI) the tokens equal `sim`'s on
//!   the same plan;
//! - a session resumes: `--tokens 1` twice gives the tokens of one `--tokens 2`, and a process
//!   killed (SIGKILL) at a random point of the fifth of eight decode steps resumes to the
//!   uninterrupted tokens;
//! - bad usage exits 2 before any step;
//! - `run --session` keeps a plan's KV-cache state on the server between two encrypted steps.

use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, assign_levels, calibrated_bound};
use cachemir_compiler::lower::weights::write_weights;
use cachemir_compiler::lower::{LowerOptions, lower};
use cachemir_compiler::reference::models_dir;
use cachemir_ir::Tensor;
use cachemir_ir::npy::{read_npy, write_npy};
use cachemir_ir::plan::{Ciphertexts, Plan};
use cachemir_tests::generation::{GenerationStep, Transcript, compile_generation_step, token_ids};
use ndarray::{ArrayD, IxDyn};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Instant;

#[path = "support/binary.rs"]
mod binary;
#[path = "support/toy_step.rs"]
mod toy_step;
use binary::{arg, cachemir, keygen, ok, refused, run_plan};
use toy_step::ToyStep;

const LLAMA: &str = "tiny_llama_with_past_ts17";
/// Margins above this must give the transcript's token (the bound for sim).
const MARGIN: f64 = 0.1;

/// The `--json` object, checked to hold exactly the keys of `generation.json`.
fn generated(out: &Output) -> Value {
    let stdout = ok(out);
    let json: Value = serde_json::from_str(stdout.trim()).expect("--json prints one object");
    let mut keys: Vec<&str> = json
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "generated_text",
            "generated_token_ids",
            "per_token_ms",
            "prompt_token_ids"
        ]
    );
    let tokens = json["generated_token_ids"].as_array().unwrap().len();
    let ms = json["per_token_ms"].as_array().unwrap();
    assert_eq!(ms.len(), tokens);
    assert!(ms.iter().all(|v| v.as_f64().unwrap() > 0.0), "{ms:?}");
    json
}

/// Compiles the tiny Llama as `cachemirc compile --generation --max-context CONTEXT
/// --encrypt-from EMBEDDING --slots SLOTS [--params PARAMS --insecure]`
/// does, into `dir/NAME.plan` and its weights.
fn compile(
    models: &Path,
    dir: &Path,
    name: &str,
    context: usize,
    slots: usize,
    params: Option<&str>,
) -> PathBuf {
    let start = Instant::now();
    let GenerationStep {
        approximated: graph,
        generation,
        ..
    } = compile_generation_step(models, LLAMA, context, usize::MAX);
    let weights = format!("{name}.weights.safetensors");
    let lowered = lower(
        &graph,
        &LowerOptions {
            slots,
            period: None,
            weights_file: weights.clone(),
        },
    )
    .unwrap();
    let mut plan = match params {
        Some(params) => {
            // The default (KV-aware) placement; for generation plans it finds none yet and
            // falls back to the greedy waterline, which stores the cache one level below where
            // it is read (see the cpu test).
            let options = LevelOptions::new(by_name(params).unwrap());
            assign_levels(
                &lowered.plan,
                &|site| calibrated_bound(&graph, site),
                &options,
            )
            .unwrap()
            .plan
        }
        None => lowered.plan.clone(),
    };
    plan.generation = Some(generation);
    plan.validate().unwrap();
    std::fs::create_dir_all(dir).unwrap();
    write_weights(&lowered, &graph, &dir.join(&weights)).unwrap();
    let path = dir.join(format!("{name}.plan"));
    std::fs::write(&path, plan.to_bytes().unwrap()).unwrap();
    eprintln!("compiled {} in {:.2?}", path.display(), start.elapsed());
    path
}

/// The 2^15-slot plan of context 40, compiled once per test process.
fn sim_plan(models: &Path) -> &'static Path {
    static PLAN: OnceLock<PathBuf> = OnceLock::new();
    PLAN.get_or_init(|| {
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("generate");
        compile(models, &dir, "llama40", 40, 1 << 15, None)
    })
}

fn tokenizer(models: &Path) -> String {
    arg(&models.join("tokenizer").join("tokenizer.json"))
}

#[test]
fn sim_generates_the_reference_transcript() {
    let Some(models) = models_dir() else { return };
    let reference = Transcript::load(&models, LLAMA);
    let plan = sim_plan(&models);
    let out = cachemir(&[
        "generate",
        &arg(plan),
        "--backend",
        "sim",
        "--tokenizer",
        &tokenizer(&models),
        "--prompt",
        &reference.prompt_text,
        "--tokens",
        "16",
        "--json",
    ]);
    let json = generated(&out);
    assert_eq!(token_ids(&json["prompt_token_ids"]), reference.prompt_ids);
    let got = token_ids(&json["generated_token_ids"]);
    assert_eq!(got.len(), 16);
    let agreed = got
        .iter()
        .zip(&reference.generated_ids)
        .take_while(|(a, b)| a == b)
        .count();
    if agreed < got.len() {
        assert!(
            reference.margins[agreed] <= MARGIN,
            "token {agreed}: {} instead of {} at a reference margin of {}",
            got[agreed],
            reference.generated_ids[agreed],
            reference.margins[agreed]
        );
        eprintln!(
            "tokens from {agreed} on (reference margin {:.3}): {:?}, reference {:?}",
            reference.margins[agreed],
            &got[agreed..],
            &reference.generated_ids[agreed..]
        );
    } else {
        assert_eq!(json["generated_text"], reference.generated_text.as_str());
    }
    eprintln!(
        "sim: {agreed}/16 tokens equal to generation.json; per-token ms {}",
        json["per_token_ms"]
    );
}

#[test]
fn cpu_generates_the_tokens_of_sim_at_toy_parameters() {
    let Some(models) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let plan = compile(&models, scratch.path(), "toy", 16, 2048, Some("ToyBootN12"));
    let plan_arg = arg(&plan);
    let keys = scratch.path().join("keys");
    let tokenizer = tokenizer(&models);
    let decoded = Plan::from_bytes(&std::fs::read(&plan).unwrap()).unwrap();
    let state_levels_agree = decoded.states.iter().all(|state| {
        let level = |ios: &[Ciphertexts], name: &str| {
            ios.iter().find(|io| io.name == name).map(|io| io.level)
        };
        level(&decoded.outputs, &state.output) == level(&decoded.inputs, &state.input)
    });
    // "ROMEO" is one token: `--tokens 2` runs two steps, the second on the first's cache.
    let tokens = if state_levels_agree { "2" } else { "1" };
    let generate = |backend: &str, tokens: &str, extra: &[&str]| {
        let mut args = vec![
            "generate",
            &plan_arg,
            "--backend",
            backend,
            "--tokenizer",
            &tokenizer,
            "--prompt",
            "ROMEO",
            "--tokens",
            tokens,
            "--json",
        ];
        args.extend_from_slice(extra);
        cachemir(&args)
    };
    if !state_levels_agree {
        // A placement that stores the cache below the level it is read at (the greedy
        // waterline): one step only, more refused before any work.
        refused(&generate("sim", "2", &[]), "KV-aware");
        eprintln!("the toy plan's KV-cache levels disagree: one step compared");
    }
    let sim = generated(&generate("sim", tokens, &[]));

    refused(
        &generate("cpu", tokens, &["--keys", &arg(&keys)]),
        "--insecure",
    );
    keygen(&plan, &keys);
    let start = Instant::now();
    let cpu = generated(&generate(
        "cpu",
        tokens,
        &["--keys", &arg(&keys), "--insecure"],
    ));
    eprintln!(
        "cpu (ToyBootN12): tokens {} in {:.2?}, per-token ms {}; sim tokens {}",
        cpu["generated_token_ids"],
        start.elapsed(),
        cpu["per_token_ms"],
        sim["generated_token_ids"]
    );
    assert_eq!(cpu["prompt_token_ids"], json!([859]));
    assert_eq!(cpu["generated_token_ids"], sim["generated_token_ids"]);
    assert_eq!(cpu["generated_text"], sim["generated_text"]);
}

#[test]
fn a_session_resumes_where_it_stopped() {
    let Some(models) = models_dir() else { return };
    let reference = Transcript::load(&models, LLAMA);
    let plan = arg(sim_plan(&models));
    let tokenizer = tokenizer(&models);
    let scratch = tempfile::tempdir().unwrap();
    let generate = |session: Option<&Path>, prompt: Option<&str>, tokens: &str| {
        let mut args = vec![
            "generate".to_string(),
            plan.clone(),
            "--backend".into(),
            "sim".into(),
            "--tokenizer".into(),
            tokenizer.clone(),
            "--tokens".into(),
            tokens.into(),
            "--json".into(),
        ];
        if let Some(prompt) = prompt {
            args.extend(["--prompt".into(), prompt.into()]);
        }
        if let Some(session) = session {
            args.extend(["--session".into(), arg(session)]);
        }
        args
    };
    let run = |args: Vec<String>| {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cachemir(&args)
    };
    let prompt = Some(reference.prompt_text.as_str());

    let whole = generated(&run(generate(None, prompt, "2")));
    let session = scratch.path().join("session");
    let first = generated(&run(generate(Some(&session), prompt, "1")));
    assert_eq!(
        first["generated_token_ids"],
        json!([whole["generated_token_ids"][0]])
    );
    // The prompt comes from the session; another one is refused.
    refused(
        &run(generate(Some(&session), Some("ROMEO"), "1")),
        "continues the prompt",
    );
    let second = generated(&run(generate(Some(&session), None, "1")));
    assert_eq!(second["generated_token_ids"], whole["generated_token_ids"]);
    assert_eq!(second["generated_text"], whole["generated_text"]);
    assert_eq!(second["prompt_token_ids"], whole["prompt_token_ids"]);
    assert_eq!(
        second["per_token_ms"][0], first["per_token_ms"][0],
        "the first token's latency is kept in the session"
    );
    let manifest = read_manifest(&session);
    let prompt_len = reference.prompt_ids.len() as u64;
    assert_eq!(manifest["step"], json!(prompt_len + 1));
    // Nothing left behind: the manifest and the last step's data.
    let mut files: Vec<String> = std::fs::read_dir(&session)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    assert_eq!(
        files,
        [
            "manifest.json",
            &format!("state-{:010}.bin", prompt_len + 1)
        ]
    );

    // Killed (SIGKILL) at a random point of the fifth of eight decode steps, then resumed.
    const TOKENS: usize = 8;
    let whole = generated(&run(generate(None, prompt, &TOKENS.to_string())));
    let killed = scratch.path().join("killed");
    let args = generate(Some(&killed), prompt, &TOKENS.to_string());
    let mut child = Command::new(env!("CARGO_BIN_EXE_cachemir"))
        .args(&args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // The fourth decode step's log line ends it; the fifth is then in flight for ~100 ms.
    let kill_after = format!("step {}:", prompt_len + 2);
    let stderr = BufReader::new(child.stderr.take().unwrap());
    for line in stderr.lines() {
        if line.unwrap().starts_with(&kill_after) {
            break;
        }
    }
    let random_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        % 60;
    std::thread::sleep(std::time::Duration::from_millis(u64::from(random_ms)));
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed before the end");
    let manifest = read_manifest(&killed);
    let done = manifest["metadata"]["generated_token_ids"]
        .as_array()
        .unwrap()
        .len();
    eprintln!(
        "killed {random_ms} ms into decode step 5: session at step {} with {done}/{TOKENS} tokens",
        manifest["step"]
    );
    assert!((3..TOKENS).contains(&done), "{done}");
    let resumed = generated(&run(generate(
        Some(&killed),
        prompt,
        &(TOKENS - done).to_string(),
    )));
    assert_eq!(resumed["generated_token_ids"], whole["generated_token_ids"]);
}

fn read_manifest(session: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(session.join("manifest.json")).unwrap()).unwrap()
}

#[test]
fn bad_usage_exits_2() {
    let Some(models) = models_dir() else { return };
    let reference = Transcript::load(&models, LLAMA);
    let plan = sim_plan(&models);
    let tokenizer = tokenizer(&models);
    let scratch = tempfile::tempdir().unwrap();
    let run_on = |backend: &str, plan: &Path, extra: &[&str]| {
        let mut args = vec![
            "generate".to_string(),
            arg(plan),
            "--backend".into(),
            backend.into(),
            "--tokenizer".into(),
            tokenizer.clone(),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        cachemir(&args)
    };
    let run = |plan: &Path, extra: &[&str]| run_on("sim", plan, extra);
    let prompt = reference.prompt_text.as_str();

    // 18 prompt tokens and 23 more exceed the context of 40.
    refused(
        &run(plan, &["--prompt", prompt, "--tokens", "23"]),
        "18 prompt tokens and 23 more make 41 tokens; the plan's context holds 40",
    );
    refused(&run(plan, &["--tokens", "1"]), "give --prompt");
    refused(
        &run(plan, &["--prompt", prompt, "--tokens", "0"]),
        "--tokens",
    );
    refused(
        &run(
            plan,
            &["--prompt", prompt, "--tokens", "1", "--temperature", "0"],
        ),
        "--temperature 0",
    );
    refused(
        &run(plan, &["--prompt", prompt, "--tokens", "1", "--keys", "k"]),
        "takes no --keys",
    );
    refused(
        &run_on("cpu", plan, &["--prompt", prompt, "--tokens", "1"]),
        "needs --keys",
    );
    refused(
        &cachemir(&[
            "generate",
            &arg(plan),
            "--backend",
            "sim",
            "--tokenizer",
            "missing.json",
            "--prompt",
            prompt,
            "--tokens",
            "1",
        ]),
        "tokenizer missing.json",
    );
    // An unleveled plan has no CKKS parameters to encrypt under.
    refused(
        &run_on(
            "cpu",
            plan,
            &["--prompt", prompt, "--tokens", "1", "--keys", "k"],
        ),
        "the plan has no CKKS parameters",
    );

    // A plan without the generation metadata.
    let mut decoded = Plan::from_bytes(&std::fs::read(plan).unwrap()).unwrap();
    decoded.generation = None;
    let step_plan = plan.with_file_name("step-only.plan");
    std::fs::write(&step_plan, decoded.to_bytes().unwrap()).unwrap();
    refused(
        &run(&step_plan, &["--prompt", prompt, "--tokens", "1"]),
        "not a generation plan",
    );

    // A session of another plan (the same model without the generation metadata differs).
    let session = scratch.path().join("session");
    generated(&run(
        plan,
        &[
            "--prompt",
            "ROMEO",
            "--tokens",
            "1",
            "--json",
            "--session",
            &arg(&session),
        ],
    ));
    let mut other = Plan::from_bytes(&std::fs::read(plan).unwrap()).unwrap();
    other.name.push_str("-other");
    let other_plan = plan.with_file_name("other.plan");
    std::fs::write(&other_plan, other.to_bytes().unwrap()).unwrap();
    refused(
        &run(&other_plan, &["--tokens", "1", "--session", &arg(&session)]),
        "was made for plan",
    );
}

/// A decode step with a KV-cache state at ToyBootN12 (level `b` after bootstrapping):
/// `present = past + x` at `b`, `y = present · x` at `b − 1` (a relinearization key, so two
/// clients' evaluation keys differ).
fn accumulator_plan() -> Plan {
    let ToyStep {
        mut builder,
        x,
        past,
        y,
        present,
        ..
    } = ToyStep::new("accumulator", "none.safetensors");
    let b = &mut builder;
    let next = b.add(x, past);
    b.store(next, present, 0);
    let product = b.multiply(next, x);
    let product = b.rescale(product);
    b.store(product, y, 0);
    builder.build()
}

fn vector(values: [f32; 4]) -> Tensor {
    Tensor::F32(ArrayD::from_shape_vec(IxDyn(&[4]), values.to_vec()).unwrap())
}

#[test]
fn run_session_keeps_the_state_between_two_steps() {
    let scratch = tempfile::tempdir().unwrap();
    let dir = scratch.path();
    let plan = dir.join("acc.plan");
    std::fs::write(&plan, accumulator_plan().to_bytes().unwrap()).unwrap();
    let plan_arg = arg(&plan);
    let keys = dir.join("keys");
    keygen(&plan, &keys);
    let npy = |name: &str, values| {
        let path = dir.join(format!("{name}.npy"));
        write_npy(&path, &vector(values)).unwrap();
        arg(&path)
    };
    let keys_arg = arg(&keys);
    let encrypt = |out: &str, inputs: &[String]| {
        let out = arg(&dir.join(out));
        let mut args = vec!["encrypt", &keys_arg, &plan_arg];
        args.extend(inputs.iter().map(String::as_str));
        args.extend(["-o", &out, "--insecure"]);
        ok(&cachemir(&args))
    };
    let session = arg(&dir.join("session"));
    let run_with = |eval: &Path, input: &str, output: &str| {
        run_plan(
            &plan,
            eval,
            &dir.join(input),
            &dir.join(output),
            &["--session", &session],
        )
    };
    let run = |input: &str, output: &str| run_with(&keys.join("eval"), input, output);
    let decrypt = |ct: &str| -> Vec<f32> {
        let out = dir.join(format!("{ct}.y.npy"));
        ok(&cachemir(&[
            "decrypt",
            &arg(&keys),
            &plan_arg,
            &arg(&dir.join(ct)),
            "-o",
            &arg(&out),
            "--insecure",
        ]));
        match read_npy(&out).unwrap() {
            Tensor::F32(a) => a.iter().copied().collect(),
            other => panic!("{other:?}"),
        }
    };
    let close = |got: &[f32], want: [f32; 4]| {
        let error = got
            .iter()
            .zip(want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(error < 1e-3, "{got:?} vs {want:?}: {error}");
    };

    // Step 1: the state comes from the ciphertext file.
    let x1 = npy("x", [1.0, 2.0, 3.0, 4.0]);
    let past = npy("past", [10.0, 20.0, 30.0, 40.0]);
    encrypt("step1.ct", std::slice::from_ref(&x1));
    refused(&run("step1.ct", "out1.ct"), "has no step yet");
    encrypt("step1.ct", &[x1, past]);
    let stdout = ok(&run("step1.ct", "out1.ct"));
    assert!(
        stdout.contains("step 1 committed (1 state ciphertexts)"),
        "{stdout}"
    );
    close(&decrypt("out1.ct"), [11.0, 44.0, 99.0, 176.0]);

    // Step 2: the client sends x only; the server adds the state it kept (present = 11.5,
    // 22.5, 32, 46).
    let x2 = npy("x", [0.5, 0.5, -1.0, 2.0]);
    let stdout = encrypt("step2.ct", &[x2]);
    assert!(
        stdout.contains("left to the server's session: past"),
        "{stdout}"
    );
    ok(&run("step2.ct", "out2.ct"));
    close(&decrypt("out2.ct"), [5.75, 11.25, -32.0, 92.0]);
    let manifest = read_manifest(Path::new(&session));
    assert_eq!(manifest["step"], json!(2));

    // The same input again would apply step 2 twice.
    refused(&run("step2.ct", "out3.ct"), "was already run at step 2");
    // Keys of another client: the session is bound to the first.
    let other_keys = dir.join("other-keys");
    keygen(&plan, &other_keys);
    refused(
        &run_with(&other_keys.join("eval"), "step2.ct", "out4.ct"),
        "was made for evaluation keys",
    );
}
