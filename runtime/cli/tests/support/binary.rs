//! Running the `cachemir` binary from the CLI's integration tests: output captured, exit status
//! checked.

// Each test target includes this module and uses a part of it.
#![allow(dead_code)]

use std::path::Path;
use std::process::{Command, Output};
use std::time::Instant;

/// `cachemir ARGS…`, its status and output captured; the subcommand, exit code and wall time
/// printed.
pub fn cachemir(args: &[&str]) -> Output {
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

/// Captured output as text.
pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The standard output of a command that must succeed.
///
/// # Panics
/// On a failure, with both outputs.
pub fn ok(out: &Output) -> String {
    let stdout = text(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", text(&out.stderr));
    stdout
}

/// Asserts exit code 2 with `needle` in the error.
pub fn refused(out: &Output, needle: &str) {
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(needle), "`{needle}` not in: {stderr}");
}

/// `cachemir ARGS…` on a toy parameter set: refused (exit 2, naming `--insecure`) as given, then
/// run with `--insecure`, which must succeed; its standard output.
pub fn insecure_only(args: &[&str]) -> String {
    refused(&cachemir(args), "--insecure");
    ok(&cachemir(&[args, &["--insecure"]].concat()))
}

/// `cachemir keygen PLAN -o KEYS --insecure`, which must succeed; its standard output.
pub fn keygen(plan: &Path, keys: &Path) -> String {
    ok(&cachemir(&[
        "keygen",
        &arg(plan),
        "-o",
        &arg(keys),
        "--insecure",
    ]))
}

/// `cachemir run PLAN --keys EVAL --input INPUT -o OUTPUT --insecure EXTRA…`, `EVAL` being the
/// evaluation keys' folder.
pub fn run_plan(plan: &Path, eval: &Path, input: &Path, output: &Path, extra: &[&str]) -> Output {
    let (plan, eval, input, output) = (arg(plan), arg(eval), arg(input), arg(output));
    let args = [
        "run",
        &plan,
        "--keys",
        &eval,
        "--input",
        &input,
        "-o",
        &output,
        "--insecure",
    ];
    cachemir(&[&args[..], extra].concat())
}

/// A path as a command-line argument.
pub fn arg(path: &Path) -> String {
    path.to_str().expect("a UTF-8 path").to_string()
}
