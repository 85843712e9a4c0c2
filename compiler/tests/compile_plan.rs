//! `cachemirc compile MODEL … -o model.plan` then `cachemir run model.plan --backend sim` end to
//! end on the shared tiny decoders at 2^15 slots: the `cachemirc` binary compiles (plan, weights
//! next to it, summary), `cachemir run` executes the plan file on case0 and case1 (through
//! `cachemir_cli::run`, the code the `cachemir` binary runs; its own tests cover the binary's
//! arguments and exit codes), and the `.npy` files it writes are compared with onnxruntime's
//! outputs. Also: the plan file round-trips, `--emit plan-json` and `--emit asm` describe the same
//! plan, the summary of tiny Llama is snapshotted, and bad usage exits 2. With `--params
//! N16BootFull` the plan is leveled: `cachemir run` executes it with levels enforced and
//! `cachemirc report --json` describes its parameters, levels and bootstraps.

use cachemir_cli::run::{BackendArg, RunArgs, run};
use cachemir_compiler::reference::{Case, compare, models_dir, output_file_name};
use cachemir_ir::Tensor;
use cachemir_ir::npy::read_npy;
use cachemir_ir::plan::Plan;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[path = "support/binary.rs"]
mod binary;
use binary::{cachemirc, text};

/// Where the client's encryption starts: the token embedding (as `cachemir_tests::embedding_output`).
fn embedding_output(model: &str) -> &'static str {
    if model.starts_with("tiny_llama") {
        "/model/model/embed_tokens/Gather_output_0"
    } else {
        "/model/transformer/Add_output_0"
    }
}

/// The arguments of `cachemirc compile` for a shared model with its calibration set and case0
/// as the sample, writing to `output`, then `extra`.
fn compile_args(dir: &Path, model: &str, output: &Path, extra: &[&str]) -> Vec<String> {
    let path = |p: PathBuf| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = vec![
        "compile".into(),
        path(dir.join(format!("{model}.onnx"))),
        "--calibration".into(),
        path(dir.join(model).join("calib.json")),
        "--sample".into(),
        path(dir.join(model).join("case0.json")),
        "--encrypt-from".into(),
        embedding_output(model).into(),
        "-o".into(),
        path(output.to_path_buf()),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    args
}

/// `cachemirc compile` of a shared model (see [`compile_args`]); returns stdout after asserting
/// success.
fn compile(dir: &Path, model: &str, output: &Path, extra: &[&str]) -> String {
    let args = compile_args(dir, model, output, extra);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let start = Instant::now();
    let out = cachemirc(&args);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "cachemirc {}\n{stdout}\n{}",
        args.join(" "),
        text(&out.stderr)
    );
    eprintln!(
        "{model}: cachemirc compile -o {} in {:.2?}",
        output.file_name().unwrap().to_string_lossy(),
        start.elapsed()
    );
    stdout
}

/// `cachemir run PLAN --backend sim --inputs CASE --out OUT`, timed.
fn run_on_sim(plan: &Path, case: &Path, out: &Path, label: &str) {
    let start = Instant::now();
    run(&RunArgs {
        plan: plan.to_path_buf(),
        backend: BackendArg::Sim,
        inputs: case.to_path_buf(),
        out: out.to_path_buf(),
    })
    .unwrap_or_else(|e| panic!("{label}: cachemir run: {e:#}"));
    eprintln!("{label}: cachemir run in {:.2?}", start.elapsed());
}

/// The summary without the lines naming files or giving times.
fn stable_summary(stdout: &str) -> String {
    stdout
        .lines()
        .filter(|l| !l.starts_with("wrote ") && !l.starts_with("compiled in "))
        .map(|l| format!("{l}\n"))
        .collect()
}

fn f64s(t: &Tensor) -> Vec<f64> {
    t.to_f64().iter().copied().collect()
}

/// Compiles `model` to `<scratch>/<model>.plan`, checks the plan file and its weights, runs case0
/// and case1 with `cachemir run --backend sim` and compares with onnxruntime. Returns the compile
/// stdout and the plan.
fn compile_and_run(dir: &Path, scratch: &Path, model: &str) -> (String, Plan) {
    let plan_path = scratch.join(format!("{model}.plan"));
    let stdout = compile(dir, model, &plan_path, &[]);

    // The plan file round-trips, and its weights file lies next to it under the name it states.
    let bytes = std::fs::read(&plan_path).unwrap();
    let plan = Plan::from_bytes(&bytes).unwrap();
    assert_eq!(
        plan.to_bytes().unwrap(),
        bytes,
        "{model}: binary round trip"
    );
    assert_eq!(Plan::from_bytes(&plan.to_bytes().unwrap()).unwrap(), plan);
    assert_eq!(plan.weights, format!("{model}.weights.safetensors"));
    assert!(scratch.join(&plan.weights).is_file(), "{model}: no weights");
    assert_eq!(plan.slots, 1 << 15);
    assert!(
        stdout.contains(&format!("wrote {}", plan_path.display())),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("instructions: {} over", plan.instructions.len())),
        "{stdout}"
    );

    for index in 0..2 {
        let case_path = dir.join(model).join(format!("case{index}.json"));
        let out = scratch.join(format!("{model}.case{index}"));
        run_on_sim(
            &plan_path,
            &case_path,
            &out,
            &format!("{model} case{index}"),
        );
        let case = Case::load(&case_path).unwrap();
        let mut presents = 0;
        for (name, path) in &case.expected {
            let expected = read_npy(path).unwrap();
            let got = read_npy(&out.join(output_file_name(name))).unwrap();
            assert_eq!(got.shape(), expected.shape(), "{model} case{index} {name}");
            let c = compare(name, &got, &expected, None).unwrap();
            eprintln!(
                "{model} case{index} {name}: max abs error {:.3e} (max |ref| {:.3}), argmax {:?}",
                c.max_abs_error, c.max_abs_reference, c.same_argmax
            );
            if name == "logits" {
                assert_eq!(
                    c.same_argmax.0, c.same_argmax.1,
                    "{model} case{index}: the next token changed"
                );
                assert!(
                    c.max_abs_error <= 0.05,
                    "{model} case{index}: logits off by {:.3e}",
                    c.max_abs_error
                );
            } else {
                // The new cache row is one projection of an approximated norm's output; the past
                // rows pass through unchanged (up to f32 rounding).
                assert!(name.starts_with("present."), "{name}");
                presents += 1;
                assert!(
                    c.max_abs_error <= 0.01,
                    "{model} case{index} {name}: off by {:.3e}",
                    c.max_abs_error
                );
                let (g, e) = (f64s(&got), f64s(&expected));
                let &[_, _, rows, width] = expected.shape() else {
                    panic!("{name}: shape {:?}", expected.shape())
                };
                let past_error = g
                    .iter()
                    .zip(&e)
                    .enumerate()
                    .filter(|(i, _)| (i / width) % rows < rows - 1)
                    .map(|(_, (a, b))| (a - b).abs())
                    .fold(0.0, f64::max);
                assert!(
                    past_error <= 1e-5,
                    "{model} case{index} {name}: the past rows changed by {past_error:.3e}"
                );
            }
        }
        assert!(presents > 0, "{model}: no present.* state compared");
    }
    (stdout, plan)
}

/// `a == b`, naming the first part that differs.
fn assert_same_plan(a: &Plan, b: &Plan) {
    if a == b {
        return;
    }
    assert_eq!(a.instructions.len(), b.instructions.len());
    for (k, (x, y)) in a.instructions.iter().zip(&b.instructions).enumerate() {
        assert_eq!(x, y, "instruction {k}");
    }
    for (k, (x, y)) in a.plaintexts.iter().zip(&b.plaintexts).enumerate() {
        assert_eq!(x, y, "plaintext {k}");
    }
    for (k, (x, y)) in a.checks.iter().zip(&b.checks).enumerate() {
        assert_eq!(x, y, "range check {k}");
    }
    assert_eq!(a.inputs, b.inputs);
    assert_eq!(a.outputs, b.outputs);
    assert_eq!(a.client_program, b.client_program);
    assert_eq!(a.public_program, b.public_program);
    assert_eq!(a.sites, b.sites);
    panic!("the plans differ");
}

fn scratch() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn tiny_llama_compiles_to_a_plan_that_runs_on_sim() {
    let Some(dir) = models_dir() else { return };
    let model = "tiny_llama_decode_step_p15_ts17";
    let scratch = scratch();
    let (stdout, plan) = compile_and_run(&dir, scratch.path(), model);
    insta::assert_snapshot!("tiny_llama_compile_summary", stable_summary(&stdout));

    // `--emit plan-json`: the same plan as JSON (compiling is deterministic), weights alongside.
    // (`compile` creates the output's folder.)
    let json_path = scratch.path().join("json/llama.plan.json");
    let json_stdout = compile(&dir, model, &json_path, &["--emit", "plan-json"]);
    let mut from_json: Plan = serde_json::from_slice(&std::fs::read(&json_path).unwrap()).unwrap();
    assert_eq!(from_json.weights, "llama.weights.safetensors");
    assert!(
        scratch
            .path()
            .join("json/llama.weights.safetensors")
            .is_file()
    );
    from_json.weights = plan.weights.clone();
    assert_same_plan(&from_json, &plan);
    assert_eq!(stable_summary(&json_stdout), stable_summary(&stdout));
}

#[test]
fn tiny_gpt2_compiles_to_a_plan_that_runs_on_sim() {
    let Some(dir) = models_dir() else { return };
    let model = "tiny_gpt2_decode_step_p15_ts17";
    let scratch = scratch();
    let (_, plan) = compile_and_run(&dir, scratch.path(), model);

    // `--emit asm`: the disassembly, one line per instruction under its site; no weights. With
    // `--verbose`, the summary lists the kernels.
    let asm_path = scratch.path().join("gpt2.asm");
    let stdout = compile(&dir, model, &asm_path, &["--emit", "asm", "--verbose"]);
    let asm = std::fs::read_to_string(&asm_path).unwrap();
    assert_eq!(asm, plan.disassemble());
    assert!(!scratch.path().join("gpt2.weights.safetensors").exists());
    assert!(stdout.contains("kernels ("), "{stdout}");
    let instructions = asm.lines().filter(|l| !l.starts_with(';')).count();
    assert_eq!(instructions, plan.instructions.len());
}

#[test]
fn plan_emits_reject_bad_usage_with_exit_2() {
    let model = PathBuf::from("model.onnx");
    let model = model.to_str().unwrap();
    for (args, message) in [
        (vec!["--emit", "plan"], "-o FILE.plan"),
        (vec!["-o", "x.plan", "--slots", "1000"], "power of two"),
        (vec!["-o", "x.plan", "--period", "0"], "--period 0"),
        (
            vec!["-o", "x.plan", "--stop-after", "decompose"],
            "stops before the slot-level lowering",
        ),
    ] {
        let mut full = vec!["compile", model];
        full.extend(args.iter().copied());
        let out = cachemirc(&full);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            text(&out.stderr)
        );
        assert!(
            text(&out.stderr).contains(message),
            "{args:?}: {}",
            text(&out.stderr)
        );
    }
    let out = cachemirc(&["compile", model, "--emit", "nonsense"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn a_lowering_error_names_the_node_and_exits_2() {
    let Some(dir) = models_dir() else { return };
    // Without `--encrypt-from`, only GPT-2's KV cache is encrypted: the new key row is public
    // and the cache's Concat mixes the two.
    let model = "tiny_gpt2_decode_step_p15_ts17";
    let scratch = scratch();
    let plan = scratch.path().join("gpt2.plan");
    let out = cachemirc(&[
        "compile",
        dir.join(format!("{model}.onnx")).to_str().unwrap(),
        "--calibration",
        dir.join(model).join("calib.json").to_str().unwrap(),
        "--sample",
        dir.join(model).join("case0.json").to_str().unwrap(),
        "-o",
        plan.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("lowering: present.0.key (Concat)") && stderr.contains("--encrypt-from"),
        "{stderr}"
    );
    assert!(!plan.exists());
}

/// `cachemirc compile … --params N16BootFull`: a leveled plan (128-bit, N = 2^16) that
/// `cachemir run --backend sim` executes with levels enforced (the VM traces the levels before
/// any work and checks every bootstrap input), the next token unchanged; `cachemirc report
/// --json` sees the parameters, the levels and the bootstraps.
#[test]
fn tiny_llama_compiles_leveled_and_runs_on_sim() {
    let Some(dir) = models_dir() else { return };
    let model = "tiny_llama_decode_step_p15_ts17";
    let scratch = scratch();
    let plan_path = scratch.path().join("llama.plan");
    let stdout = compile(&dir, model, &plan_path, &["--params", "N16BootFull"]);
    let levels_line = stdout
        .lines()
        .find(|l| l.starts_with("levels: "))
        .unwrap_or_else(|| panic!("no levels line:\n{stdout}"));
    eprintln!("{model}: {levels_line}");
    assert!(levels_line.contains("N16BootFull"), "{levels_line}");

    let plan = Plan::from_bytes(&std::fs::read(&plan_path).unwrap()).unwrap();
    let parameters = plan
        .parameters
        .as_ref()
        .expect("a leveled plan has parameters");
    assert_eq!(parameters.name, "N16BootFull");
    assert_eq!(parameters.log_n, 16);
    assert!(!parameters.toy);
    assert!(scratch.path().join(&plan.weights).is_file());

    let case_path = dir.join(model).join("case0.json");
    let out = scratch.path().join("case0");
    run_on_sim(
        &plan_path,
        &case_path,
        &out,
        &format!("{model} case0 leveled"),
    );
    let case = Case::load(&case_path).unwrap();
    let (name, path) = case.expected.iter().find(|(n, _)| n == "logits").unwrap();
    let expected = read_npy(path).unwrap();
    let got = read_npy(&out.join(output_file_name(name))).unwrap();
    let c = compare(name, &got, &expected, None).unwrap();
    eprintln!(
        "{model} case0 leveled: logits max abs error {:.3e}, argmax {:?}",
        c.max_abs_error, c.same_argmax
    );
    assert_eq!(c.same_argmax.0, c.same_argmax.1, "the next token changed");
    assert!(c.max_abs_error <= 0.05, "{:.3e}", c.max_abs_error);

    let out = cachemirc(&["report", plan_path.to_str().unwrap(), "--json"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["parameters"]["name"], "N16BootFull");
    assert_eq!(report["parameters"]["log_n"], 16);
    assert_eq!(report["parameters"]["toy"], false);
    assert!(report["latency"]["assumed_level"].is_null());
    let total = &report["total"];
    let boots = total["bootstraps"].as_u64().unwrap();
    assert!(boots > 0, "{total}");
    // One `boot` per bootstrapped ciphertext, as the compile summary counts them.
    assert!(
        levels_line.contains(&format!(" {boots} bootstrapped ciphertexts at ")),
        "{levels_line}"
    );
    assert!(total["rescales"].as_u64().unwrap() > 0);
    assert_eq!(report["bootstraps"].as_array().unwrap().len() as u64, boots);
    for b in report["bootstraps"].as_array().unwrap() {
        let (input, output) = (b["input_level"].as_u64(), b["output_level"].as_u64());
        assert_eq!(output, parameters.bootstrap_level.map(u64::from), "{b}");
        assert_eq!(
            b["levels_restored"].as_u64(),
            Some(output.unwrap() - input.unwrap()),
            "{b}"
        );
    }
    let profile = total["level_profile"].as_array().expect("a level profile");
    assert!(!profile.is_empty());
    assert!(
        profile
            .iter()
            .all(|p| p["level"].as_u64().unwrap() <= u64::from(parameters.max_level))
    );
    let profiled: u64 = profile
        .iter()
        .map(|p| p["instructions"].as_u64().unwrap())
        .sum();
    assert_eq!(profiled, report["instructions"].as_u64().unwrap());
    assert!(report["memory"]["peak_bytes"].is_u64());
    assert!(report["keys"]["total_bytes"].is_u64());
    assert!(report["decode"]["state_bytes"].is_u64());
    eprintln!(
        "{model} leveled report: {boots} bootstraps, {} rescales, estimated {:.1} s per token",
        total["rescales"],
        report["decode"]["latency_ms_per_token"].as_f64().unwrap() / 1e3
    );
}

/// `--params` names a checked set; a toy (insecure) one needs `--insecure`.
#[test]
fn bad_params_exit_2() {
    let Some(dir) = models_dir() else { return };
    let model = "tiny_llama_decode_step_p15_ts17";
    let scratch = scratch();
    for (params, messages) in [
        ("ToyBootN12", &["--insecure"][..]),
        ("Nonsense", &["Nonsense", "N16BootFull", "ToyBootN12"][..]),
    ] {
        let plan = scratch.path().join(format!("{params}.plan"));
        let args = compile_args(&dir, model, &plan, &["--params", params]);
        let out = cachemirc(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "--params {params}: {stderr}");
        for m in messages {
            assert!(stderr.contains(m), "--params {params}: {stderr}");
        }
        assert!(!plan.exists(), "--params {params}: a plan was written");
    }
}
