//! Composite-op recognition on hand-built graphs: each exporter spelling of SiLU, GELU, RMSNorm,
//! RoPE and attention becomes its composite op and computes the same; patterns whose inner
//! values are used elsewhere, whose constants differ or whose shapes do not fit are left alone.
//! (The shared reference models are covered in `tests/tests/recognize_models.rs`.)

use cachemir_ir::graph::SourceLocation;
use cachemir_ir::recognize::recognize;
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Interpreter, Op, OutputRole, Precision, ReduceOp, Secrecy,
    Tensor, TensorType, UnaryOp, ValueRef,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::prop;
use std::collections::{HashMap, HashSet};
use std::f64::consts::{FRAC_2_PI, SQRT_2};

/// A graph with one output `out` and the inputs to run it on.
type Built = (Graph, HashMap<String, Tensor>);

/// A graph under construction, with the random inputs to run it on.
struct Builder {
    graph: Graph,
    inputs: HashMap<String, Tensor>,
    counter: usize,
}

impl Builder {
    fn new() -> Self {
        Self {
            graph: Graph::new("test"),
            inputs: HashMap::new(),
            counter: 0,
        }
    }

    fn here(&mut self) -> SourceLocation {
        self.counter += 1;
        SourceLocation::Onnx {
            node: format!("n{}", self.counter),
        }
    }

    /// An f32 input of this shape, filled with deterministic values in about [-2, 2].
    fn input(&mut self, name: &str, shape: &[usize]) -> ValueRef {
        let count: usize = shape.iter().product();
        let mut state = (self.inputs.len() as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
        let data: Vec<f32> = (0..count)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0) as f32
            })
            .collect();
        let tensor = Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap());
        self.inputs.insert(name.into(), tensor);
        let ty = TensorType::new(DType::F32, shape.to_vec(), Secrecy::Encrypted);
        let source = self.here();
        self.graph.add_input(name, ty, InputRole::Input, source)
    }

    /// A scalar f32 constant, as the exporters store them.
    fn scalar(&mut self, value: f64) -> ValueRef {
        self.constant(&[], vec![value as f32])
    }

    fn constant(&mut self, shape: &[usize], data: Vec<f32>) -> ValueRef {
        let tensor = Tensor::F32(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap());
        let source = self.here();
        let name = format!("c{}", self.counter);
        self.graph.add_constant(name, tensor, source)
    }

    fn op(&mut self, op: Op, operands: &[ValueRef]) -> ValueRef {
        let source = self.here();
        let name = format!("v{}", self.counter);
        self.graph
            .add_node(op, operands, vec![name], source)
            .unwrap()[0]
    }

    fn unary(&mut self, u: UnaryOp, x: ValueRef) -> ValueRef {
        self.op(Op::Unary(u), &[x])
    }

    fn binary(&mut self, b: BinaryOp, x: ValueRef, y: ValueRef) -> ValueRef {
        self.op(Op::Binary(b), &[x, y])
    }

    fn mul(&mut self, x: ValueRef, y: ValueRef) -> ValueRef {
        self.binary(BinaryOp::Mul, x, y)
    }

    fn add(&mut self, x: ValueRef, y: ValueRef) -> ValueRef {
        self.binary(BinaryOp::Add, x, y)
    }

    fn div(&mut self, x: ValueRef, y: ValueRef) -> ValueRef {
        self.binary(BinaryOp::Div, x, y)
    }

    /// `x * c` with a scalar constant.
    fn scale(&mut self, x: ValueRef, c: f64) -> ValueRef {
        let c = self.scalar(c);
        self.mul(x, c)
    }

    fn cast(&mut self, x: ValueRef) -> ValueRef {
        self.op(Op::Cast { to: DType::F32 }, &[x])
    }

    fn transpose(&mut self, x: ValueRef, perm: &[usize]) -> ValueRef {
        self.op(
            Op::Transpose {
                perm: perm.to_vec(),
            },
            &[x],
        )
    }

    /// Declares `value` an output and returns the finished graph and its inputs.
    fn finish(mut self, value: ValueRef) -> Built {
        self.graph.add_output("out", value, OutputRole::Output);
        self.graph.verify().unwrap();
        (self.graph, self.inputs)
    }
}

/// Recognises, checks the counts, that the graph verifies and computes what it did before
/// (f64, ≤ 1e-9 apart), and that a second run changes nothing. Returns the rewritten graph.
fn recognised(built: Built, expected: &[(&str, usize)]) -> Graph {
    let (original, inputs) = built;
    let mut graph = original.clone();
    let report = recognize(&mut graph);
    let formed: Vec<(&str, usize)> = report
        .formed
        .iter()
        .map(|(k, v)| (k.as_str(), *v))
        .collect();
    assert_eq!(formed, expected, "{report}");
    graph.verify().unwrap();
    let run = |g: &Graph| Interpreter::new(g, Precision::F64).run(&inputs).unwrap()["out"].to_f64();
    let difference = (run(&graph) - run(&original))
        .iter()
        .fold(0.0, |m: f64, d| m.max(d.abs()));
    assert!(difference <= 1e-6, "outputs differ by {difference:e}");
    let before = graph.op_histogram();
    assert!(recognize(&mut graph).is_empty(), "not idempotent");
    assert_eq!(graph.op_histogram(), before);
    graph
}

/// Runs recognition and asserts that nothing changed.
fn untouched(built: Built) {
    let (original, _) = built;
    let mut graph = original.clone();
    let report = recognize(&mut graph);
    assert!(report.is_empty(), "unexpectedly {report}");
    assert_eq!(graph.op_histogram(), original.op_histogram());
    assert_eq!(graph.node_count(), original.node_count());
}

fn has(graph: &Graph, op: &str) -> usize {
    graph.op_histogram().get(op).copied().unwrap_or(0)
}

/// Also declares the value of the first node named `op` a graph output.
fn exposing(built: Built, op: &str) -> Built {
    let (mut graph, inputs) = built;
    let node = graph
        .node_indices()
        .into_iter()
        .find(|&n| graph.node(n).op.name() == op)
        .unwrap();
    graph.add_output("exposed", ValueRef { node, output: 0 }, OutputRole::Output);
    (graph, inputs)
}

// ---- SiLU ----

fn silu(sigmoid_first: bool) -> Built {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 5]);
    let s = b.unary(UnaryOp::Sigmoid, x);
    let y = if sigmoid_first {
        b.mul(s, x)
    } else {
        b.mul(x, s)
    };
    b.finish(y)
}

#[test]
fn silu_in_either_operand_order() {
    for order in [false, true] {
        let g = recognised(silu(order), &[("Silu", 1)]);
        assert_eq!((has(&g, "Silu"), has(&g, "Sigmoid")), (1, 0));
    }
}

#[test]
fn silu_keeps_the_name_and_source_of_the_replaced_value() {
    let (original, inputs) = silu(false);
    let root = original.outputs()[0].value;
    let (name, source) = (
        original.value_name(root).unwrap().to_string(),
        original.node(root.node).source.clone(),
    );
    let g = recognised((original, inputs), &[("Silu", 1)]);
    let out = g.outputs()[0].value;
    assert_eq!(g.node(out.node).op, Op::Silu);
    assert_eq!(g.value_name(out), Some(name.as_str()));
    assert_eq!(g.node(out.node).source, source);
}

#[test]
fn silu_whose_sigmoid_is_used_elsewhere_is_not_fused() {
    let mut b = Builder::new();
    let x = b.input("x", &[4]);
    let s = b.unary(UnaryOp::Sigmoid, x);
    let y = b.mul(x, s);
    let z = b.add(y, s);
    untouched(b.finish(z));
}

#[test]
fn sigmoid_of_another_value_is_not_silu() {
    let mut b = Builder::new();
    let x = b.input("x", &[4]);
    let w = b.input("w", &[4]);
    let s = b.unary(UnaryOp::Sigmoid, w);
    let y = b.mul(x, s);
    untouched(b.finish(y));
}

// ---- GELU ----

/// BERT's erf GELU: `Mul(Mul(x, Add(Erf(Div(x, √2)), 1)), 0.5)`, with the given constants.
fn gelu_erf_bert(sqrt2: f64, half: f64) -> Built {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 6]);
    let c = b.scalar(sqrt2);
    let d = b.div(x, c);
    let e = b.unary(UnaryOp::Erf, d);
    let one = b.scalar(1.0);
    let a = b.add(e, one);
    let m = b.mul(x, a);
    let y = b.scale(m, half);
    b.finish(y)
}

#[test]
fn gelu_erf_as_bert_exports_it() {
    let g = recognised(gelu_erf_bert(SQRT_2, 0.5), &[("Gelu(Erf)", 1)]);
    assert_eq!((has(&g, "Gelu"), has(&g, "Erf")), (1, 0));
}

#[test]
fn gelu_erf_with_half_first_and_multiplication_by_one_over_sqrt2() {
    let mut b = Builder::new();
    let x = b.input("x", &[3, 4]);
    let h = b.scale(x, 0.5);
    let d = b.scale(x, 1.0 / SQRT_2);
    let e = b.unary(UnaryOp::Erf, d);
    let one = b.scalar(1.0);
    let a = b.add(one, e);
    let y = b.mul(a, h);
    recognised(b.finish(y), &[("Gelu(Erf)", 1)]);
}

#[test]
fn gelu_erf_with_a_wrong_constant_is_not_fused() {
    untouched(gelu_erf_bert(1.5, 0.5));
    untouched(gelu_erf_bert(SQRT_2, 0.6));
}

#[test]
fn gelu_whose_erf_is_also_a_graph_output_is_not_fused() {
    untouched(exposing(gelu_erf_bert(SQRT_2, 0.5), "Erf"));
}

/// GPT-2's `gelu_new` as TorchScript exports it, with the given cubic coefficient.
fn gelu_new(cubic: f64) -> Built {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 2, 8]);
    let h = b.scale(x, 0.5);
    let three = b.scalar(3.0);
    let p = b.binary(BinaryOp::Pow, x, three);
    let c = b.scale(p, cubic);
    let s = b.add(x, c);
    let u = b.scale(s, FRAC_2_PI.sqrt());
    let t = b.unary(UnaryOp::Tanh, u);
    let one = b.scalar(1.0);
    let a = b.add(t, one);
    let y = b.mul(h, a);
    b.finish(y)
}

#[test]
fn gelu_tanh_as_gpt2_exports_it() {
    let g = recognised(gelu_new(0.044715), &[("Gelu(Tanh)", 1)]);
    assert_eq!(
        (has(&g, "Gelu"), has(&g, "Tanh"), has(&g, "Pow")),
        (1, 0, 0)
    );
}

#[test]
fn gelu_tanh_with_a_wrong_cubic_coefficient_is_not_fused() {
    untouched(gelu_new(0.05));
}

#[test]
fn gelu_tanh_with_cube_as_products_and_the_constant_distributed() {
    let mut b = Builder::new();
    let x = b.input("x", &[5]);
    let c = FRAC_2_PI.sqrt();
    let xx = b.mul(x, x);
    let xxx = b.mul(xx, x);
    let cubic = b.scale(xxx, c * 0.044715);
    let linear = b.scale(x, c);
    let u = b.add(linear, cubic);
    let t = b.unary(UnaryOp::Tanh, u);
    let one = b.scalar(1.0);
    let a = b.add(one, t);
    let m = b.mul(a, x);
    let two = b.scalar(2.0);
    let y = b.div(m, two);
    recognised(b.finish(y), &[("Gelu(Tanh)", 1)]);
}

// ---- RMSNorm ----

/// Llama's RMSNorm as TorchScript exports it (`Cast`s to f32 of f32 values included), with the
/// given numerator of the reciprocal.
fn llama_rms_norm(numerator: f64) -> Built {
    let mut b = Builder::new();
    let h = b.input("h", &[1, 3, 8]);
    let x = b.cast(h);
    let two = b.scalar(2.0);
    let p = b.binary(BinaryOp::Pow, x, two);
    let mean = b.op(
        Op::Reduce {
            op: ReduceOp::Mean,
            axes: vec![-1],
            keep_dims: true,
        },
        &[p],
    );
    let eps = b.scalar(1e-5);
    let a = b.add(mean, eps);
    let s = b.unary(UnaryOp::Sqrt, a);
    let n = b.scalar(numerator);
    let r = b.div(n, s);
    let m = b.mul(x, r);
    let c = b.cast(m);
    let w = b.constant(&[8], (1..=8).map(|i| i as f32 / 4.0).collect());
    let y = b.mul(w, c);
    // The residual stream reads the cast input too, as in the Llama export.
    let residual = b.add(y, x);
    b.finish(residual)
}

#[test]
fn rms_norm_as_llama_exports_it() {
    let g = recognised(llama_rms_norm(1.0), &[("RmsNorm", 1)]);
    let norm = g
        .node_indices()
        .into_iter()
        .find(|&n| matches!(g.node(n).op, Op::RmsNorm { .. }))
        .unwrap();
    let Op::RmsNorm { epsilon } = g.node(norm).op else {
        unreachable!()
    };
    assert_eq!(epsilon, 1e-5_f32 as f64);
    assert_eq!((has(&g, "Sqrt"), has(&g, "ReduceMean")), (0, 0));
}

#[test]
fn rms_norm_with_a_wrong_numerator_is_not_fused() {
    untouched(llama_rms_norm(2.0));
}

#[test]
fn rms_norm_with_reciprocal_or_division_and_weight_on_the_right() {
    for divide in [false, true] {
        let mut b = Builder::new();
        let x = b.input("x", &[4, 6]);
        let xx = b.mul(x, x);
        let mean = b.op(
            Op::Reduce {
                op: ReduceOp::Mean,
                axes: vec![1],
                keep_dims: true,
            },
            &[xx],
        );
        let eps = b.scalar(1e-6);
        let a = b.add(eps, mean);
        let s = b.unary(UnaryOp::Sqrt, a);
        let n = if divide {
            b.div(x, s)
        } else {
            let r = b.unary(UnaryOp::Reciprocal, s);
            b.mul(r, x)
        };
        let w = b.constant(&[6], vec![0.5, 1.0, 1.5, 2.0, -1.0, 3.0]);
        let y = b.mul(n, w);
        recognised(b.finish(y), &[("RmsNorm", 1)]);
    }
}

#[test]
fn rms_norm_over_another_axis_or_with_a_misshapen_weight_is_not_fused() {
    for (axis, weight_shape) in [(0, vec![6]), (-1, vec![1, 6])] {
        let mut b = Builder::new();
        let x = b.input("x", &[4, 6]);
        let two = b.scalar(2.0);
        let p = b.binary(BinaryOp::Pow, x, two);
        let mean = b.op(
            Op::Reduce {
                op: ReduceOp::Mean,
                axes: vec![axis],
                keep_dims: true,
            },
            &[p],
        );
        let eps = b.scalar(1e-6);
        let a = b.add(mean, eps);
        let s = b.unary(UnaryOp::Sqrt, a);
        let n = b.div(x, s);
        let w = b.constant(&weight_shape, vec![1.0; 6]);
        let y = b.mul(w, n);
        untouched(b.finish(y));
    }
}

// ---- RoPE ----

fn slice_last(b: &mut Builder, x: ValueRef, start: i64, end: i64) -> ValueRef {
    b.op(
        Op::Slice {
            starts: vec![start],
            ends: vec![end],
            axes: vec![3],
            steps: vec![1],
        },
        &[x],
    )
}

/// Llama's rotate-half RoPE on `x [1,2,3,8]`; `swap` builds the wrong rotation
/// `Concat(-x1, x2)` instead.
fn rope(swap: bool, negate_by_mul: bool) -> Built {
    let mut b = Builder::new();
    let x = b.input("x", &[1, 2, 3, 8]);
    let cos = b.input("cos", &[1, 3, 8]);
    let sin = b.input("sin", &[1, 3, 8]);
    let cos = b.op(Op::Unsqueeze { axes: vec![1] }, &[cos]);
    let sin = b.op(Op::Unsqueeze { axes: vec![1] }, &[sin]);
    let direct = b.mul(x, cos);
    let first = slice_last(&mut b, x, 0, 4);
    let second = slice_last(&mut b, x, 4, i64::MAX);
    let (negated, kept) = if swap {
        (first, second)
    } else {
        (second, first)
    };
    let neg = if negate_by_mul {
        b.scale(negated, -1.0)
    } else {
        b.unary(UnaryOp::Neg, negated)
    };
    let rotated = b.op(Op::Concat { axis: -1 }, &[neg, kept]);
    let r = b.mul(sin, rotated);
    let y = b.add(r, direct);
    b.finish(y)
}

#[test]
fn rope_as_llama_exports_it() {
    for negate_by_mul in [false, true] {
        let g = recognised(rope(false, negate_by_mul), &[("Rope", 1)]);
        assert_eq!(
            (has(&g, "Rope"), has(&g, "Slice"), has(&g, "Concat")),
            (1, 0, 0)
        );
    }
}

#[test]
fn rope_with_the_halves_swapped_is_not_fused() {
    untouched(rope(true, false));
}

// ---- Attention ----

/// Where the test attention applies its `1/√D` scale.
#[derive(Clone, Copy, PartialEq)]
enum ScaleAt {
    /// `Mul(scores, 1/√D)` (all three shared models).
    Scores,
    /// `Div(scores, √D)`.
    ScoresDivided,
    /// `Mul(q, 1/√D)` before the product.
    Query,
    /// `Mul(k, 1/√D)` before the key transpose.
    Key,
}

/// How GQA's repeated KV heads are spelled.
#[derive(Clone, Copy, PartialEq)]
enum Repeat {
    /// No repetition: as many KV heads as query heads.
    None,
    /// `Concat` of identical copies (what the importer makes of Llama's `Expand`).
    Concat,
    /// `Expand` itself.
    Expand,
}

/// How the test attention is spelled.
#[derive(Clone, Copy)]
struct AttentionForm {
    scale: ScaleAt,
    mask: bool,
    repeat: Repeat,
    /// BERT's fused `Transpose(k, [0,2,3,1])` of `[B,T,H,D]`.
    bert_keys: bool,
    /// The softmax axis.
    softmax_axis: i64,
}

const PLAIN: AttentionForm = AttentionForm {
    scale: ScaleAt::Scores,
    mask: true,
    repeat: Repeat::None,
    bert_keys: false,
    softmax_axis: -1,
};

/// Llama's `repeat_kv` after import, 2 copies:
/// `Reshape(Concat₂(Unsqueeze(k, 2) ×2) or Expand(·), [B, 2·Hkv, T, D])`.
fn repeat_kv(b: &mut Builder, k: ValueRef, shape: [usize; 4], repeat: Repeat) -> ValueRef {
    let [batch, heads, t, d] = shape;
    if repeat == Repeat::None {
        return k;
    }
    let u = b.op(Op::Unsqueeze { axes: vec![2] }, &[k]);
    let stacked = if repeat == Repeat::Concat {
        b.op(Op::Concat { axis: 2 }, &[u, u])
    } else {
        let shape = vec![batch, heads, 2, t, d];
        b.op(Op::Expand { shape }, &[u])
    };
    let shape = vec![batch, 2 * heads, t, d];
    b.op(Op::Reshape { shape }, &[stacked])
}

fn attention(form: AttentionForm) -> Built {
    let (batch, heads, s, t, d) = (2, 4, 3, 5, 8);
    let kv_heads = if form.repeat == Repeat::None {
        heads
    } else {
        heads / 2
    };
    let scale = 1.0 / (d as f64).sqrt();
    let mut b = Builder::new();
    let mut q = b.input("q", &[batch, heads, s, d]);
    if form.scale == ScaleAt::Query {
        q = b.scale(q, scale);
    }
    let (k_t, v) = if form.bert_keys {
        let k = b.input("k", &[batch, t, heads, d]);
        let v = b.input("v", &[batch, heads, t, d]);
        (b.transpose(k, &[0, 2, 3, 1]), v)
    } else {
        let k = b.input("k", &[batch, kv_heads, t, d]);
        let v = b.input("v", &[batch, kv_heads, t, d]);
        let shape = [batch, kv_heads, t, d];
        let mut k = repeat_kv(&mut b, k, shape, form.repeat);
        let v = repeat_kv(&mut b, v, shape, form.repeat);
        if form.scale == ScaleAt::Key {
            k = b.scale(k, scale);
        }
        (b.transpose(k, &[0, 1, 3, 2]), v)
    };
    let mut scores = b.op(Op::MatMul, &[q, k_t]);
    scores = match form.scale {
        ScaleAt::Scores => b.scale(scores, scale),
        ScaleAt::ScoresDivided => {
            let c = b.scalar(1.0 / scale);
            b.div(scores, c)
        }
        ScaleAt::Query | ScaleAt::Key => scores,
    };
    if form.mask {
        let mask = b.input("mask", &[batch, 1, 1, t]);
        scores = b.add(mask, scores);
    }
    let p = b.op(
        Op::Softmax {
            axis: form.softmax_axis,
        },
        &[scores],
    );
    let p = b.cast(p);
    let y = b.op(Op::MatMul, &[p, v]);
    b.finish(y)
}

fn attention_operand_shapes(g: &Graph) -> Vec<Vec<usize>> {
    let node = g
        .node_indices()
        .into_iter()
        .find(|&n| matches!(g.node(n).op, Op::Attention { .. }))
        .unwrap();
    g.operands(node)
        .iter()
        .map(|v| g.value_type(*v).unwrap().shape.clone())
        .collect()
}

#[test]
fn attention_with_mask_and_scaled_scores() {
    let g = recognised(attention(PLAIN), &[("Attention", 1)]);
    assert_eq!((has(&g, "Softmax"), has(&g, "MatMul")), (0, 0));
    assert_eq!(attention_operand_shapes(&g).len(), 4);
}

#[test]
fn attention_without_mask_or_scaled_by_division_on_q_or_on_k() {
    let unmasked = AttentionForm {
        mask: false,
        ..PLAIN
    };
    let scaled = [ScaleAt::ScoresDivided, ScaleAt::Query, ScaleAt::Key]
        .map(|scale| AttentionForm { scale, ..PLAIN });
    for form in std::iter::once(unmasked).chain(scaled) {
        let g = recognised(attention(form), &[("Attention", 1)]);
        let Op::Attention { scale } = g.node(g.outputs()[0].value.node).op else {
            panic!("no attention at the output");
        };
        assert!((scale - 8f64.sqrt().recip()).abs() < 1e-7, "scale {scale}");
    }
}

#[test]
fn grouped_attention_reads_the_unrepeated_heads() {
    for repeat in [Repeat::Concat, Repeat::Expand] {
        let form = AttentionForm { repeat, ..PLAIN };
        let g = recognised(attention(form), &[("Attention", 1)]);
        let shapes = attention_operand_shapes(&g);
        assert_eq!(shapes[1], vec![2, 2, 5, 8]);
        assert_eq!(shapes[2], vec![2, 2, 5, 8]);
        let leftovers = ["Concat", "Expand", "Reshape", "Unsqueeze"].map(|op| has(&g, op));
        assert_eq!(leftovers, [0; 4]);
    }
}

#[test]
fn grouped_attention_whose_repeated_heads_are_read_elsewhere_is_not_fused() {
    // The copies are read twice inside the pattern, so only the closure check guards them.
    for op in ["Unsqueeze", "Concat"] {
        let form = AttentionForm {
            repeat: Repeat::Concat,
            ..PLAIN
        };
        untouched(exposing(attention(form), op));
    }
}

#[test]
fn attention_with_bert_fused_key_transpose() {
    let form = AttentionForm {
        bert_keys: true,
        ..PLAIN
    };
    let g = recognised(attention(form), &[("Attention", 1)]);
    assert_eq!(attention_operand_shapes(&g)[1], vec![2, 4, 5, 8]);
    assert_eq!(has(&g, "Transpose"), 1);
}

#[test]
fn attention_over_another_axis_or_with_exposed_probabilities_is_not_fused() {
    untouched(attention(AttentionForm {
        softmax_axis: 2,
        ..PLAIN
    }));
    untouched(exposing(attention(PLAIN), "Softmax"));
}

// ---- The pass as a whole ----

#[test]
fn a_graph_without_patterns_is_left_as_it_is() {
    let mut b = Builder::new();
    let x = b.input("x", &[4]);
    let e = b.unary(UnaryOp::Exp, x);
    let y = b.mul(e, x);
    untouched(b.finish(y));
}

#[test]
fn the_report_lists_what_was_formed() {
    let mut b = Builder::new();
    let x = b.input("x", &[2, 4]);
    let s = b.unary(UnaryOp::Sigmoid, x);
    let y = b.mul(x, s);
    let s2 = b.unary(UnaryOp::Sigmoid, y);
    let z = b.mul(s2, y);
    let mut graph = b.finish(z).0;
    let report = recognize(&mut graph);
    assert_eq!(report.count("Silu"), 2);
    assert_eq!(report.count("Rope"), 0);
    assert_eq!(report.total(), 2);
    assert_eq!(report.to_string(), "recognised Silu ×2");
    assert_eq!(
        recognize(&mut graph).to_string(),
        "no composite ops recognised"
    );
}

// ---- Properties over all patterns and over random graphs ----

/// Every pattern above in a form that fuses.
fn fusable_patterns() -> Vec<(&'static str, Built)> {
    let with = |repeat, bert_keys| AttentionForm {
        repeat,
        bert_keys,
        ..PLAIN
    };
    vec![
        ("silu", silu(false)),
        ("gelu erf", gelu_erf_bert(SQRT_2, 0.5)),
        ("gelu tanh", gelu_new(0.044715)),
        ("rms norm", llama_rms_norm(1.0)),
        ("rope", rope(false, true)),
        ("attention", attention(PLAIN)),
        ("gqa concat", attention(with(Repeat::Concat, false))),
        ("gqa expand", attention(with(Repeat::Expand, false))),
        ("bert attention", attention(with(Repeat::None, true))),
    ]
}

#[test]
fn no_pattern_fuses_when_any_of_its_inner_values_is_also_an_output() {
    for (what, (graph, _)) in fusable_patterns() {
        let mut fused = graph.clone();
        assert!(!recognize(&mut fused).is_empty(), "{what} does not fuse");
        let kept: HashSet<String> = fused
            .node_indices()
            .into_iter()
            .flat_map(|n| fused.node(n).output_names.clone())
            .collect();
        let mut inner = 0;
        for node in graph.node_indices() {
            let n = graph.node(node);
            // Inputs and constants are leaves; a kept name is the root (or outside the pattern).
            if matches!(n.op, Op::Input | Op::Constant(_)) || kept.contains(&n.output_names[0]) {
                continue;
            }
            let mut exposed = graph.clone();
            exposed.add_output("exposed", ValueRef { node, output: 0 }, OutputRole::Output);
            let report = recognize(&mut exposed);
            assert!(
                report.is_empty(),
                "{what}: {report} although {} is an output",
                n.output_names[0]
            );
            inner += 1;
        }
        assert!(inner > 0, "{what}: no inner values");
    }
}

/// Constants the random graphs draw from: the patterns' own, so that near-misses are common.
const CONSTANTS: [f64; 9] = [
    0.5,
    1.0,
    2.0,
    3.0,
    SQRT_2,
    std::f64::consts::FRAC_1_SQRT_2,
    0.044715,
    0.797_884_560_802_865_4,
    -1.0,
];

/// One step of a random element-wise graph: an op kind, two operand picks, a constant pick.
type Step = (u8, prop::sample::Index, prop::sample::Index, usize);

/// Builds a random element-wise graph over `x [2, 3]` whose outputs are the last value and the
/// `exposed` picks. Kinds 10–12 write out SiLU / GELU(erf) / GELU(tanh) of a picked value with
/// every intermediate added to the pool, so later steps may read them from outside.
fn random_graph(steps: &[Step], exposed: &[prop::sample::Index]) -> Built {
    let mut b = Builder::new();
    let mut pool = vec![b.input("x", &[2, 3])];
    for (kind, i, j, c) in steps {
        let (a, other) = (*i.get(&pool), *j.get(&pool));
        let constant = CONSTANTS[*c % CONSTANTS.len()];
        let before = pool.len();
        let value = match kind % 13 {
            0 => b.add(a, other),
            1 => b.mul(a, other),
            2 => {
                let c = b.scalar(constant);
                b.div(a, c)
            }
            3 => b.scale(a, constant),
            4 => {
                let c = b.scalar(constant);
                b.add(c, a)
            }
            5 => b.unary(UnaryOp::Sigmoid, a),
            6 => b.unary(UnaryOp::Erf, a),
            7 => b.unary(UnaryOp::Tanh, a),
            8 => b.unary(UnaryOp::Neg, a),
            9 => {
                let e = b.scalar(if constant > 2.5 { 3.0 } else { 2.0 });
                b.binary(BinaryOp::Pow, a, e)
            }
            10 => {
                let s = b.unary(UnaryOp::Sigmoid, a);
                pool.push(s);
                b.mul(s, a)
            }
            11 => {
                let d = b.scale(a, std::f64::consts::FRAC_1_SQRT_2);
                let e = b.unary(UnaryOp::Erf, d);
                let one = b.scalar(1.0);
                let t = b.add(e, one);
                let m = b.mul(a, t);
                pool.extend([d, e, t, m]);
                b.scale(m, 0.5)
            }
            _ => {
                let h = b.scale(a, 0.5);
                let three = b.scalar(3.0);
                let p = b.binary(BinaryOp::Pow, a, three);
                let q = b.scale(p, 0.044715);
                let s = b.add(a, q);
                let u = b.scale(s, FRAC_2_PI.sqrt());
                let t = b.unary(UnaryOp::Tanh, u);
                let one = b.scalar(1.0);
                let w = b.add(t, one);
                pool.extend([h, p, q, s, u, t, w]);
                b.mul(h, w)
            }
        };
        // Intermediates pushed above come after the operands, before the result.
        debug_assert!(pool.len() >= before);
        pool.push(value);
    }
    let last = *pool.last().expect("x at least");
    for (k, pick) in exposed.iter().enumerate() {
        b.graph
            .add_output(format!("exposed{k}"), *pick.get(&pool), OutputRole::Output);
    }
    b.finish(last)
}

/// Equal up to the exporters' f32 rounding of GELU's constants, which the composite drops.
fn same_number(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

    /// On random element-wise graphs seeded with the patterns and their near-misses, recognition
    /// never fails, keeps the graph valid, is idempotent and computes the same outputs.
    #[test]
    fn recognition_keeps_random_graphs_equivalent(
        steps in prop::collection::vec(
            (0u8..13, proptest::prelude::any::<prop::sample::Index>(),
             proptest::prelude::any::<prop::sample::Index>(), 0usize..CONSTANTS.len()),
            1..16,
        ),
        exposed in prop::collection::vec(proptest::prelude::any::<prop::sample::Index>(), 0..3),
    ) {
        let (original, inputs) = random_graph(&steps, &exposed);
        let mut graph = original.clone();
        recognize(&mut graph);
        graph.verify().unwrap();
        let before = graph.op_histogram();
        proptest::prop_assert!(recognize(&mut graph).is_empty());
        proptest::prop_assert_eq!(graph.op_histogram(), before);
        let run = |g: &Graph| Interpreter::new(g, Precision::F64).run(&inputs).unwrap();
        let (expected, actual) = (run(&original), run(&graph));
        for (name, e) in &expected {
            let (e, a) = (e.to_f64(), actual[name].to_f64());
            proptest::prop_assert!(
                e.iter().zip(a.iter()).all(|(x, y)| same_number(*x, *y)),
                "{} differs: {:?} vs {:?}", name, e, a
            );
        }
    }
}
