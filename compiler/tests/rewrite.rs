//! The egg rewrite pass: every rule family on a small graph (the exact ops before and after),
//! semantics preserved on random graphs (f64 interpreter, ≤ 1e-9), and the shape-only
//! Llama-3-8B decode step rewritten within the time budget.

use cachemir_compiler::rewrite::{RewriteOptions, StopReason, graph_cost, rewrite};
use cachemir_dsl::{LoadOptions, load_file};
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Interpreter, Op, OutputRole, Precision, Secrecy,
    SourceLocation, Tensor, TensorType, UnaryOp, ValueRef,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

fn src(what: &str) -> SourceLocation {
    SourceLocation::Synthetic(what.into())
}

/// Deterministic values in `[-1, 1)` (a small LCG: the tests need no statistical quality).
fn values(count: usize, seed: u64) -> Vec<f64> {
    let mut state = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..count)
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) * 2.0 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], seed: u64) -> Tensor {
    let data = values(shape.iter().product(), seed);
    Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

fn scalar(graph: &mut Graph, name: &str, value: f64) -> ValueRef {
    graph.add_constant(
        name,
        Tensor::F64(ArrayD::from_elem(IxDyn(&[]), value)),
        src(name),
    )
}

/// A small graph builder: every op named after its position.
struct Builder {
    graph: Graph,
    count: usize,
}

impl Builder {
    fn new() -> Self {
        Self {
            graph: Graph::new("test"),
            count: 0,
        }
    }

    fn input(&mut self, name: &str, shape: &[usize]) -> ValueRef {
        let ty = TensorType::new(DType::F64, shape.to_vec(), Secrecy::Encrypted);
        self.graph
            .add_input(name, ty, InputRole::Input, src("input"))
    }

    fn weight(&mut self, shape: &[usize], seed: u64) -> ValueRef {
        self.count += 1;
        let name = format!("w{}", self.count);
        self.graph
            .add_constant(name.clone(), tensor(shape, seed), src(&name))
    }

    fn scalar(&mut self, value: f64) -> ValueRef {
        self.count += 1;
        scalar(&mut self.graph, &format!("c{}", self.count), value)
    }

    fn op(&mut self, op: Op, operands: &[ValueRef]) -> ValueRef {
        self.count += 1;
        let name = format!("v{}", self.count);
        self.graph
            .add_node(op, operands, vec![name.clone()], src(&name))
            .unwrap()[0]
    }

    fn binary(&mut self, op: BinaryOp, a: ValueRef, b: ValueRef) -> ValueRef {
        self.op(Op::Binary(op), &[a, b])
    }

    fn unary(&mut self, op: UnaryOp, a: ValueRef) -> ValueRef {
        self.op(Op::Unary(op), &[a])
    }

    fn finish(mut self, outputs: &[ValueRef]) -> Graph {
        for (i, v) in outputs.iter().enumerate() {
            self.graph
                .add_output(format!("out{i}"), *v, OutputRole::Output);
        }
        self.graph
    }
}

/// Every graph output computed in f64.
fn run(graph: &Graph, inputs: &HashMap<String, Tensor>) -> BTreeMap<String, ArrayD<f64>> {
    Interpreter::new(graph, Precision::F64)
        .run(inputs)
        .unwrap()
        .into_iter()
        .map(|(k, v)| (k, v.to_f64()))
        .collect()
}

fn inputs_for(graph: &Graph, seed: u64) -> HashMap<String, Tensor> {
    graph
        .inputs()
        .iter()
        .enumerate()
        .map(|(i, input)| {
            let shape = graph.input_type(input).shape.clone();
            (
                graph.input_name(input).to_string(),
                tensor(&shape, seed + i as u64),
            )
        })
        .collect()
}

/// Largest difference, relative to the value's size where it exceeds 1.
fn max_difference(a: &BTreeMap<String, ArrayD<f64>>, b: &BTreeMap<String, ArrayD<f64>>) -> f64 {
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter()
        .flat_map(|(name, x)| {
            let y = &b[name];
            assert_eq!(x.shape(), y.shape(), "{name}");
            x.iter()
                .zip(y.iter())
                .map(|(p, q)| (p - q).abs() / p.abs().max(1.0))
                .collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

/// The computed ops of a graph (inputs and constants left out), by name.
fn computed_ops(graph: &Graph) -> BTreeMap<String, usize> {
    graph
        .op_histogram()
        .into_iter()
        .filter(|(op, _)| op != "Input" && op != "Constant")
        .collect()
}

/// Checks that `graph` computes exactly the ops `before`, rewrites it with the egg rules alone
/// (no recognition first), checks the result computes the same at no more cost, and returns the
/// rewritten graph's computed ops.
fn rewritten_ops(graph: &Graph, before: &[(&str, usize)]) -> BTreeMap<String, usize> {
    assert_eq!(computed_ops(graph), ops(before));
    let options = RewriteOptions {
        recognize_first: false,
        ..Default::default()
    };
    let (after, report) = rewrite(graph, &options).unwrap();
    after.verify().unwrap();
    let inputs = inputs_for(graph, 7);
    let difference = max_difference(&run(graph, &inputs), &run(&after, &inputs));
    assert!(difference <= 1e-9, "difference {difference:e}\n{report}");
    assert!(report.cost_after <= report.cost_before, "{report}");
    computed_ops(&after)
}

fn ops(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn strength_reduction() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let c = b.scalar(3.0);
    let divided = b.binary(BinaryOp::Div, x, c);
    let two = b.scalar(2.0);
    let squared = b.binary(BinaryOp::Pow, divided, two);
    let one = b.scalar(1.0);
    let shifted = b.binary(BinaryOp::Add, squared, one);
    let root = b.unary(UnaryOp::Sqrt, shifted);
    let inverse = b.unary(UnaryOp::Reciprocal, root);
    let graph = b.finish(&[inverse]);
    // x/3 → x·(1/3) (the reciprocal folded into a constant), pow(·, 2) → ·², 1/√ → rsqrt.
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Add", 1),
                ("Div", 1),
                ("Pow", 1),
                ("Reciprocal", 1),
                ("Sqrt", 1)
            ],
        ),
        ops(&[("Add", 1), ("Mul", 2), ("Rsqrt", 1)])
    );
}

#[test]
fn scalars_and_linear_maps_fold_into_weights() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let half = b.scalar(0.5);
    let scaled = b.binary(BinaryOp::Mul, x, half);
    let w1 = b.weight(&[4, 4], 1);
    let first = b.op(Op::MatMul, &[scaled, w1]);
    let w2 = b.weight(&[4, 3], 2);
    let second = b.op(Op::MatMul, &[first, w2]);
    let c = b.scalar(4.0);
    let out = b.binary(BinaryOp::Div, second, c);
    let graph = b.finish(&[out]);
    // One ct-pt product remains: x · (½ W1 W2 / 4), all folded into one weight.
    assert_eq!(
        rewritten_ops(&graph, &[("Div", 1), ("MatMul", 2), ("Mul", 1)],),
        ops(&[("MatMul", 1)])
    );
    let (after, _) = rewrite(&graph, &RewriteOptions::default()).unwrap();
    assert_eq!(graph_cost(&after).depth, 1);
}

#[test]
fn bias_distributes_through_a_linear_map() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let w1 = b.weight(&[4, 4], 3);
    let projected = b.op(Op::MatMul, &[x, w1]);
    let bias = b.weight(&[4], 4);
    let biased = b.binary(BinaryOp::Add, projected, bias);
    let w2 = b.weight(&[4, 4], 5);
    let out = b.op(Op::MatMul, &[biased, w2]);
    let graph = b.finish(&[out]);
    assert_eq!(
        rewritten_ops(&graph, &[("Add", 1), ("MatMul", 2)],),
        ops(&[("Add", 1), ("MatMul", 1)])
    );
}

#[test]
fn ops_that_change_nothing_are_dropped() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let sigma = b.unary(UnaryOp::Sigmoid, x);
    // σ(x) ∈ [0, 1]: its absolute value and a clip to [−1, 2] change nothing.
    let abs = b.unary(UnaryOp::Abs, sigma);
    let clipped = b.op(
        Op::Clip {
            min: Some(-1.0),
            max: Some(2.0),
        },
        &[abs],
    );
    let cast = b.op(Op::Cast { to: DType::F64 }, &[clipped]);
    let graph = b.finish(&[cast]);
    assert_eq!(
        rewritten_ops(
            &graph,
            &[("Abs", 1), ("Cast", 1), ("Clip", 1), ("Sigmoid", 1)]
        ),
        ops(&[("Sigmoid", 1)])
    );
}

#[test]
fn limits_stop_saturation_with_a_valid_result_and_a_report() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let mut value = x;
    for i in 0..6 {
        let c = b.scalar(1.5 + i as f64);
        value = b.binary(BinaryOp::Div, value, c);
        let w = b.weight(&[4, 4], i);
        value = b.op(Op::MatMul, &[value, w]);
    }
    let graph = b.finish(&[value]);
    let inputs = inputs_for(&graph, 3);
    let expected = run(&graph, &inputs);
    for options in [
        RewriteOptions {
            iteration_limit: 1,
            ..Default::default()
        },
        RewriteOptions {
            node_limit: 40,
            ..Default::default()
        },
    ] {
        let (after, report) = rewrite(&graph, &options).unwrap();
        after.verify().unwrap();
        assert!(max_difference(&expected, &run(&after, &inputs)) <= 1e-9);
        assert_ne!(report.stop_reason, StopReason::Saturated, "{report}");
        let text = report.to_string();
        assert!(
            text.contains("cost before") && text.contains("cost after"),
            "{text}"
        );
    }
    let (_, report) = rewrite(&graph, &RewriteOptions::default()).unwrap();
    assert_eq!(report.stop_reason, StopReason::Saturated, "{report}");
    assert!(
        report.fired("strength-div-to-mul-reciprocal") >= 6,
        "{report}"
    );
    // Six scales and six weights become one weight: one ct-pt product, depth 1.
    assert_eq!(
        (report.cost_after.depth, report.cost_after.ct_pt_mults),
        (1, 1),
        "{report}"
    );
}

#[test]
fn layout_chains_collapse() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 3, 4]);
    let t1 = b.op(
        Op::Transpose {
            perm: vec![1, 0, 2],
        },
        &[x],
    );
    let t2 = b.op(
        Op::Transpose {
            perm: vec![0, 2, 1],
        },
        &[t1],
    );
    let t3 = b.op(
        Op::Transpose {
            perm: vec![2, 0, 1],
        },
        &[t2],
    );
    let u = b.op(Op::Unsqueeze { axes: vec![0] }, &[t3]);
    let r = b.op(Op::Reshape { shape: vec![2, 12] }, &[u]);
    let back = b.op(
        Op::Reshape {
            shape: vec![2, 3, 4],
        },
        &[r],
    );
    let y = b.unary(UnaryOp::Neg, back);
    let graph = b.finish(&[y]);
    // The three transposes compose to the identity; the reshapes to one to the same shape.
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Neg", 1),
                ("Reshape", 2),
                ("Transpose", 3),
                ("Unsqueeze", 1)
            ],
        ),
        ops(&[("Neg", 1)])
    );
}

#[test]
fn activations_and_norms_are_recognised() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 8]);
    // SiLU: x·σ(x).
    let sigma = b.unary(UnaryOp::Sigmoid, x);
    let silu = b.binary(BinaryOp::Mul, x, sigma);
    // GELU (erf): x·½·(1 + erf(x/√2)).
    let h = b.scalar(0.5);
    let half_x = b.binary(BinaryOp::Mul, x, h);
    let root2 = b.scalar(std::f64::consts::SQRT_2);
    let scaled = b.binary(BinaryOp::Div, x, root2);
    let erf = b.unary(UnaryOp::Erf, scaled);
    let one = b.scalar(1.0);
    let shifted = b.binary(BinaryOp::Add, one, erf);
    let gelu = b.binary(BinaryOp::Mul, half_x, shifted);
    // RMSNorm: x / √(mean(x²) + ε) · w.
    let two = b.scalar(2.0);
    let square = b.binary(BinaryOp::Pow, x, two);
    let mean = b.op(
        Op::Reduce {
            op: cachemir_ir::ReduceOp::Mean,
            axes: vec![1],
            keep_dims: true,
        },
        &[square],
    );
    let eps = b.scalar(1e-5);
    let var = b.binary(BinaryOp::Add, mean, eps);
    let root = b.unary(UnaryOp::Sqrt, var);
    let normed = b.binary(BinaryOp::Div, x, root);
    let w = b.weight(&[8], 9);
    let rms = b.binary(BinaryOp::Mul, normed, w);
    let graph = b.finish(&[silu, gelu, rms]);
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Add", 2),
                ("Div", 2),
                ("Erf", 1),
                ("Mul", 4),
                ("Pow", 1),
                ("ReduceMean", 1),
                ("Sigmoid", 1),
                ("Sqrt", 1)
            ],
        ),
        ops(&[("Gelu", 1), ("RmsNorm", 1), ("Silu", 1)])
    );
}

#[test]
fn softmax_and_tanh_gelu_are_recognised() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 8]);
    // softmax(x) = exp(x − max x) / Σ exp(x − max x) over the last axis.
    let last = |op| Op::Reduce {
        op,
        axes: vec![1],
        keep_dims: true,
    };
    let max = b.op(last(cachemir_ir::ReduceOp::Max), &[x]);
    let shifted = b.binary(BinaryOp::Sub, x, max);
    let exp = b.unary(UnaryOp::Exp, shifted);
    let sum = b.op(last(cachemir_ir::ReduceOp::Sum), &[exp]);
    let softmax = b.binary(BinaryOp::Div, exp, sum);
    // GPT-2's gelu_new: ½x(1 + tanh(√(2/π)(x + 0.044715x³))).
    let h = b.scalar(0.5);
    let half_x = b.binary(BinaryOp::Mul, h, x);
    let three = b.scalar(3.0);
    let cube = b.binary(BinaryOp::Pow, x, three);
    let a = b.scalar(0.044715);
    let term = b.binary(BinaryOp::Mul, a, cube);
    let inner = b.binary(BinaryOp::Add, x, term);
    let k = b.scalar((2.0 / std::f64::consts::PI).sqrt());
    let scaled = b.binary(BinaryOp::Mul, k, inner);
    let tanh = b.unary(UnaryOp::Tanh, scaled);
    let one = b.scalar(1.0);
    let shifted_tanh = b.binary(BinaryOp::Add, one, tanh);
    let gelu = b.binary(BinaryOp::Mul, half_x, shifted_tanh);
    let graph = b.finish(&[softmax, gelu]);
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Add", 2),
                ("Div", 1),
                ("Exp", 1),
                ("Mul", 4),
                ("Pow", 1),
                ("ReduceMax", 1),
                ("ReduceSum", 1),
                ("Sub", 1),
                ("Tanh", 1),
            ],
        ),
        ops(&[("Gelu", 1), ("Softmax", 1)])
    );
}

#[test]
fn layer_norm_is_recognised() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 8]);
    let mean_op = Op::Reduce {
        op: cachemir_ir::ReduceOp::Mean,
        axes: vec![-1],
        keep_dims: true,
    };
    let mean = b.op(mean_op.clone(), &[x]);
    let centred = b.binary(BinaryOp::Sub, x, mean);
    let square = b.binary(BinaryOp::Mul, centred, centred);
    let var = b.op(mean_op, &[square]);
    let eps = b.scalar(1e-12);
    let shifted = b.binary(BinaryOp::Add, var, eps);
    let root = b.unary(UnaryOp::Sqrt, shifted);
    let normed = b.binary(BinaryOp::Div, centred, root);
    let w = b.weight(&[8], 1);
    let scaled = b.binary(BinaryOp::Mul, normed, w);
    let bias = b.weight(&[8], 2);
    let out = b.binary(BinaryOp::Add, scaled, bias);
    let graph = b.finish(&[out]);
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Add", 2),
                ("Div", 1),
                ("Mul", 2),
                ("ReduceMean", 2),
                ("Sqrt", 1),
                ("Sub", 1)
            ],
        ),
        ops(&[("LayerNormalization", 1)])
    );
}

/// `h [1,1,d] @ W [d, heads·hd]` split into heads `[1, heads, 1, hd]`, with RoPE tables computed
/// from a public position input.
fn projected_rope(b: &mut Builder, heads: usize, head_dim: usize) -> (ValueRef, ValueRef) {
    let d = 8;
    let h = b.input("h", &[1, 1, d]);
    let position = b.graph.add_input(
        "position",
        TensorType::new(DType::F64, vec![1, 1, 1, head_dim], Secrecy::Public),
        InputRole::Input,
        src("position"),
    );
    let w = b.weight(&[d, heads * head_dim], 11);
    let q = b.op(Op::MatMul, &[h, w]);
    let split = b.op(
        Op::Reshape {
            shape: vec![1, 1, heads, head_dim],
        },
        &[q],
    );
    let q = b.op(
        Op::Transpose {
            perm: vec![0, 2, 1, 3],
        },
        &[split],
    );
    let cos = b.unary(UnaryOp::Cos, position);
    let sin = b.unary(UnaryOp::Sin, position);
    (b.op(Op::Rope, &[q, cos, sin]), h)
}

#[test]
fn rope_rotate_half_folds_into_the_projection() {
    let mut b = Builder::new();
    let (rope, _) = projected_rope(&mut b, 2, 4);
    let graph = b.finish(&[rope]);
    // Two projections (W and W·R, both ct-pt), no ciphertext rotate-half.
    let histogram = rewritten_ops(
        &graph,
        &[
            ("Cos", 1),
            ("MatMul", 1),
            ("Reshape", 1),
            ("Rope", 1),
            ("Sin", 1),
            ("Transpose", 1),
        ],
    );
    // x·cos + x'·sin with x' = h·(W R) split into heads like x (the head transpose moves a unit
    // axis, so it is a reshape).
    assert_eq!(
        histogram,
        ops(&[
            ("Add", 1),
            ("Cos", 1),
            ("MatMul", 2),
            ("Mul", 2),
            ("Reshape", 2),
            ("Sin", 1)
        ])
    );
}

#[test]
fn softmax_attention_with_grouped_heads_is_recognised() {
    let (heads, kv_heads, t, d) = (4, 2, 3, 4);
    let mut b = Builder::new();
    let q = b.input("q", &[1, heads, 1, d]);
    let k = b.input("k", &[1, kv_heads, t, d]);
    let v = b.input("v", &[1, kv_heads, t, d]);
    let repeat = |b: &mut Builder, x: ValueRef| {
        let u = b.op(Op::Unsqueeze { axes: vec![2] }, &[x]);
        let e = b.op(
            Op::Expand {
                shape: vec![1, kv_heads, heads / kv_heads, t, d],
            },
            &[u],
        );
        b.op(
            Op::Reshape {
                shape: vec![1, heads, t, d],
            },
            &[e],
        )
    };
    let k = repeat(&mut b, k);
    let v = repeat(&mut b, v);
    let kt = b.op(
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k],
    );
    let scores = b.op(Op::MatMul, &[q, kt]);
    let root = b.scalar(2.0);
    let scaled = b.binary(BinaryOp::Div, scores, root);
    let probabilities = b.op(Op::Softmax { axis: 3 }, &[scaled]);
    let out = b.op(Op::MatMul, &[probabilities, v]);
    let graph = b.finish(&[out]);
    assert_eq!(
        rewritten_ops(
            &graph,
            &[
                ("Div", 1),
                ("Expand", 2),
                ("MatMul", 2),
                ("Reshape", 2),
                ("Softmax", 1),
                ("Transpose", 1),
                ("Unsqueeze", 2)
            ],
        ),
        ops(&[("Attention", 1)])
    );
}

#[test]
fn polynomials_and_other_ops_pass_through() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let p = b.op(
        Op::Polynomial(cachemir_ir::op::Polynomial {
            function: "Exp".into(),
            domain: (-2.0, 2.0),
            coefficients: vec![1.0, 0.5, 0.25],
            max_error: 1e-3,
        }),
        &[x],
    );
    let c = b.scalar(4.0);
    let q = b.binary(BinaryOp::Div, p, c);
    let s = b.op(Op::Softmax { axis: 1 }, &[q]);
    let graph = b.finish(&[s]);
    assert_eq!(
        rewritten_ops(&graph, &[("Div", 1), ("Polynomial", 1), ("Softmax", 1)]),
        ops(&[("Mul", 1), ("Polynomial", 1), ("Softmax", 1)])
    );
}

#[test]
fn client_encryption_points_stay_encrypted() {
    let mut b = Builder::new();
    let table = b.weight(&[5, 4], 1);
    let ids = b.graph.add_input(
        "ids",
        TensorType::new(DType::I64, vec![2], Secrecy::Public),
        InputRole::Input,
        src("ids"),
    );
    let embedded = b.op(Op::Gather { axis: 0 }, &[table, ids]);
    let c = b.scalar(2.0);
    let public_use = b.binary(BinaryOp::Mul, embedded, c);
    let w = b.weight(&[4, 4], 2);
    let projected = b.op(Op::MatMul, &[embedded, w]);
    let mut graph = b.finish(&[projected, public_use]);
    graph.encrypt_from("v2").unwrap();
    let (after, _) = rewrite(&graph, &RewriteOptions::default()).unwrap();
    after.verify().unwrap();
    let secrecy = |g: &Graph, name: &str| {
        let output = g.outputs().iter().find(|o| o.name == name).unwrap();
        g.value_type(output.value).unwrap().secrecy
    };
    assert_eq!(secrecy(&after, "out0"), Secrecy::Encrypted);
    let inputs = HashMap::from([(
        "ids".to_string(),
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[2]), vec![3, 1]).unwrap()),
    )]);
    assert!(max_difference(&run(&graph, &inputs), &run(&after, &inputs)) <= 1e-12);
    let encrypted_gathers = after
        .node_indices()
        .iter()
        .filter(|&&n| {
            let node = after.node(n);
            matches!(node.op, Op::Gather { .. }) && node.outputs[0].secrecy == Secrecy::Encrypted
        })
        .count();
    assert_eq!(encrypted_gathers, 1);
}

#[test]
fn names_roles_and_types_of_the_interface_are_kept() {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 4]);
    let past = b.graph.add_input(
        "past",
        TensorType::new(DType::F64, vec![2, 4], Secrecy::Encrypted),
        InputRole::State {
            output: "present".into(),
        },
        src("past"),
    );
    let _unused = b.input("unused", &[3]);
    let c = b.scalar(2.0);
    let y = b.binary(BinaryOp::Div, x, c);
    let present = b.op(Op::Concat { axis: 0 }, &[past, y]);
    let mut graph = b.finish(&[y]);
    graph.add_output(
        "present",
        present,
        OutputRole::State {
            input: "past".into(),
        },
    );
    let (after, _) = rewrite(&graph, &RewriteOptions::default()).unwrap();
    let interface = |g: &Graph| {
        let inputs: Vec<_> = g
            .inputs()
            .iter()
            .map(|i| {
                (
                    g.input_name(i).to_string(),
                    g.input_type(i).clone(),
                    i.role.clone(),
                )
            })
            .collect();
        let outputs: Vec<_> = g
            .outputs()
            .iter()
            .map(|o| {
                (
                    o.name.clone(),
                    g.value_type(o.value).cloned(),
                    o.role.clone(),
                )
            })
            .collect();
        (inputs, outputs)
    };
    assert_eq!(interface(&after), interface(&graph));
}

/// One step of a random graph: `(kind, operand choice, operand choice, constant)`.
type Step = (u8, usize, usize, f64);

/// Builds a random graph of element-wise ops, scalar products and quotients, small weights,
/// transposes, reshapes, splits and concatenations on `[2, 4]` values.
fn random_graph(steps: &[Step], seed: u64) -> Graph {
    let mut b = Builder::new();
    let mut live = vec![b.input("x", &[2, 4]), b.input("y", &[2, 4])];
    for (i, &(kind, p, q, c)) in steps.iter().enumerate() {
        let a = live[p % live.len()];
        let other = live[q % live.len()];
        let c = if c.abs() < 0.1 { 0.5 } else { c };
        let value = match kind % 13 {
            0 => b.binary(BinaryOp::Add, a, other),
            1 => b.binary(BinaryOp::Sub, a, other),
            2 => b.binary(BinaryOp::Mul, a, other),
            3 => {
                let k = b.scalar(c);
                b.binary(BinaryOp::Mul, a, k)
            }
            4 => {
                let k = b.scalar(c);
                b.binary(BinaryOp::Div, a, k)
            }
            5 => {
                let w = b.weight(&[4, 4], seed + i as u64);
                b.op(Op::MatMul, &[a, w])
            }
            6 => {
                let t = b.op(Op::Transpose { perm: vec![1, 0] }, &[a]);
                let w = b.weight(&[2, 2], seed + i as u64);
                let m = b.op(Op::MatMul, &[t, w]);
                b.op(Op::Transpose { perm: vec![1, 0] }, &[m])
            }
            7 => {
                let r = b.op(Op::Reshape { shape: vec![8] }, &[a]);
                let n = b.unary(UnaryOp::Tanh, r);
                let u = b.op(Op::Unsqueeze { axes: vec![0] }, &[n]);
                b.op(Op::Reshape { shape: vec![2, 4] }, &[u])
            }
            8 => {
                let two = b.scalar(2.0);
                b.binary(BinaryOp::Pow, a, two)
            }
            9 => {
                let s = b.unary(UnaryOp::Sigmoid, a);
                b.binary(BinaryOp::Mul, a, s)
            }
            10 => {
                let s = b.binary(BinaryOp::Mul, a, a);
                let one = b.scalar(1.0);
                let t = b.binary(BinaryOp::Add, s, one);
                let r = b.unary(UnaryOp::Sqrt, t);
                b.binary(BinaryOp::Div, other, r)
            }
            11 => {
                // A multi-output op: the halves swapped.
                b.count += 1;
                let names = vec![format!("v{}a", b.count), format!("v{}b", b.count)];
                let split = Op::Split {
                    axis: 1,
                    sizes: vec![2, 2],
                };
                let halves = b.graph.add_node(split, &[a], names, src("split")).unwrap();
                b.op(Op::Concat { axis: 1 }, &[halves[1], halves[0]])
            }
            _ => {
                let w1 = b.weight(&[4, 4], seed + i as u64);
                let w2 = b.weight(&[4, 4], seed + 100 + i as u64);
                let m = b.op(Op::MatMul, &[a, w1]);
                let k = b.scalar(c);
                let s = b.binary(BinaryOp::Mul, m, k);
                b.op(Op::MatMul, &[s, w2])
            }
        };
        live.push(value);
    }
    let last = *live.last().expect("inputs");
    let other = live[live.len() / 2];
    b.finish(&[last, other])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_graphs_compute_the_same(
        steps in prop::collection::vec((0u8..13, 0usize..64, 0usize..64, -2.0f64..2.0), 1..10),
        seed in 0u64..1000,
    ) {
        let graph = random_graph(&steps, seed);
        let (after, report) = rewrite(&graph, &RewriteOptions::default()).unwrap();
        after.verify().unwrap();
        let inputs = inputs_for(&graph, seed);
        let difference = max_difference(&run(&graph, &inputs), &run(&after, &inputs));
        prop_assert!(difference <= 1e-9, "difference {:e}\n{}", difference, report);
        prop_assert!(report.cost_after <= report.cost_before, "{}", report);
    }
}

#[test]
fn llama3_8b_decode_step_rewrites_in_time() {
    let path =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/llama3_8b_decode_step.cmr");
    let graph = load_file(&path, &LoadOptions::default()).unwrap();
    let start = Instant::now();
    let (after, report) = rewrite(&graph, &RewriteOptions::default()).unwrap();
    let elapsed = start.elapsed();
    eprintln!("{report}");
    assert!(elapsed.as_secs_f64() < 20.0, "took {elapsed:?}");
    after.verify().unwrap();
    assert!(report.cost_after <= report.cost_before, "{report}");
    // No weight was materialised: only the two RoPE frequency tables hold data.
    let dense: usize = after
        .node_indices()
        .iter()
        .filter_map(|&n| match &after.node(n).op {
            Op::Constant(t) => Some(t.size_bytes()),
            _ => None,
        })
        .sum();
    assert!(dense < 64 * 1024, "{dense} bytes of constants");
    assert_eq!(after.outputs().len(), graph.outputs().len());
}
