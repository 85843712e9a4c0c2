//! `cachemir demo` through the binary at INSECURE toy parameters (`--insecure-toy`:
//! ToyBootN12, N = 2^12, for CI), and `cachemir generate --public-prefix`. The demo's model is
//! embedded in the binary, so these tests need nothing from `../shared/models`.
//!
//! - `cachemir demo --insecure-toy --tokens 2` compiles, reports, makes keys and generates two
//!   tokens encrypted; it prints the text, the per-token latency and the bootstraps, and its
//!   tokens equal those of the `sim` backend on the plan it compiled.
//! - A rerun with the same `--work-dir` reuses the plan and keys and resumes the session:
//!   `--tokens 3` runs one more step.
//! - With a public prefix: the prompt "And I'll" (3 tokens) with `--public-prefix 2` runs two
//!   steps in the clear and one encrypted, and gives the token of the fully encrypted run and of
//!   `sim`. The fully encrypted run of those three tokens is the demo's resumed session: it fed
//!   "And", " I" and "'ll" encrypted, step by step, exactly as a fully encrypted `generate
//!   --prompt "And I'll"` feeds them (the prompt ids are asserted to be those tokens).
//! - Bad options exit 2 before any work.
//!
//! The two generating tests share one demo work folder (compiling and keygen once: about 3
//! minutes in all on two cores, four encrypted steps).

use cachemir_tests::generation::token_ids;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::OnceLock;

#[path = "support/binary.rs"]
mod binary;
use binary::{arg, cachemir, ok, refused, text};

/// The ids of the demo summary's `generated token ids [a, b, …]` line.
fn demo_tokens(stdout: &str) -> Vec<i64> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("generated token ids ["))
        .unwrap_or_else(|| panic!("no token ids in:\n{stdout}"));
    let list = &line[..line.find(']').unwrap()];
    list.split(", ").map(|id| id.parse().unwrap()).collect()
}

/// The demo's first run (`--tokens 2`) in a work folder kept for this test process.
struct Demo {
    work: PathBuf,
    stdout: String,
}

fn demo() -> &'static Demo {
    static DEMO: OnceLock<Demo> = OnceLock::new();
    DEMO.get_or_init(|| {
        let work = Path::new(env!("CARGO_TARGET_TMPDIR")).join("demo-toy");
        if work.exists() {
            std::fs::remove_dir_all(&work).unwrap();
        }
        let out = cachemir(&[
            "demo",
            "--insecure-toy",
            "--tokens",
            "2",
            "--work-dir",
            &arg(&work),
        ]);
        let stdout = ok(&out);
        eprintln!("{stdout}");
        Demo { work, stdout }
    })
}

/// `generate` on the demo's plan with its tokenizer.
fn generate(work: &Path, prompt: &str, tokens: &str, extra: &[&str]) -> Output {
    let plan = arg(&work.join("demo.plan"));
    let tokenizer = arg(&work.join("model").join("tokenizer.json"));
    let mut args = vec![
        "generate",
        &plan,
        "--tokenizer",
        &tokenizer,
        "--prompt",
        prompt,
        "--tokens",
        tokens,
        "--json",
    ];
    args.extend_from_slice(extra);
    cachemir(&args)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(ok(out).trim()).expect("--json prints one object")
}

#[test]
fn demo_generates_the_tokens_of_sim_at_toy_parameters() {
    let demo = demo();
    let stdout = &demo.stdout;
    for needle in [
        "INSECURE toy parameters",
        "[1/3] compile",
        "bootstraps per token: ",
        "estimated latency: ",
        "[2/3] keygen (client)",
        "[3/3] encrypted generation: prompt \"And\", 2 tokens",
        "2 tokens generated in this run (2 in all after a 1-token prompt)",
        "client: held the secret key",
        "never the secret key",
    ] {
        assert!(stdout.contains(needle), "`{needle}` not in:\n{stdout}");
    }
    let got = demo_tokens(stdout);
    let sim = json(&generate(&demo.work, "And", "2", &["--backend", "sim"]));
    assert_eq!(token_ids(&sim["prompt_token_ids"]), [327]);
    assert_eq!(got, token_ids(&sim["generated_token_ids"]));
    // The text streams: after each token, the prompt and the text so far.
    let text = format!("    And{}", sim["generated_text"].as_str().unwrap());
    assert!(
        stdout.lines().any(|l| l == text),
        "`{text}` not in:\n{stdout}"
    );
    // Per-token latency: two positive numbers; each step bootstraps.
    let latencies = stdout
        .lines()
        .find_map(|l| l.strip_prefix("per-token latency (ms): "))
        .expect("a per-token latency line");
    let ms: Vec<f64> = latencies
        .split(';')
        .next()
        .unwrap()
        .split(", ")
        .map(|v| v.parse().unwrap())
        .collect();
    assert_eq!(ms.len(), 2, "{latencies}");
    assert!(ms.iter().all(|&v| v > 0.0), "{latencies}");
    let boots = stdout
        .lines()
        .find_map(|l| l.strip_prefix("bootstraps per step: "))
        .expect("a bootstraps line");
    assert!(
        boots.ends_with(')') && boots.contains(" × 2 steps"),
        "{boots}"
    );
    assert!(demo.work.join("report.txt").exists());
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(demo.work.join("keys").join("secret.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}

#[test]
fn a_public_prefix_gives_the_tokens_of_the_fully_encrypted_run() {
    let demo = demo();
    let work = &demo.work;
    let first = demo_tokens(&demo.stdout);

    // The fully encrypted run: the demo resumed to a third token (one more encrypted step).
    let resumed = ok(&cachemir(&[
        "demo",
        "--insecure-toy",
        "--tokens",
        "3",
        "--work-dir",
        &arg(work),
    ]));
    assert_eq!(resumed.matches("  reusing ").count(), 2, "{resumed}");
    assert!(
        resumed.contains("1 tokens generated in this run (3 in all after a 1-token prompt)"),
        "{resumed}"
    );
    let full = demo_tokens(&resumed);
    assert_eq!(full[..2], first[..], "the resumed session keeps its tokens");

    let sim = json(&generate(work, "And I'll", "1", &["--backend", "sim"]));
    assert_eq!(
        token_ids(&sim["prompt_token_ids"]),
        [327, first[0], first[1]],
        "the prompt is the demo's fed tokens"
    );
    let keys = arg(&work.join("keys"));
    let out = generate(
        work,
        "And I'll",
        "1",
        &["--keys", &keys, "--insecure", "--public-prefix", "2"],
    );
    let prefixed = json(&out);
    let stderr = text(&out.stderr);
    eprintln!("{stderr}");
    assert!(
        stderr.contains("public prefix: the first 2 prompt tokens (\"And I\") ran in the clear"),
        "{stderr}"
    );
    assert!(stderr.contains("s saved"), "{stderr}");
    // Steps 0 and 1 ran in the clear: the only encrypted step is the third.
    assert!(stderr.contains("step 2: prompt token 3/3"), "{stderr}");
    assert!(!stderr.contains("step 1:"), "{stderr}");
    let token = token_ids(&prefixed["generated_token_ids"]);
    assert_eq!(token, [full[2]], "the fully encrypted run's token");
    assert_eq!(token, token_ids(&sim["generated_token_ids"]), "sim's token");
    // And on sim, a public prefix changes nothing.
    let sim_prefixed = json(&generate(
        work,
        "And I'll",
        "1",
        &["--backend", "sim", "--public-prefix", "2"],
    ));
    assert_eq!(
        sim_prefixed["generated_token_ids"],
        sim["generated_token_ids"]
    );

    // A prefix must leave a private prompt token.
    refused(
        &generate(
            work,
            "And I'll",
            "1",
            &["--backend", "sim", "--public-prefix", "3"],
        ),
        "the prompt has 3 tokens; at most 2 can run in the clear",
    );
    // The keys (200 MB) are not needed any more.
    std::fs::remove_dir_all(work.join("keys")).unwrap();
}

#[test]
fn bad_demo_options_exit_2_before_any_work() {
    let scratch = tempfile::tempdir().unwrap();
    let work = arg(scratch.path());
    refused(
        &cachemir(&[
            "demo",
            "--insecure-toy",
            "--max-context",
            "8",
            "--work-dir",
            &work,
        ]),
        "--max-context 8: the demo model's calibration samples hold 15 past tokens",
    );
    refused(
        &cachemir(&[
            "demo",
            "--insecure-toy",
            "--tokens",
            "16",
            "--work-dir",
            &work,
        ]),
        "the prompt's 1 tokens and --tokens 16 make 17; --max-context 16 holds fewer",
    );
    refused(
        &cachemir(&[
            "demo",
            "--insecure-toy",
            "--public-prefix",
            "1",
            "--work-dir",
            &work,
        ]),
        "--public-prefix 1: the prompt has 1 tokens",
    );
    assert!(
        !scratch.path().join("demo.json").exists(),
        "refused before claiming the folder"
    );
    std::fs::write(scratch.path().join("demo.json"), "{}").unwrap();
    refused(
        &cachemir(&["demo", "--insecure-toy", "--work-dir", &work]),
        "holds a demo made for other options (unreadable)",
    );
}
