//! The client/server flow through the `cachemir` binary on the tiny Llama decode step compiled
//! at ToyBootN12 (N = 2^12, 2048 slots, INSECURE, for CI; compiled with the compiler library and
//! the greedy bootstrap placement, plan and weights written as `cachemirc compile` writes them):
//! `keygen` → `encrypt` (case0's inputs) → `run` (CKKS, bootstraps) → `decrypt` (noise-flooded),
//! the logits compared with onnxruntime's. Then bad usage exits 2 before any work: a toy set
//! without `--insecure`, keys made for another plan, a ciphertext file of another plan, a
//! corrupted plan file.

use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, Strategy, assign_levels, calibrated_bound};
use cachemir_compiler::lower::weights::write_weights;
use cachemir_compiler::reference::{Case, compare, models_dir, output_file_name};
use cachemir_ir::layout::Layout;
use cachemir_ir::npy::read_npy;
use cachemir_ir::plan::{Ciphertexts, Dst, Instruction, Io, Part, Plan, Src, Step};
use cachemir_tests::{approximated, lower_model_at};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

const MODEL: &str = "tiny_llama_decode_step_p15_ts17";
const SLOTS: usize = 2048;

fn cachemir(args: &[&str]) -> Output {
    let start = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_cachemir"))
        .args(args)
        .output()
        .expect("run cachemir");
    eprintln!(
        "cachemir {} → {:?} in {:.2?}",
        args.first().unwrap_or(&""),
        out.status.code(),
        start.elapsed()
    );
    out
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn ok(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    stdout
}

/// Exit code 2 with `needle` in the error.
fn refused(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

/// Writes the tiny Llama plan (and its weights next to it) at ToyBootN12.
fn compile(dir: &Path, scratch: &Path) -> (std::path::PathBuf, Plan) {
    let (_, graph, _) = approximated(dir, MODEL, usize::MAX);
    let lowered = lower_model_at(&graph, MODEL, SLOTS);
    let mut options = LevelOptions::new(by_name("ToyBootN12").unwrap());
    // The KV-aware placement finds no placement at this slot count (see
    // tests/tests/encrypted_tiny_llama.rs); the greedy waterline does.
    options.strategy = Strategy::Greedy;
    let plan = assign_levels(
        &lowered.plan,
        &|site| calibrated_bound(&graph, site),
        &options,
    )
    .unwrap()
    .plan;
    write_weights(&lowered, &graph, &scratch.join(&plan.weights)).unwrap();
    let path = scratch.join("llama.plan");
    std::fs::write(&path, plan.to_bytes().unwrap()).unwrap();
    (path, plan)
}

/// A one-rotation plan at ToyBootN12 over the same slots (cheap keys that the Llama plan cannot
/// use).
fn other_plan(like: &Plan) -> Plan {
    let layout = Layout::row_major(&[SLOTS], SLOTS);
    let io = |name: &str| Ciphertexts {
        name: name.into(),
        layout: layout.clone(),
        level: Some(3),
    };
    Plan {
        name: "other".into(),
        weight_shapes: Default::default(),
        client_program: String::new(),
        public_program: String::new(),
        public_inputs: vec![],
        inputs: vec![io("x")],
        outputs: vec![io("y")],
        states: vec![],
        plaintexts: vec![],
        rotations: vec![1],
        registers: 2,
        instructions: vec![
            Instruction::Load {
                dst: Dst(0),
                input: Io(0),
                part: Part(0),
            },
            Instruction::Rotate {
                dst: Dst(1),
                a: Src(0),
                step: Step(1),
            },
            Instruction::Store {
                src: Src(1),
                output: Io(0),
                part: Part(0),
            },
        ],
        instruction_sites: vec![0; 3],
        sites: like.sites[..1].to_vec(),
        checks: vec![],
        ..like.clone()
    }
}

#[test]
fn keygen_encrypt_run_decrypt_on_tiny_llama() {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let s = |p: &Path| p.to_str().unwrap().to_string();
    let (plan_path, plan) = compile(&dir, scratch.path());
    let plan_arg = s(&plan_path);
    let keys = scratch.path().join("keys");
    let case_path = dir.join(MODEL).join("case0.json");
    let ct_in = scratch.path().join("in.ct");
    let ct_out = scratch.path().join("out.ct");
    let out_dir = scratch.path().join("out");

    // A toy set needs --insecure, at every step.
    refused(
        &cachemir(&["keygen", &plan_arg, "-o", &s(&keys)]),
        "--insecure",
    );

    let stdout = ok(&cachemir(&[
        "keygen",
        &plan_arg,
        "-o",
        &s(&keys),
        "--insecure",
    ]));
    assert!(stdout.contains("total key bytes"), "{stdout}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(keys.join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    assert!(keys.join("eval/keys.json").is_file());
    assert!(!keys.join("eval/secret.key").exists());

    refused(
        &cachemir(&[
            "encrypt",
            &s(&keys),
            &plan_arg,
            &s(&case_path),
            "-o",
            &s(&ct_in),
        ]),
        "--insecure",
    );
    ok(&cachemir(&[
        "encrypt",
        &s(&keys),
        &plan_arg,
        &s(&case_path),
        "-o",
        &s(&ct_in),
        "--insecure",
    ]));

    let start = Instant::now();
    let stdout = ok(&cachemir(&[
        "run",
        &plan_arg,
        "--keys",
        &s(&keys.join("eval")),
        "--input",
        &s(&ct_in),
        "-o",
        &s(&ct_out),
        "--threads",
        "2",
        "--insecure",
    ]));
    let boots = plan.counts().get("boot").copied().unwrap_or(0);
    assert!(
        stdout.contains(&format!("bootstraps {boots} in")),
        "{stdout}"
    );
    eprintln!(
        "{MODEL}: cachemir run (encrypted, {boots} bootstraps) in {:.2?}",
        start.elapsed()
    );

    ok(&cachemir(&[
        "decrypt",
        &s(&keys),
        &plan_arg,
        &s(&ct_out),
        "-o",
        &s(&out_dir),
        "--insecure",
    ]));
    let case = Case::load(&case_path).unwrap();
    let (name, path) = case.expected.iter().find(|(n, _)| n == "logits").unwrap();
    let expected = read_npy(path).unwrap();
    let got = read_npy(&out_dir.join(output_file_name(name))).unwrap();
    let c = compare(name, &got, &expected, None).unwrap();
    eprintln!(
        "{MODEL} case0 through the CLI: logits max abs error {:.3e}, argmax {:?}",
        c.max_abs_error, c.same_argmax
    );
    assert!(c.max_abs_error <= 0.1, "{:.3e}", c.max_abs_error);
    assert_eq!(c.same_argmax.0, c.same_argmax.1, "the next token changed");
    // Every output is decrypted, named as `run --backend sim` names them.
    for io in &plan.outputs {
        assert!(
            out_dir.join(output_file_name(&io.name)).is_file(),
            "{}",
            io.name
        );
    }

    // Keys made for another plan lack the Llama plan's keys: refused before any work.
    let other = other_plan(&plan);
    let other_path = scratch.path().join("other.plan");
    std::fs::write(&other_path, other.to_bytes().unwrap()).unwrap();
    let other_keys = scratch.path().join("other-keys");
    ok(&cachemir(&[
        "keygen",
        &s(&other_path),
        "-o",
        &s(&other_keys),
        "--insecure",
    ]));
    refused(
        &cachemir(&[
            "run",
            &plan_arg,
            "--keys",
            &s(&other_keys.join("eval")),
            "--input",
            &s(&ct_in),
            "-o",
            &s(&ct_out),
            "--insecure",
        ]),
        "the evaluation keys lack",
    );
    // A ciphertext file made for another plan is refused, naming both plan hashes.
    refused(
        &cachemir(&[
            "run",
            &s(&other_path),
            "--keys",
            &s(&other_keys.join("eval")),
            "--input",
            &s(&ct_in),
            "-o",
            &s(&ct_out),
            "--insecure",
        ]),
        &format!("was made for plan {}", plan.content_hash().unwrap()),
    );
    // A corrupted plan file.
    let mut bytes = std::fs::read(&plan_path).unwrap();
    bytes.truncate(bytes.len() / 2);
    let broken = scratch.path().join("broken.plan");
    std::fs::write(&broken, bytes).unwrap();
    refused(
        &cachemir(&["keygen", &s(&broken), "-o", &s(&other_keys), "--insecure"]),
        "broken.plan",
    );
}
