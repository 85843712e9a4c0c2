//! Regression tests for defects found in review: each failed before its fix.

use cachemir_dsl::print::print_model;
use cachemir_dsl::{ErrorKind, LoadOptions, load_source};
use cachemir_ir::graph::{InputRole, OutputRole, SourceLocation};
use cachemir_ir::{DType, Graph, Op, Secrecy, TensorType, UnaryOp};
use std::path::Path;

fn load(source: &str) -> Result<Graph, cachemir_dsl::DslError> {
    load_source(source, "model.cmr", Path::new("."), &LoadOptions::default())
}

#[test]
fn integer_overflow_is_a_type_error() {
    for program in [
        "model m { param a = 9223372036854775807 + 1; }",
        "model m { param a = -9223372036854775808 / -1; }",
        "model m { param a = 4611686018427387904 * 4; }",
    ] {
        let error = load(program).unwrap_err();
        assert_eq!(error.kind, ErrorKind::Type, "{program}: {error}");
        assert!(error.message.contains("64 bits"), "{error}");
    }
}

#[test]
fn ragged_constants_are_a_type_error() {
    let error = load("model m { output y = constant([1, [2, 3]]); }").unwrap_err();
    assert_eq!(error.kind, ErrorKind::Type, "{error}");
}

#[test]
fn an_output_written_before_its_state_is_still_state() {
    let graph = load(
        "model m {\n  output present = constant([1.0]);\n  state past: f32[1] -> present;\n}\n",
    )
    .unwrap();
    let output = graph
        .outputs()
        .iter()
        .find(|o| o.name == "present")
        .unwrap();
    assert_eq!(
        output.role,
        OutputRole::State {
            input: "past".into()
        }
    );
}

#[test]
fn attribute_words_win_over_values_of_the_same_name() {
    let graph = load("model m {\n  input x: f32[4];\n  let tanh = x * 2;\n  output y = gelu(tanh, approximation=tanh);\n}\n").unwrap();
    assert_eq!(graph.op_histogram()["Gelu"], 1);
}

#[test]
fn reserved_names_and_infinite_bounds_round_trip() {
    let mut graph = Graph::new("m");
    let x = graph.add_input(
        "as",
        TensorType::new(DType::F32, vec![4], Secrecy::Encrypted),
        InputRole::Input,
        SourceLocation::Synthetic("test".into()),
    );
    let clipped = graph
        .add_node(
            Op::Clip {
                min: Some(f64::NEG_INFINITY),
                max: Some(1.0),
            },
            &[x],
            vec!["tanh".into()],
            SourceLocation::Synthetic("test".into()),
        )
        .unwrap()[0];
    let y = graph
        .add_node(
            Op::Unary(UnaryOp::Exp),
            &[clipped],
            vec!["f32".into()],
            SourceLocation::Synthetic("test".into()),
        )
        .unwrap()[0];
    graph.add_output("y", y, OutputRole::Output);
    let printed = print_model(&graph, "unused.safetensors");
    let text = printed
        .text
        .replace("  weights \"unused.safetensors\";\n", "");
    let back = load(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    assert_eq!(back.op_histogram(), graph.op_histogram());
    let clip = back
        .node_indices()
        .into_iter()
        .find(|&n| matches!(back.node(n).op, Op::Clip { .. }))
        .unwrap();
    assert_eq!(
        back.node(clip).op,
        Op::Clip {
            min: Some(f64::NEG_INFINITY),
            max: Some(1.0)
        }
    );
}
