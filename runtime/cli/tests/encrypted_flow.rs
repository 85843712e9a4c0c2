//! The client/server flow through the `cachemir` binary on the tiny Llama decode step compiled
//! at ToyBootN12 (N = 2^12, 2048 slots, INSECURE, for CI; compiled with the compiler library and
//! the greedy bootstrap placement, plan and weights written as `cachemirc compile` writes them):
//! `keygen` → `encrypt` (case0's inputs) → `run` (CKKS, bootstraps) → `decrypt` (noise-flooded),
//! the logits compared with onnxruntime's. Then bad usage exits 2 before any work: a toy set
//! without `--insecure`, keys made for another plan, a ciphertext file of another plan, a
//! corrupted plan file.

use cachemir_compiler::levels::Strategy;
use cachemir_compiler::lower::weights::write_weights;
use cachemir_compiler::reference::{Case, compare, models_dir, output_file_name};
use cachemir_ir::layout::Layout;
use cachemir_ir::npy::read_npy;
use cachemir_ir::plan::Plan;
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_tests::compile_leveled;
use std::path::Path;
use std::time::Instant;

#[path = "support/binary.rs"]
mod binary;
use binary::{arg, cachemir, insecure_only, keygen, ok, refused, run_plan};

const MODEL: &str = "tiny_llama_decode_step_p15_ts17";
const SLOTS: usize = 2048;

/// Writes the tiny Llama plan (and its weights next to it) at ToyBootN12.
fn compile(dir: &Path, scratch: &Path) -> (std::path::PathBuf, Plan) {
    // The KV-aware placement finds no placement at this slot count (see
    // tests/tests/encrypted_tiny_llama.rs); the greedy waterline does.
    let (graph, lowered, plan) = compile_leveled(dir, MODEL, SLOTS, "ToyBootN12", Strategy::Greedy);
    write_weights(&lowered, &graph, &scratch.join(&plan.weights)).unwrap();
    let path = scratch.join("llama.plan");
    std::fs::write(&path, plan.to_bytes().unwrap()).unwrap();
    (path, plan)
}

/// A one-rotation plan at ToyBootN12 over the same slots (cheap keys that the Llama plan cannot
/// use).
fn other_plan(like: &Plan) -> Plan {
    let layout = Layout::row_major(&[SLOTS], SLOTS);
    let mut b = PlanBuilder::new("other", like.slots);
    b.parameters(like.parameters.clone().expect("a leveled plan"))
        .weights(&like.weights);
    let x = b.input("x", &layout, Some(3));
    let y = b.output("y", &layout, Some(3));
    let site = &like.sites[0];
    b.site(&site.name, &site.source, site.layer);
    let v = b.load(x, 0);
    let v = b.rotate(v, 1);
    b.store(v, y, 0);
    b.build()
}

#[test]
fn keygen_encrypt_run_decrypt_on_tiny_llama() {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let (plan_path, plan) = compile(&dir, scratch.path());
    let plan_arg = arg(&plan_path);
    let keys = scratch.path().join("keys");
    let case_path = dir.join(MODEL).join("case0.json");
    let ct_in = scratch.path().join("in.ct");
    let ct_out = scratch.path().join("out.ct");
    let out_dir = scratch.path().join("out");

    // A toy set needs --insecure, at every step.
    let stdout = insecure_only(&["keygen", &plan_arg, "-o", &arg(&keys)]);
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

    insecure_only(&[
        "encrypt",
        &arg(&keys),
        &plan_arg,
        &arg(&case_path),
        "-o",
        &arg(&ct_in),
    ]);

    let start = Instant::now();
    let stdout = ok(&run_plan(
        &plan_path,
        &keys.join("eval"),
        &ct_in,
        &ct_out,
        &["--threads", "2"],
    ));
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
        &arg(&keys),
        &plan_arg,
        &arg(&ct_out),
        "-o",
        &arg(&out_dir),
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
    keygen(&other_path, &other_keys);
    let other_eval = other_keys.join("eval");
    refused(
        &run_plan(&plan_path, &other_eval, &ct_in, &ct_out, &[]),
        "the evaluation keys lack",
    );
    // A ciphertext file made for another plan is refused, naming both plan hashes.
    refused(
        &run_plan(&other_path, &other_eval, &ct_in, &ct_out, &[]),
        &format!("was made for plan {}", plan.content_hash().unwrap()),
    );
    // A corrupted plan file.
    let mut bytes = std::fs::read(&plan_path).unwrap();
    bytes.truncate(bytes.len() / 2);
    let broken = scratch.path().join("broken.plan");
    std::fs::write(&broken, bytes).unwrap();
    refused(
        &cachemir(&[
            "keygen",
            &arg(&broken),
            "-o",
            &arg(&other_keys),
            "--insecure",
        ]),
        "broken.plan",
    );
}
