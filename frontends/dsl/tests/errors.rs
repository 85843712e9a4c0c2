//! Every kind of mistake in a model file is reported at `file:line:col` with the line and a
//! caret (snapshots of the rendered messages), and no input makes the frontend panic.

use cachemir_dsl::{DslError, ErrorKind, LoadOptions, load_source};
use proptest::prelude::*;
use std::path::Path;

fn error_of(source: &str) -> DslError {
    match load_source(source, "model.cmr", Path::new("."), &LoadOptions::default()) {
        Ok(_) => panic!("the program was accepted:\n{source}"),
        Err(e) => e,
    }
}

/// A valid program the malformed ones below each break in one place.
const VALID: &str = "model m {
  weights none;
  input x: f32[1, 4] encrypted;
  let w = weight(\"w\", [4, 4]);
  let y = softmax(x @ w, axis=-1);
  output y = y;
}
";

#[test]
fn the_base_program_is_valid() {
    let graph = load_source(VALID, "model.cmr", Path::new("."), &LoadOptions::default()).unwrap();
    assert_eq!(graph.op_histogram()["Softmax"], 1);
}

macro_rules! error_snapshots {
    ($($name:ident: $kind:ident, $source:expr;)*) => {$(
        #[test]
        fn $name() {
            let error = error_of($source);
            assert_eq!(error.kind, ErrorKind::$kind, "{error}");
            insta::assert_snapshot!(error.to_string());
        }
    )*};
}

error_snapshots! {
    missing_semicolon: Syntax, "model m {\n  input x: f32[4]\n  output y = x;\n}\n";
    unclosed_model: Syntax, "model m {\n  input x: f32[4];\n";
    bad_type: Syntax, "model m {\n  input x: f16[4];\n}\n";
    missing_operand: Syntax, "model m {\n  input x: f32[4];\n  output y = x + ;\n}\n";
    undefined_name: Name, "model m {\n  input x: f32[4];\n  output y = x + z;\n}\n";
    unknown_function: Name, "model m {\n  input x: f32[4];\n  output y = softmaxx(x);\n}\n";
    unknown_argument: Type, "model m {\n  input x: f32[4];\n  output y = softmax(x, axs=0);\n}\n";
    shape_mismatch: Shape, "model m {\n  input a: f32[2, 3];\n  input b: f32[4, 5];\n  output y = a @ b;\n}\n";
    broadcast_mismatch: Shape, "model m {\n  input a: f32[2, 3];\n  input b: f32[4];\n  output y = a + b;\n}\n";
    wrong_argument_count: Type, "model m {\n  input x: f32[4];\n  output y = where(x, x);\n}\n";
    attribute_not_a_list: Type, "model m {\n  input x: f32[2, 3];\n  output y = transpose(x, perm=1);\n}\n";
    state_without_output: Name, "model m {\n  state past: f32[1, 2] -> present;\n  output y = past;\n}\n";
    duplicate_input: Name, "model m {\n  input x: f32[4];\n  input x: f32[4];\n  output y = x;\n}\n";
    weight_without_weights: Weights, "model m {\n  input x: f32[4];\n  output y = x * weight(\"w\", [4]);\n}\n";
    missing_weights_file: Weights, "model m {\n  weights \"no_such_file.safetensors\";\n  input x: f32[4];\n  output y = x;\n}\n";
    negative_dimension: Type, "model m {\n  param n = 2 - 3;\n  input x: f32[n];\n  output y = x;\n}\n";
    unknown_annotation: Name, "model m {\n  input x: f32[4];\n  let y = exp(x) @ranj(0, 1);\n  output y = y;\n}\n";
    bad_range: Type, "model m {\n  input x: f32[4];\n  let y = exp(x) @range(1, 0);\n  output y = y;\n}\n";
    interpolating_an_unknown_name: Name, "model m {\n  weights none;\n  input x: f32[4];\n  output y = x * weight(\"layer.{j}.w\", [4]);\n}\n";
    too_many_targets: Type, "model m {\n  input x: f32[4];\n  let a, b = exp(x);\n  output y = a;\n}\n";
    bad_approximation: Type, "model m {\n  input x: f32[4];\n  output y = gelu(x, approximation=exact);\n}\n";
    unsplittable_sizes: Shape, "model m {\n  input x: f32[6];\n  let a, b = split(x, axis=0, sizes=[2, 3]);\n  output y = a;\n}\n";
}

#[test]
fn the_caret_points_at_the_column_reported() {
    let error = error_of("model m {\n  input x: f32[4];\n  output y = x + z;\n}\n");
    assert_eq!((error.line, error.column), (3, 18));
    let rendered = error.to_string();
    let source_line = rendered.lines().find(|l| l.contains("output y")).unwrap();
    let caret_line = rendered
        .lines()
        .find(|l| l.trim_end().ends_with('^'))
        .unwrap();
    assert_eq!(source_line.find("z;"), caret_line.find('^'));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let _ = load_source(&text, "fuzz.cmr", Path::new("."), &LoadOptions::default());
    }

    #[test]
    fn mutated_programs_never_panic(cut in 0usize..VALID.len(), insert in "[ -~]{0,8}", delete in 0usize..6) {
        let mut text: String = VALID.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(VALID.chars().skip(cut + delete));
        let _ = load_source(&text, "fuzz.cmr", Path::new("."), &LoadOptions::default());
    }

    #[test]
    fn token_soup_never_panics(tokens in proptest::collection::vec(prop_oneof![
        Just("model"), Just("m"), Just("{"), Just("}"), Just("input"), Just("x"), Just(":"),
        Just("f32"), Just("["), Just("]"), Just("4"), Just(","), Just(";"), Just("let"), Just("="),
        Just("output"), Just("y"), Just("+"), Just("@"), Just("("), Just(")"), Just("for"), Just("in"),
        Just(".."), Just("weights"), Just("none"), Just("\"w{i}\""), Just("weight"), Just("-"), Just("1e400"),
        Just("99999999999999999999999"), Just("state"), Just("->"), Just("as"), Just("@range"),
    ], 0..60)) {
        let text = tokens.join(" ");
        let _ = load_source(&text, "fuzz.cmr", Path::new("."), &LoadOptions::default());
    }
}
