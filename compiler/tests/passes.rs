//! The tensor-level passes on small hand-built graphs, including regressions found in review.

use cachemir_compiler::passes::approximate::Approximate;
use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
use cachemir_compiler::passes::decompose::Decompose;
use cachemir_compiler::passes::{Pass, Pipeline};
use cachemir_ir::graph::SourceLocation;
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Op, OutputRole, Secrecy, Tensor, TensorType, UnaryOp,
};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn here() -> SourceLocation {
    SourceLocation::Synthetic("test".into())
}

fn input(g: &mut Graph, name: &str, shape: &[usize], secrecy: Secrecy) -> cachemir_ir::ValueRef {
    g.add_input(
        name,
        TensorType::new(DType::F64, shape.to_vec(), secrecy),
        InputRole::Input,
        here(),
    )
}

fn tensor(shape: &[usize], values: Vec<f64>) -> Tensor {
    Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap())
}

#[test]
fn each_output_of_a_split_has_its_own_range() {
    let mut g = Graph::new("split");
    let x = input(&mut g, "x", &[1, 4], Secrecy::Encrypted);
    let parts = g
        .add_node(
            Op::Split {
                axis: 1,
                sizes: vec![2, 2],
            },
            &[x],
            vec!["a".into(), "b".into()],
            here(),
        )
        .unwrap();
    let y = g
        .add_node(
            Op::Unary(UnaryOp::Exp),
            &[parts[1]],
            vec!["y".into()],
            here(),
        )
        .unwrap()[0];
    g.add_output("y", y, OutputRole::Output);
    // The first half lies in [0, 1], the second in [5, 6].
    let samples = (0..4)
        .map(|i| {
            let t = i as f64 / 3.0;
            HashMap::from([(
                "x".to_string(),
                tensor(&[1, 4], vec![t, 1.0 - t, 5.0 + t, 6.0 - t]),
            )])
        })
        .collect();
    let mut calibrate = Calibrate {
        calibration: Calibration { samples },
    };
    calibrate.run(&mut g).unwrap();
    assert_eq!(g.calibrated_range(parts[1]), Some((5.0, 6.0)));
    let mut approximate = Approximate::default();
    approximate.run(&mut g).unwrap();
    let domain = approximate.sites[0].domain;
    assert!(
        domain.0 > 4.8 && domain.1 < 6.2,
        "Exp fitted on {domain:?}, not on its input's range"
    );
}

#[test]
fn a_power_with_several_exponents_is_not_squared_blindly() {
    let mut g = Graph::new("pow");
    let x = input(&mut g, "x", &[2], Secrecy::Encrypted);
    let exponents = g.add_constant("e", tensor(&[2], vec![2.0, 3.0]), here());
    let y = g
        .add_node(
            Op::Binary(BinaryOp::Pow),
            &[x, exponents],
            vec!["y".into()],
            here(),
        )
        .unwrap()[0];
    g.add_output("y", y, OutputRole::Output);
    Decompose::default().run(&mut g).unwrap();
    assert_eq!(
        g.op_histogram().get("Pow"),
        Some(&1),
        "Pow(x, [2, 3]) must not become x·x"
    );
}

#[test]
fn bert_style_masks_are_applied_multiplicatively() {
    let mut g = Graph::new("masked softmax");
    let x = input(&mut g, "x", &[1, 4], Secrecy::Encrypted);
    let mask = input(&mut g, "mask", &[1, 4], Secrecy::Public);
    let scores = g
        .add_node(
            Op::Binary(BinaryOp::Add),
            &[x, mask],
            vec!["scores".into()],
            here(),
        )
        .unwrap()[0];
    let p = g
        .add_node(
            Op::Softmax { axis: -1 },
            &[scores],
            vec!["p".into()],
            here(),
        )
        .unwrap()[0];
    g.add_output("p", p, OutputRole::Output);
    let mut pipeline = Pipeline::new().with(Decompose::default());
    pipeline.run(&mut g, None, &[], &mut |_, _| {}).unwrap();
    let samples = vec![HashMap::from([
        ("x".to_string(), tensor(&[1, 4], vec![0.5, -1.0, 2.0, 0.0])),
        (
            "mask".to_string(),
            tensor(&[1, 4], vec![0.0, 0.0, -10000.0, -10000.0]),
        ),
    ])];
    Calibrate {
        calibration: Calibration { samples },
    }
    .run(&mut g)
    .unwrap();
    let exp = g
        .node_indices()
        .into_iter()
        .find(|&n| g.node(n).op == Op::Unary(UnaryOp::Exp))
        .unwrap();
    let exp_input = g.operands(exp)[0];
    let (low, _) = g.calibrated_range(exp_input).unwrap();
    assert!(
        low > -10.0,
        "the −10000 fill reached the exponential: its domain starts at {low}"
    );
}
