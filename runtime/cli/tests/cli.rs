//! The `cachemir` binary: usage errors of the client and server commands exit 2 (`run`: see
//! `tests/run.rs`; `generate`: `tests/generate.rs`), toy sets need `--insecure`, and `bench
//! --json` prints the documented object.

use std::process::Command;

fn cachemir(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_cachemir"))
        .args(args)
        .output()
        .expect("run cachemir")
}

#[test]
fn help_and_version() {
    let out = cachemir(&["--help"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Examples:") && text.contains("bench"));
    assert!(cachemir(&["--version"]).status.success());
}

/// Missing or mixed arguments of the client and server commands are usage errors.
#[test]
fn client_and_server_usage_errors_exit_2() {
    for args in [
        &["keygen", "x.plan"][..],
        &["encrypt", "keys", "x.plan", "-o", "in.ct"],
        &["decrypt", "keys", "x.plan"],
        &["run", "x.plan"],
        &["run", "x.plan", "--keys", "k", "--input", "in.ct"],
        &["run", "x.plan", "--inputs", "case.json", "--input", "in.ct"],
        &["keygen", "missing.plan", "-o", "keys"],
    ] {
        let out = cachemir(args);
        assert_eq!(
            out.status.code(),
            Some(2),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

#[test]
fn toy_sets_need_insecure() {
    let out = cachemir(&["bench", "--params", "ToyN12"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--insecure"));
    let out = cachemir(&["bench", "--params", "Nope"]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn bench_json_shape() {
    let out = cachemir(&[
        "bench",
        "--params",
        "ToyN12",
        "--insecure",
        "--json",
        "--runs",
        "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for key in [
        "log_n",
        "limbs",
        "special_limbs",
        "dnum",
        "scale_bits",
        "security_bits",
    ] {
        assert!(v["params"][key].is_number(), "params.{key}");
    }
    assert_eq!(v["params"]["log_n"], 12);
    assert_eq!(v["threads"], 1);
    let ops: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            assert!(r["median_ms"].as_f64().unwrap() >= 0.0);
            assert!(r["level"].is_number() && r["runs"].is_number());
            r["op"].as_str().unwrap()
        })
        .collect();
    for op in [
        "encode",
        "encrypt",
        "decrypt",
        "add",
        "mul_plain",
        "mul_relin",
        "rescale",
        "rotate",
        "rotate_hoisted_16",
        "keygen_galois",
    ] {
        assert!(ops.contains(&op), "missing {op}");
    }
}
