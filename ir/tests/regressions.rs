//! Regression tests for defects found in review: each failed before its fix.

use cachemir_ir::graph::SourceLocation;
use cachemir_ir::infer::slice_ranges;
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Interpreter, Op, OutputRole, Precision, ReduceOp, Secrecy,
    Tensor, TensorType, UnaryOp,
};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn here() -> SourceLocation {
    SourceLocation::Synthetic("test".into())
}

fn f64_input(g: &mut Graph, name: &str, shape: &[usize]) -> cachemir_ir::ValueRef {
    g.add_input(
        name,
        TensorType::new(DType::F64, shape.to_vec(), Secrecy::Public),
        InputRole::Input,
        here(),
    )
}

#[test]
fn every_encrypt_from_point_stays_encrypted() {
    let mut g = Graph::new("two points");
    let x = f64_input(&mut g, "x", &[2]);
    let a = g
        .add_node(Op::Unary(UnaryOp::Neg), &[x], vec!["a".into()], here())
        .unwrap()[0];
    let b = g
        .add_node(Op::Unary(UnaryOp::Abs), &[x], vec!["b".into()], here())
        .unwrap()[0];
    g.encrypt_from("a").unwrap();
    g.encrypt_from("b").unwrap();
    g.set_input_secrecy(|_, _| Secrecy::Public);
    for v in [a, b] {
        assert_eq!(g.value_type(v).unwrap().secrecy, Secrecy::Encrypted);
    }
    g.verify().unwrap();
}

#[test]
fn reduce_l2_over_all_axes_squares_once() {
    let mut g = Graph::new("l2");
    let x = f64_input(&mut g, "x", &[2, 2]);
    let y = g
        .add_node(
            Op::Reduce {
                op: ReduceOp::L2,
                axes: vec![],
                keep_dims: false,
            },
            &[x],
            vec!["y".into()],
            here(),
        )
        .unwrap()[0];
    g.add_output("y", y, OutputRole::Output);
    let ones = Tensor::F64(ArrayD::from_elem(IxDyn(&[2, 2]), 1.0));
    let out = Interpreter::new(&g, Precision::F64)
        .run(&HashMap::from([("x".to_string(), ones)]))
        .unwrap();
    assert_eq!(out["y"].first_f64(), Some(2.0));
}

#[test]
fn slices_of_empty_axes_and_extreme_steps_do_not_panic() {
    let empty = slice_ranges(&[0], &[-1], &[i64::MIN], &[0], &[-1]).unwrap();
    assert_eq!(empty[0].len(), 0);
    let huge = slice_ranges(&[10], &[0], &[10], &[0], &[i64::MAX]).unwrap();
    assert_eq!((huge[0].start, huge[0].len()), (0, 1));
    let negative = slice_ranges(&[10], &[9], &[i64::MIN], &[0], &[i64::MIN]).unwrap();
    assert_eq!((negative[0].start, negative[0].len()), (9, 1));
}

#[test]
fn matmul_with_an_empty_inner_dimension_is_zeros() {
    let mut g = Graph::new("empty");
    let a = f64_input(&mut g, "a", &[2, 0]);
    let b = f64_input(&mut g, "b", &[0, 3]);
    let y = g
        .add_node(Op::MatMul, &[a, b], vec!["y".into()], here())
        .unwrap()[0];
    g.add_output("y", y, OutputRole::Output);
    let inputs = HashMap::from([
        ("a".to_string(), Tensor::F64(ArrayD::zeros(IxDyn(&[2, 0])))),
        ("b".to_string(), Tensor::F64(ArrayD::zeros(IxDyn(&[0, 3])))),
    ]);
    let out = Interpreter::new(&g, Precision::F64).run(&inputs).unwrap();
    assert_eq!(out["y"].shape(), &[2, 3]);
    assert!(out["y"].to_f64().iter().all(|&v| v == 0.0));
}

#[test]
fn gemm_bias_must_broadcast_to_the_product() {
    let mut g = Graph::new("gemm");
    let a = f64_input(&mut g, "a", &[2, 3]);
    let b = f64_input(&mut g, "b", &[3, 4]);
    let c = f64_input(&mut g, "c", &[5, 4]);
    let gemm = Op::Gemm {
        alpha: 1.0,
        beta: 1.0,
        trans_a: false,
        trans_b: false,
    };
    assert!(g.add_node(gemm, &[a, b, c], vec![], here()).is_err());
}

#[test]
fn negative_integer_powers_are_an_error() {
    let mut g = Graph::new("pow");
    let x = g.add_input(
        "x",
        TensorType::new(DType::I64, vec![1], Secrecy::Public),
        InputRole::Input,
        here(),
    );
    let e = g.add_constant("e", Tensor::from_i64s(&[-1]), here());
    let y = g
        .add_node(Op::Binary(BinaryOp::Pow), &[x, e], vec!["y".into()], here())
        .unwrap()[0];
    g.add_output("y", y, OutputRole::Output);
    let error = Interpreter::new(&g, Precision::F64)
        .run(&HashMap::from([("x".to_string(), Tensor::from_i64s(&[2]))]))
        .unwrap_err();
    assert!(
        error.to_string().contains("negative integer exponent"),
        "{error}"
    );
}

#[test]
fn verify_rejects_a_constant_whose_data_differs_from_its_type() {
    let mut g = Graph::new("forged");
    let c = g.add_constant("c", Tensor::from_i64s(&[1, 2, 3]), here());
    g.add_output("c", c, OutputRole::Output);
    g.verify().unwrap();
    let mut json: serde_json::Value = serde_json::to_value(&g).unwrap();
    // Claim three elements are four, as a crafted IR file could.
    let original = json.to_string();
    let text = original.replace(
        "\"secrecy\":\"public\",\"shape\":[3]",
        "\"secrecy\":\"public\",\"shape\":[4]",
    );
    assert!(text != original, "the declared type was not found");
    json = serde_json::from_str(&text).unwrap();
    let forged: Graph = serde_json::from_value(json).unwrap();
    assert!(forged.verify().is_err());
}

#[test]
fn max_min_clip_and_reduce_max_keep_nan() {
    let mut g = Graph::new("nan");
    let x = f64_input(&mut g, "x", &[2]);
    let y = f64_input(&mut g, "y", &[2]);
    let max = g
        .add_node(
            Op::Binary(BinaryOp::Max),
            &[x, y],
            vec!["max".into()],
            here(),
        )
        .unwrap()[0];
    let clip = g
        .add_node(
            Op::Clip {
                min: Some(0.0),
                max: Some(1.0),
            },
            &[x],
            vec!["clip".into()],
            here(),
        )
        .unwrap()[0];
    let reduced = g
        .add_node(
            Op::Reduce {
                op: ReduceOp::Max,
                axes: vec![],
                keep_dims: false,
            },
            &[x],
            vec!["reduced".into()],
            here(),
        )
        .unwrap()[0];
    for (name, v) in [("max", max), ("clip", clip), ("reduced", reduced)] {
        g.add_output(name, v, OutputRole::Output);
    }
    let inputs = HashMap::from([
        (
            "x".to_string(),
            Tensor::F64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![f64::NAN, 0.5]).unwrap()),
        ),
        (
            "y".to_string(),
            Tensor::F64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![1.0, 0.0]).unwrap()),
        ),
    ]);
    let out = Interpreter::new(&g, Precision::F64).run(&inputs).unwrap();
    for name in ["max", "clip", "reduced"] {
        assert!(
            out[name].first_f64().unwrap().is_nan(),
            "{name} dropped the NaN"
        );
    }
}
