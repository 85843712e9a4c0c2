//! The `cachemirc` binary as a user runs it: help, version, exit codes, import and eval.

use cachemir_compiler::reference::models_dir;

#[path = "support/binary.rs"]
mod binary;
use binary::{cachemirc, text};

#[test]
fn help_lists_commands_with_examples() {
    let out = cachemirc(&["--help"]);
    assert!(out.status.success());
    let help = text(&out.stdout);
    for command in ["import", "eval", "compile", "report", "dot", "Examples:"] {
        assert!(help.contains(command), "--help lacks {command}:\n{help}");
    }
}

#[test]
fn version_is_the_crate_version() {
    let out = cachemirc(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        text(&out.stdout).trim(),
        format!("cachemirc {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn report_and_dot_of_a_missing_plan_exit_2() {
    for command in ["report", "dot"] {
        let out = cachemirc(&[command, "/nonexistent/model.plan"]);
        assert_eq!(out.status.code(), Some(2), "{command}");
        assert!(
            text(&out.stderr).contains("/nonexistent/model.plan"),
            "{command}: {}",
            text(&out.stderr)
        );
    }
}

#[test]
fn compile_of_a_missing_model_is_an_input_error() {
    let out = cachemirc(&[
        "compile",
        "/nonexistent/model.onnx",
        "--stop-after",
        "decompose",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("/nonexistent/model.onnx"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn compile_without_calibration_says_what_is_missing() {
    let Some(dir) = models_dir() else { return };
    let model = dir.join("tiny_gpt2_decode_step_p15_ts17.onnx");
    let out = cachemirc(&["compile", model.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("--calibration"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn compile_reports_passes_approximations_and_depth() {
    let Some(dir) = models_dir() else { return };
    let model = dir.join("tiny_gpt2_decode_step_p15_ts17.onnx");
    let calibration = dir.join("tiny_gpt2_decode_step_p15_ts17/calib.json");
    let out = cachemirc(&[
        "compile",
        model.to_str().unwrap(),
        "--calibration",
        calibration.to_str().unwrap(),
        "--encrypt-from",
        "/model/transformer/Add_output_0",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let report = text(&out.stdout);
    for expected in [
        "recognize",
        "decompose",
        "calibrate",
        "approximate",
        "GeluTanh",
        "Reciprocal",
        "layer 1: reaches",
    ] {
        assert!(
            report.contains(expected),
            "the report lacks {expected}:\n{report}"
        );
    }
}

#[test]
fn unreadable_model_is_an_input_error() {
    let out = cachemirc(&["import", "/nonexistent/model.onnx"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("/nonexistent/model.onnx"));
}

#[test]
fn bad_dim_flag_is_a_usage_error() {
    let out = cachemirc(&["import", "model.onnx", "--dim", "sequence"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("NAME=SIZE"));
}

#[test]
fn eval_writes_every_output_and_compares() {
    let Some(dir) = models_dir() else { return };
    let out_dir = tempfile::tempdir().unwrap();
    let model = dir.join("tiny_gpt2_decode_step_p15_ts17.onnx");
    let case = dir.join("tiny_gpt2_decode_step_p15_ts17/case1.json");
    let out = cachemirc(&[
        "eval",
        model.to_str().unwrap(),
        "--inputs",
        case.to_str().unwrap(),
        "--out",
        out_dir.path().to_str().unwrap(),
        "--expect",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    for file in ["logits.npy", "present_0_key.npy", "present_1_value.npy"] {
        assert!(out_dir.path().join(file).is_file(), "{file} not written");
    }
    let report = text(&out.stdout);
    let logits_error: f64 = report
        .lines()
        .find(|l| l.starts_with("logits "))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .expect("a logits row with its max abs error");
    assert!(logits_error < 1e-4, "{report}");
}

#[test]
fn import_summary_of_minilm_shows_folding() {
    let Some(dir) = models_dir() else { return };
    let model = dir.join("minilm_l6_dyn_ts17.onnx");
    let out = cachemirc(&[
        "import",
        model.to_str().unwrap(),
        "--dim",
        "batch=1",
        "--dim",
        "sequence=16",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let summary = text(&out.stdout);
    let after = summary.split("ops after folding:").nth(1).unwrap();
    assert!(
        !after.contains("Shape ") && !after.contains("Range"),
        "{summary}"
    );
    assert!(
        summary.contains("last_hidden_state            f32[1,16,384]"),
        "{summary}"
    );
}

#[test]
fn an_approximated_ir_file_evaluates_like_the_model() {
    let Some(dir) = models_dir() else { return };
    let scratch = tempfile::tempdir().unwrap();
    let ir = scratch.path().join("model.json");
    let model = dir.join("tiny_gpt2_decode_step_p15_ts17.onnx");
    let calibration = dir.join("tiny_gpt2_decode_step_p15_ts17/calib.json");
    let case = dir.join("tiny_gpt2_decode_step_p15_ts17/case0.json");
    let compile = cachemirc(&[
        "compile",
        model.to_str().unwrap(),
        "--calibration",
        calibration.to_str().unwrap(),
        "--sample",
        case.to_str().unwrap(),
        "--encrypt-from",
        "/model/transformer/Add_output_0",
        "--stop-after",
        "approximate",
        "--emit",
        "ir",
        "-o",
        ir.to_str().unwrap(),
    ]);
    assert!(compile.status.success(), "{}", text(&compile.stderr));
    let out = scratch.path().join("out");
    let eval = cachemirc(&[
        "eval",
        ir.to_str().unwrap(),
        "--inputs",
        case.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--expect",
    ]);
    assert!(eval.status.success(), "{}", text(&eval.stderr));
    let report = text(&eval.stdout);
    let logits = report
        .lines()
        .find(|l| l.starts_with("logits "))
        .expect("a logits row");
    let error: f64 = logits.split_whitespace().nth(1).unwrap().parse().unwrap();
    assert!(error < 0.05, "{report}");
    assert!(
        logits.trim_end().ends_with("1/1"),
        "the next token changed: {report}"
    );
}
