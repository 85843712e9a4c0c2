//! The reference interpreter on hand-built graphs: each composite op equals its decomposition
//! into primitive ops, data movement follows ONNX's edge cases, and graphs round-trip through
//! JSON and print stably.

use cachemir_ir::graph::SourceLocation;
use cachemir_ir::{
    BinaryOp, DType, GeluApproximation, Graph, InputRole, Interpreter, Op, OutputRole, Precision,
    ReduceOp, Secrecy, Tensor, TensorType, UnaryOp, ValueRef,
};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;

fn here() -> SourceLocation {
    SourceLocation::Synthetic("test".into())
}

/// Deterministic values in about [-2, 2].
fn values(shape: &[usize], seed: u64) -> Tensor {
    let count: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    let data = (0..count)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 4.0 - 2.0
        })
        .collect();
    Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

fn input(g: &mut Graph, name: &str, shape: &[usize]) -> ValueRef {
    g.add_input(
        name,
        TensorType::new(DType::F64, shape.to_vec(), Secrecy::Encrypted),
        InputRole::Input,
        here(),
    )
}

fn op(g: &mut Graph, op: Op, operands: &[ValueRef]) -> ValueRef {
    g.add_node(op, operands, vec![], here()).unwrap()[0]
}

fn constant(g: &mut Graph, name: &str, value: f64) -> ValueRef {
    g.add_constant(name, Tensor::F64(ndarray::arr0(value).into_dyn()), here())
}

/// Runs a graph with two outputs `a` and `b` and returns `max |a - b|`.
fn max_difference(g: &mut Graph, a: ValueRef, b: ValueRef, inputs: HashMap<String, Tensor>) -> f64 {
    g.add_output("a", a, OutputRole::Output);
    g.add_output("b", b, OutputRole::Output);
    g.verify().unwrap();
    let out = Interpreter::new(g, Precision::F64).run(&inputs).unwrap();
    (out["a"].to_f64() - out["b"].to_f64())
        .iter()
        .fold(0.0, |m: f64, v| m.max(v.abs()))
}

#[test]
fn gelu_and_silu_equal_their_formulas() {
    let mut g = Graph::new("activations");
    let x = input(&mut g, "x", &[3, 5]);
    let gelu = op(
        &mut g,
        Op::Gelu {
            approximation: GeluApproximation::Erf,
        },
        &[x],
    );
    // x/2 (1 + erf(x/√2)) from primitives.
    let inv_sqrt2 = constant(&mut g, "inv_sqrt2", std::f64::consts::FRAC_1_SQRT_2);
    let half = constant(&mut g, "half", 0.5);
    let one = constant(&mut g, "one", 1.0);
    let scaled = op(&mut g, Op::Binary(BinaryOp::Mul), &[x, inv_sqrt2]);
    let erf = op(&mut g, Op::Unary(UnaryOp::Erf), &[scaled]);
    let shifted = op(&mut g, Op::Binary(BinaryOp::Add), &[erf, one]);
    let halved = op(&mut g, Op::Binary(BinaryOp::Mul), &[x, half]);
    let reference = op(&mut g, Op::Binary(BinaryOp::Mul), &[halved, shifted]);
    let inputs = HashMap::from([("x".to_string(), values(&[3, 5], 1))]);
    assert!(max_difference(&mut g, gelu, reference, inputs.clone()) < 1e-15);

    let mut g = Graph::new("silu");
    let x = input(&mut g, "x", &[3, 5]);
    let silu = op(&mut g, Op::Silu, &[x]);
    let sigmoid = op(&mut g, Op::Unary(UnaryOp::Sigmoid), &[x]);
    let reference = op(&mut g, Op::Binary(BinaryOp::Mul), &[x, sigmoid]);
    assert!(max_difference(&mut g, silu, reference, inputs) < 1e-15);
}

#[test]
fn tanh_gelu_stays_close_to_erf_gelu() {
    let mut g = Graph::new("gelu");
    let x = input(&mut g, "x", &[64]);
    let erf = op(
        &mut g,
        Op::Gelu {
            approximation: GeluApproximation::Erf,
        },
        &[x],
    );
    let tanh = op(
        &mut g,
        Op::Gelu {
            approximation: GeluApproximation::Tanh,
        },
        &[x],
    );
    let inputs = HashMap::from([("x".to_string(), values(&[64], 2))]);
    let difference = max_difference(&mut g, erf, tanh, inputs);
    // The two GELUs differ by at most about 5e-4 on [-2, 2] (Hendrycks & Gimpel).
    assert!(difference > 1e-6 && difference < 1e-3, "{difference}");
}

#[test]
fn rms_norm_equals_its_decomposition() {
    let mut g = Graph::new("rms");
    let x = input(&mut g, "x", &[2, 3, 8]);
    let scale = g.add_constant("scale", values(&[8], 3), here());
    let fused = op(&mut g, Op::RmsNorm { epsilon: 1e-5 }, &[x, scale]);
    let two = constant(&mut g, "two", 2.0);
    let eps = constant(&mut g, "eps", 1e-5);
    let square = op(&mut g, Op::Binary(BinaryOp::Pow), &[x, two]);
    let mean = op(
        &mut g,
        Op::Reduce {
            op: ReduceOp::Mean,
            axes: vec![-1],
            keep_dims: true,
        },
        &[square],
    );
    let shifted = op(&mut g, Op::Binary(BinaryOp::Add), &[mean, eps]);
    let root = op(&mut g, Op::Unary(UnaryOp::Sqrt), &[shifted]);
    let normalized = op(&mut g, Op::Binary(BinaryOp::Div), &[x, root]);
    let reference = op(&mut g, Op::Binary(BinaryOp::Mul), &[normalized, scale]);
    let inputs = HashMap::from([("x".to_string(), values(&[2, 3, 8], 4))]);
    assert!(max_difference(&mut g, fused, reference, inputs) < 1e-14);
}

#[test]
fn rope_equals_rotate_half_by_slicing() {
    let mut g = Graph::new("rope");
    let x = input(&mut g, "x", &[1, 2, 3, 4]);
    let cos = g.add_constant("cos", values(&[3, 4], 5), here());
    let sin = g.add_constant("sin", values(&[3, 4], 6), here());
    let fused = op(&mut g, Op::Rope, &[x, cos, sin]);
    let slice = |g: &mut Graph, start, end| {
        op(
            g,
            Op::Slice {
                starts: vec![start],
                ends: vec![end],
                axes: vec![-1],
                steps: vec![1],
            },
            &[x],
        )
    };
    let first = slice(&mut g, 0, 2);
    let second = slice(&mut g, 2, 4);
    let negated = op(&mut g, Op::Unary(UnaryOp::Neg), &[second]);
    let rotated = op(&mut g, Op::Concat { axis: -1 }, &[negated, first]);
    let a = op(&mut g, Op::Binary(BinaryOp::Mul), &[x, cos]);
    let b = op(&mut g, Op::Binary(BinaryOp::Mul), &[rotated, sin]);
    let reference = op(&mut g, Op::Binary(BinaryOp::Add), &[a, b]);
    let inputs = HashMap::from([("x".to_string(), values(&[1, 2, 3, 4], 7))]);
    assert!(max_difference(&mut g, fused, reference, inputs) < 1e-15);
}

#[test]
fn grouped_attention_equals_repeated_heads_with_matmuls() {
    let (heads, kv_heads, queries, keys, dim) = (4, 2, 3, 5, 4);
    let mut g = Graph::new("attention");
    let q = input(&mut g, "q", &[1, heads, queries, dim]);
    let k = input(&mut g, "k", &[1, kv_heads, keys, dim]);
    let v = input(&mut g, "v", &[1, kv_heads, keys, dim]);
    let mask = g.add_constant("mask", values(&[1, 1, queries, keys], 8), here());
    let scale = 1.0 / (dim as f64).sqrt();
    let fused = op(&mut g, Op::Attention { scale }, &[q, k, v, mask]);
    // repeat_kv: [1, kv, T, D] → [1, kv, 2, T, D] → [1, heads, T, D], as Llama exports it.
    let repeat = |g: &mut Graph, x| {
        let wide = op(g, Op::Unsqueeze { axes: vec![2] }, &[x]);
        let tiled = op(g, Op::Concat { axis: 2 }, &[wide, wide]);
        op(
            g,
            Op::Reshape {
                shape: vec![1, heads, keys, dim],
            },
            &[tiled],
        )
    };
    let (k_full, v_full) = (repeat(&mut g, k), repeat(&mut g, v));
    let k_t = op(
        &mut g,
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k_full],
    );
    let scores = op(&mut g, Op::MatMul, &[q, k_t]);
    let scale_value = constant(&mut g, "scale", scale);
    let scaled = op(&mut g, Op::Binary(BinaryOp::Mul), &[scores, scale_value]);
    let masked = op(&mut g, Op::Binary(BinaryOp::Add), &[scaled, mask]);
    let probabilities = op(&mut g, Op::Softmax { axis: -1 }, &[masked]);
    let reference = op(&mut g, Op::MatMul, &[probabilities, v_full]);
    let inputs = HashMap::from([
        ("q".to_string(), values(&[1, heads, queries, dim], 9)),
        ("k".to_string(), values(&[1, kv_heads, keys, dim], 10)),
        ("v".to_string(), values(&[1, kv_heads, keys, dim], 11)),
    ]);
    assert!(max_difference(&mut g, fused, reference, inputs) < 1e-14);
}

fn run_one(op_: Op, x: Tensor) -> Tensor {
    let mut g = Graph::new("one");
    let shape = x.shape().to_vec();
    let v = g.add_input(
        "x",
        TensorType::new(x.dtype(), shape, Secrecy::Public),
        InputRole::Input,
        here(),
    );
    let y = op(&mut g, op_, &[v]);
    g.add_output("y", y, OutputRole::Output);
    Interpreter::new(&g, Precision::F64)
        .run(&HashMap::from([("x".to_string(), x)]))
        .unwrap()
        .remove("y")
        .unwrap()
}

#[test]
fn slices_follow_onnx_clamping_and_negative_steps() {
    let x = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[6]), (0..6).collect()).unwrap());
    let slice = |starts, ends, steps| Op::Slice {
        starts: vec![starts],
        ends: vec![ends],
        axes: vec![0],
        steps: vec![steps],
    };
    assert_eq!(
        run_one(slice(-2, i64::MAX, 1), x.clone()).to_i64_vec(),
        vec![4, 5]
    );
    assert_eq!(
        run_one(slice(i64::MAX, i64::MIN, -1), x.clone()).to_i64_vec(),
        vec![5, 4, 3, 2, 1, 0]
    );
    assert_eq!(
        run_one(slice(5, 0, -2), x.clone()).to_i64_vec(),
        vec![5, 3, 1]
    );
    assert_eq!(run_one(slice(4, 2, 1), x).to_i64_vec(), Vec::<i64>::new());
}

#[test]
fn gather_wraps_negative_indices_and_rejects_out_of_range() {
    let mut g = Graph::new("gather");
    let table = g.add_constant("table", values(&[4, 2], 12), here());
    let indices = g.add_input(
        "ids",
        TensorType::new(DType::I64, vec![1, 2], Secrecy::Public),
        InputRole::Input,
        here(),
    );
    let rows = op(&mut g, Op::Gather { axis: 0 }, &[table, indices]);
    g.add_output("rows", rows, OutputRole::Output);
    let run = |ids: Vec<i64>| {
        let ids = Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[1, 2]), ids).unwrap());
        Interpreter::new(&g, Precision::F64).run(&HashMap::from([("ids".to_string(), ids)]))
    };
    let out = run(vec![-1, 3]).unwrap()["rows"].to_f64();
    assert_eq!(out.shape(), &[1, 2, 2]);
    assert_eq!(
        out.slice(ndarray::s![0, 0, ..]),
        out.slice(ndarray::s![0, 1, ..])
    );
    let error = run(vec![0, 4]).unwrap_err().to_string();
    assert!(error.contains("index 4 is out of range"), "{error}");
}

#[test]
fn wrong_input_shape_is_a_typed_error() {
    let mut g = Graph::new("shape");
    let x = input(&mut g, "x", &[2, 3]);
    let y = op(&mut g, Op::Unary(UnaryOp::Exp), &[x]);
    g.add_output("y", y, OutputRole::Output);
    let error = Interpreter::new(&g, Precision::F64)
        .run(&HashMap::from([("x".to_string(), values(&[3, 2], 1))]))
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "input `x`: expected f64[2, 3], got f64[3, 2]"
    );
    let missing = Interpreter::new(&g, Precision::F64)
        .run(&HashMap::new())
        .unwrap_err();
    assert_eq!(missing.to_string(), "graph input `x` was not given");
}

#[test]
fn shape_errors_name_the_node() {
    let mut g = Graph::new("bad");
    let a = input(&mut g, "a", &[2, 3]);
    let b = input(&mut g, "b", &[4, 5]);
    let error = g
        .add_node(
            Op::MatMul,
            &[a, b],
            vec![],
            SourceLocation::Onnx {
                node: "/layer/MatMul".into(),
            },
        )
        .unwrap_err();
    assert_eq!(
        error.to_string(),
        "node `/layer/MatMul` (MatMul): matmul inner dimensions differ: [2, 3] @ [4, 5]"
    );
}

#[test]
fn f32_precision_rounds_every_result() {
    let mut g = Graph::new("round");
    let x = g.add_input(
        "x",
        TensorType::new(DType::F32, vec![1], Secrecy::Public),
        InputRole::Input,
        here(),
    );
    let third = g.add_constant(
        "third",
        Tensor::F32(ndarray::arr1(&[1.0f32 / 3.0]).into_dyn()),
        here(),
    );
    let y = op(&mut g, Op::Binary(BinaryOp::Mul), &[x, third]);
    g.add_output("y", y, OutputRole::Output);
    let x = Tensor::F32(ndarray::arr1(&[3.0f32]).into_dyn());
    let inputs = HashMap::from([("x".to_string(), x)]);
    let f32_result = Interpreter::new(&g, Precision::F32).run(&inputs).unwrap()["y"].to_f64()[[0]];
    assert_eq!(f32_result, (3.0f32 * (1.0f32 / 3.0)) as f64);
}

#[test]
fn graphs_round_trip_through_json_and_print_stably() {
    let mut g = Graph::new("block");
    let x = input(&mut g, "x", &[1, 4]);
    let past = g.add_input(
        "past",
        TensorType::new(DType::F64, vec![1, 2, 4], Secrecy::Encrypted),
        InputRole::State {
            output: "present".into(),
        },
        here(),
    );
    let w = g.add_constant("w", values(&[4, 4], 13), here());
    let y = g
        .add_node(
            Op::MatMul,
            &[x, w],
            vec!["y".into()],
            SourceLocation::Onnx {
                node: "/MatMul".into(),
            },
        )
        .unwrap()[0];
    let row = g
        .add_node(
            Op::Unsqueeze { axes: vec![0] },
            &[y],
            vec!["row".into()],
            here(),
        )
        .unwrap()[0];
    let present = g
        .add_node(
            Op::Concat { axis: 1 },
            &[past, row],
            vec!["present".into()],
            here(),
        )
        .unwrap()[0];
    let parts = g
        .add_node(
            Op::Split {
                axis: 1,
                sizes: vec![1, 3],
            },
            &[y],
            vec!["first".into(), "rest".into()],
            here(),
        )
        .unwrap();
    g.add_output("rest", parts[1], OutputRole::Output);
    g.add_output(
        "present",
        present,
        OutputRole::State {
            input: "past".into(),
        },
    );
    g.verify().unwrap();

    let json = serde_json::to_string(&g).unwrap();
    let back: Graph = serde_json::from_str(&json).unwrap();
    back.verify().unwrap();
    assert_eq!(
        cachemir_ir::printer::print_graph(&back),
        cachemir_ir::printer::print_graph(&g)
    );
    insta::assert_snapshot!(cachemir_ir::printer::print_graph(&g));

    let inputs = HashMap::from([
        ("x".to_string(), values(&[1, 4], 14)),
        ("past".to_string(), values(&[1, 2, 4], 15)),
    ]);
    let a = Interpreter::new(&g, Precision::F64).run(&inputs).unwrap();
    let b = Interpreter::new(&back, Precision::F64)
        .run(&inputs)
        .unwrap();
    assert_eq!(a["present"], b["present"]);
    assert_eq!(a["present"].shape(), &[1, 3, 4]);
}
