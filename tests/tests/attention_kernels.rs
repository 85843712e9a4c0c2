//! Attention at the slot level: decode attention with GQA against an encrypted KV cache lowered
//! and executed on the `sim` backend against the reference interpreter, the cache append over
//! successive decode steps without re-encryption, and the counts of the attention products
//! (snapshots, and the analytical formulas of `select::decode_product`).

use cachemir_compiler::lower::weights::weight_values;
use cachemir_compiler::lower::{Counts, Lowered};
use cachemir_ir::op::Polynomial;
use cachemir_ir::plan::{Instruction, Plan, TensorRef};
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, Interpreter, Op, OutputRole, Precision, Secrecy,
    SourceLocation, Tensor, TensorType, ValueRef,
};
use ndarray::{ArrayD, IxDyn};
use proptest::prelude::*;
use std::collections::HashMap;

/// The slot vectors of one tensor's ciphertexts, as `sim::execute` takes and returns them.
type Ciphertexts = Vec<Vec<f64>>;

/// Largest absolute difference allowed between the plan on `sim` and the interpreter.
const TOLERANCE: f64 = 1e-9;

/// A decode step's attention: `heads` query heads over `kv_heads` cached heads of `head_dim`,
/// `past` cached tokens, residual width `width`.
#[derive(Debug, Clone, Copy)]
struct Decode {
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
    past: usize,
    width: usize,
    /// GQA replication as HF's `repeat_kv` (Unsqueeze, Expand, Reshape) or by a Concat of copies.
    expand: bool,
    /// A public additive mask and a degree-2 polynomial between the products (softmax's place).
    softmax_like: bool,
}

impl Decode {
    fn group(&self) -> usize {
        self.heads / self.kv_heads
    }
}

/// Deterministic values in `[-1, 1)`.
fn values(seed: u64, n: usize) -> Vec<f64> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    (0..n)
        .map(|_| {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (state >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

fn tensor(shape: &[usize], data: Vec<f64>) -> Tensor {
    Tensor::F64(ArrayD::from_shape_vec(IxDyn(shape), data).unwrap())
}

/// Graph construction with named nodes.
struct Model {
    graph: Graph,
}

impl Model {
    fn new(name: &str) -> Self {
        Self {
            graph: Graph::new(name),
        }
    }

    fn node(&mut self, op: Op, operands: &[ValueRef], name: &str) -> ValueRef {
        self.graph
            .add_node(
                op,
                operands,
                vec![name.to_string()],
                SourceLocation::Synthetic(name.into()),
            )
            .unwrap()[0]
    }

    fn input(&mut self, name: &str, shape: &[usize], role: InputRole) -> ValueRef {
        self.graph.add_input(
            name,
            TensorType::new(DType::F64, shape.to_vec(), Secrecy::Encrypted),
            role,
            SourceLocation::Synthetic(name.into()),
        )
    }

    fn constant(&mut self, name: &str, shape: &[usize], data: Vec<f64>) -> ValueRef {
        self.graph.add_constant(
            name,
            tensor(shape, data),
            SourceLocation::Synthetic(name.into()),
        )
    }

    /// A `rows × columns` weight, entries in `[-1, 1) / √rows`.
    fn weight(&mut self, name: &str, rows: usize, columns: usize, seed: u64) -> ValueRef {
        let scale = 1.0 / (rows as f64).sqrt();
        let data = values(seed, rows * columns)
            .iter()
            .map(|v| v * scale)
            .collect();
        self.constant(name, &[rows, columns], data)
    }

    /// `[1, tokens, heads·head_dim]` → `[1, heads, tokens, head_dim]`.
    fn split_heads(
        &mut self,
        x: ValueRef,
        tokens: usize,
        heads: usize,
        hd: usize,
        name: &str,
    ) -> ValueRef {
        let x = self.node(
            Op::Reshape {
                shape: vec![1, tokens, heads, hd],
            },
            &[x],
            &format!("{name}/reshape"),
        );
        self.node(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[x],
            &format!("{name}/transpose"),
        )
    }

    /// `[1, heads, tokens, head_dim]` → `[1, tokens, heads·head_dim]`.
    fn merge_heads(
        &mut self,
        x: ValueRef,
        tokens: usize,
        heads: usize,
        hd: usize,
        name: &str,
    ) -> ValueRef {
        let x = self.node(
            Op::Transpose {
                perm: vec![0, 2, 1, 3],
            },
            &[x],
            &format!("{name}/transpose"),
        );
        self.node(
            Op::Reshape {
                shape: vec![1, tokens, heads * hd],
            },
            &[x],
            name,
        )
    }

    /// `[1, kv, tokens, hd]` → `[1, kv·group, tokens, hd]`, each KV head serving `group` heads.
    fn repeat_kv(&mut self, x: ValueRef, d: &Decode, name: &str) -> ValueRef {
        let (group, tokens) = (d.group(), d.past + 1);
        if group == 1 {
            return x;
        }
        let x = self.node(
            Op::Unsqueeze { axes: vec![2] },
            &[x],
            &format!("{name}/unsqueeze"),
        );
        let x = if d.expand {
            let shape = vec![1, d.kv_heads, group, tokens, d.head_dim];
            self.node(Op::Expand { shape }, &[x], &format!("{name}/expand"))
        } else {
            let copies = vec![x; group];
            self.node(Op::Concat { axis: 2 }, &copies, &format!("{name}/concat"))
        };
        self.node(
            Op::Reshape {
                shape: vec![1, d.heads, tokens, d.head_dim],
            },
            &[x],
            &format!("{name}/reshape"),
        )
    }

    /// `scores · scale`, and with `softmax_like` `+ mask` then a degree-2 polynomial on
    /// `[-bound, bound]`.
    fn scores(&mut self, scores: ValueRef, scale: f64, mask: Option<(&[usize], f64)>) -> ValueRef {
        let scale = self.constant("scale", &[], vec![scale]);
        let scores = self.node(Op::Binary(BinaryOp::Mul), &[scores, scale], "scaled");
        let Some((shape, bound)) = mask else {
            return scores;
        };
        let n = shape.iter().product();
        let mask: Vec<f64> = values(99, n).iter().map(|v| (v - 1.0) / 2.0).collect();
        let mask = self.constant("mask", shape, mask);
        let masked = self.node(Op::Binary(BinaryOp::Add), &[scores, mask], "masked");
        self.node(
            Op::Polynomial(Polynomial {
                function: "Exp".into(),
                domain: (-bound, bound),
                coefficients: vec![1.0, 0.75, 0.25],
                max_error: 0.0,
            }),
            &[masked],
            "weights",
        )
    }
}

/// The decode step: `x [1, 1, width]` encrypted, Q/K/V projections by constant weights (so the
/// new key and value come from an interleaved matrix–vector product, as in real models), the new
/// key and value appended to the encrypted cache (`present_*`, the next step's `past_*`), GQA
/// replication, `scores = q·Kᵀ · scale`, `out = scores·V` reshaped to `[1, 1, heads·head_dim]`.
fn decode_step(d: &Decode) -> Graph {
    let mut g = Model::new("decode_attention");
    let (h, kv, hd, p) = (d.heads, d.kv_heads, d.head_dim, d.past);
    let x = g.input("x", &[1, 1, d.width], InputRole::Input);
    let state = |output: &str| InputRole::State {
        output: output.into(),
    };
    let past_key = g.input("past_key", &[1, kv, p, hd], state("present_key"));
    let past_value = g.input("past_value", &[1, kv, p, hd], state("present_value"));
    let wq = g.weight("wq", d.width, h * hd, 1);
    let wk = g.weight("wk", d.width, kv * hd, 2);
    let wv = g.weight("wv", d.width, kv * hd, 3);
    let q = g.node(Op::MatMul, &[x, wq], "q_proj");
    let q = g.split_heads(q, 1, h, hd, "q");
    let k = g.node(Op::MatMul, &[x, wk], "k_proj");
    let k = g.split_heads(k, 1, kv, hd, "k");
    let v = g.node(Op::MatMul, &[x, wv], "v_proj");
    let v = g.split_heads(v, 1, kv, hd, "v");
    let keys = g.node(Op::Concat { axis: 2 }, &[past_key, k], "present_key");
    let values = g.node(Op::Concat { axis: 2 }, &[past_value, v], "present_value");
    let keys_h = g.repeat_kv(keys, d, "repeat_k");
    let values_h = g.repeat_kv(values, d, "repeat_v");
    let keys_t = g.node(
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[keys_h],
        "keys_t",
    );
    let scores = g.node(Op::MatMul, &[q, keys_t], "scores");
    // |x| ≤ 1 and |W| ≤ 1/√width: |q|, |k| ≤ √width, cached keys in [-1, 1).
    let bound = (hd as f64).sqrt() * d.width as f64 + 1.0;
    let mask_shape = [1, 1, 1, p + 1];
    let scores = g.scores(
        scores,
        1.0 / (hd as f64).sqrt(),
        d.softmax_like.then_some((&mask_shape[..], bound)),
    );
    let context = g.node(Op::MatMul, &[scores, values_h], "context");
    let out = g.merge_heads(context, 1, h, hd, "attention");
    g.graph.add_output("attention", out, OutputRole::Output);
    for (name, value) in [("key", keys), ("value", values)] {
        g.graph.add_output(
            format!("present_{name}"),
            value,
            OutputRole::State {
                input: format!("past_{name}"),
            },
        );
    }
    g.graph.verify().unwrap();
    g.graph
}

/// Self-attention over `tokens` tokens (an encoder layer's attention, MiniLM-like).
fn self_attention(heads: usize, head_dim: usize, tokens: usize, width: usize) -> Graph {
    let mut g = Model::new("self_attention");
    let x = g.input("x", &[1, tokens, width], InputRole::Input);
    let mut project = |name: &str, seed: u64| {
        let w = g.weight(&format!("w{name}"), width, heads * head_dim, seed);
        let y = g.node(Op::MatMul, &[x, w], &format!("{name}_proj"));
        g.split_heads(y, tokens, heads, head_dim, name)
    };
    let (q, k, v) = (project("q", 1), project("k", 2), project("v", 3));
    let keys_t = g.node(
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[k],
        "keys_t",
    );
    let scores = g.node(Op::MatMul, &[q, keys_t], "scores");
    let scores = g.scores(scores, 1.0 / (head_dim as f64).sqrt(), None);
    let context = g.node(Op::MatMul, &[scores, v], "context");
    let out = g.merge_heads(context, tokens, heads, head_dim, "attention");
    g.graph.add_output("attention", out, OutputRole::Output);
    g.graph.verify().unwrap();
    g.graph
}

fn lower_at(graph: &Graph, slots: usize) -> Lowered {
    let lowered = cachemir_tests::compile::lower_at(graph, slots);
    lowered.plan.validate().unwrap();
    lowered
}

/// Per-step inputs: `x`, and the cache contents (row-major `[1, kv, past, hd]`).
fn step_inputs(d: &Decode, seed: u64) -> HashMap<String, Vec<f64>> {
    let cache = d.kv_heads * d.past * d.head_dim;
    HashMap::from([
        ("x".to_string(), values(seed, d.width)),
        ("past_key".to_string(), values(seed + 1, cache)),
        ("past_value".to_string(), values(seed + 2, cache)),
    ])
}

/// The graph's outputs by the reference interpreter, row-major.
fn reference(graph: &Graph, inputs: &HashMap<String, Vec<f64>>) -> HashMap<String, Vec<f64>> {
    let feed: HashMap<String, Tensor> = graph
        .inputs()
        .iter()
        .map(|i| {
            let name = graph.input_name(i).to_string();
            let shape = &graph.input_type(i).shape;
            (name.clone(), tensor(shape, inputs[&name].clone()))
        })
        .collect();
    Interpreter::new(graph, Precision::F64)
        .run(&feed)
        .unwrap()
        .into_iter()
        .map(|(name, t)| (name, t.to_f64().iter().copied().collect()))
        .collect()
}

/// Runs the plan on `sim` with its inputs as slot vectors; returns the outputs' slot vectors.
/// The plans here read weights only (no client or public program).
fn run_slots(lowered: &Lowered, graph: &Graph, inputs: &[Ciphertexts]) -> Vec<Ciphertexts> {
    let plan = &lowered.plan;
    assert!(plan.client_program.is_empty() && plan.public_program.is_empty());
    let tensors: HashMap<TensorRef, Vec<f64>> = weight_values(lowered, graph)
        .into_iter()
        .map(|(name, (_, v))| (TensorRef::Weight(name), v))
        .collect();
    let (outputs, report) = cachemir_vm::sim::execute_with_report(plan, &tensors, inputs).unwrap();
    assert!(report.violations.is_empty(), "{:?}", report.violations);
    outputs
}

fn encode(plan: &Plan, inputs: &HashMap<String, Vec<f64>>) -> Vec<Ciphertexts> {
    plan.inputs
        .iter()
        .map(|io| io.layout.encode(&inputs[&io.name]).unwrap())
        .collect()
}

fn max_error(a: &[f64], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f64::max)
}

/// Decodes every output and compares it with the interpreter's; also checks that the slots a
/// layout leaves empty are zero.
fn check_outputs(
    plan: &Plan,
    outputs: &[Ciphertexts],
    expected: &HashMap<String, Vec<f64>>,
    what: &str,
) {
    for (io, slots) in plan.outputs.iter().zip(outputs) {
        let got = io.layout.decode(slots).unwrap();
        let error = max_error(&got, &expected[&io.name]);
        assert!(
            error <= TOLERANCE,
            "{what}: {}: max abs error {error:.3e}",
            io.name
        );
        for (part, map) in io.layout.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                if e == cachemir_ir::layout::EMPTY {
                    assert_eq!(
                        slots[part][s], 0.0,
                        "{what}: {} slot {s} of part {part}",
                        io.name
                    );
                }
            }
        }
    }
}

/// Whether the products' shapes cannot tell `qKᵀ` from `softmax·V` (as many tokens as the head
/// dimension): the lowering then takes the query (a view of an interleaved ciphertext) for the
/// scores and lowers both products in the `softmax·V` layout, exact but with up to 14 times the
/// rotations, so the layout and count checks skip these shapes.
fn role_is_ambiguous(d: &Decode) -> bool {
    d.past + 1 == d.head_dim
}

/// Lowers the decode step at `slots`, runs it on `sim` and compares it with the interpreter.
fn check_decode(d: &Decode, slots: usize) -> Lowered {
    let graph = decode_step(d);
    let lowered = lower_at(&graph, slots);
    let inputs = step_inputs(d, 7);
    let outputs = run_slots(&lowered, &graph, &encode(&lowered.plan, &inputs));
    let what = format!("{d:?} at {slots} slots (period {})", lowered.period);
    check_outputs(&lowered.plan, &outputs, &reference(&graph, &inputs), &what);
    if role_is_ambiguous(d) {
        return lowered;
    }
    // Both products take Cachemir's decode layout, and the cache holds t tokens per ciphertext.
    let kinds: Vec<&str> = lowered.kernels.iter().map(|k| k.kernel.as_str()).collect();
    for kind in ["attention qKᵀ", "attention softmax·V"] {
        assert!(
            kinds.iter().any(|k| k.starts_with(kind)),
            "{what}: {kinds:?}"
        );
    }
    let t = slots / lowered.period;
    let cache = &lowered.plan.inputs[1];
    assert_eq!(cache.name, "past_key");
    assert_eq!(cache.layout.ciphertexts(), d.past.div_ceil(t), "{what}");
    lowered
}

/// Rotations, ct-pt multiplications and additions of the instructions of the output stage
/// (sites with source `output`) of output `name`: the gather into the KV-cache layout.
fn output_stage_counts(plan: &Plan, name: &str) -> (usize, usize, usize) {
    let mut counts = (0, 0, 0);
    for (instruction, &site) in plan.instructions.iter().zip(&plan.instruction_sites) {
        let site = &plan.sites[site as usize];
        if site.source != "output" || site.name != name {
            continue;
        }
        match instruction {
            Instruction::Rotate { .. } => counts.0 += 1,
            Instruction::RotateHoisted { steps, .. } => counts.0 += steps.0.len(),
            Instruction::MultiplyPlain { .. } => counts.1 += 1,
            Instruction::Add { .. } | Instruction::Sub { .. } => counts.2 += 1,
            _ => {}
        }
    }
    counts
}

/// `⌊log2 n⌋ + popcount(n) − 1`: rotations (and additions) of a doubling sum of `n` terms.
fn doubling(n: usize) -> usize {
    (n.ilog2() + n.count_ones() - 1) as usize
}

/// The formulas of `select::decode_product`'s documentation: the counts of one decode attention
/// product (`qKᵀ` when `!token_inner`, `softmax·V` otherwise) over a cache of `past` tokens plus
/// the new one, the other operand already in the product layout (the query in interleaved
/// packing, the scores as `qKᵀ` leaves them).
fn decode_product_counts(d: &Decode, token_inner: bool, slots: usize, period: usize) -> Counts {
    let (h, kv, hd, p) = (d.heads, d.kv_heads, d.head_dim, d.past);
    let g = d.group();
    let t = slots / period;
    let tokens = p + 1;
    let (c, c_past) = (tokens.div_ceil(t), p.div_ceil(t));
    // GQA conversion of each cached ciphertext: the copies for the heads g·G + m, m ≥ 1, are the
    // rotations by m·hd·t (whole ciphertexts, no mask), summed by doubling from 4 copies on.
    let (gqa_rotations, gqa_terms, gqa_additions, gqa_hoisted) = if g >= 4 {
        (doubling(g), 1, doubling(g), 0)
    } else {
        (g - 1, g, 0, usize::from(g >= 3))
    };
    // The new token, from the projection's interleaved output: one masked group per distinct
    // shift (h − ⌊h/G⌋)·hd, i.e. H − kv + 1 groups, the nonzero ones hoisted together.
    let new_groups = h - kv + 1;
    let conversion = Counts {
        rotations: c_past * gqa_rotations + new_groups - 1,
        hoisted_groups: c_past * gqa_hoisted + usize::from(new_groups >= 3),
        plaintext_multiplications: new_groups,
        ciphertext_multiplications: 0,
        scalar_multiplications: 0,
        additions: c_past * (gqa_additions + gqa_terms) + new_groups - c,
    };
    // The sum: over d (stride t slots, hd terms) per ciphertext, or over j (ciphertexts added,
    // then stride 1 − t slots, min(t, tokens) terms); a mask keeps the chain starts and the
    // reverse doubling spreads each sum back over its chain.
    let (sum_rotations, sum_masks, sum_additions) = if token_inner {
        let w = doubling(t.min(tokens));
        (2 * w, 1, c - 1 + 2 * w)
    } else {
        let w = doubling(hd);
        (c * 2 * w, c, c * 2 * w)
    };
    Counts {
        rotations: conversion.rotations + sum_rotations,
        hoisted_groups: conversion.hoisted_groups,
        plaintext_multiplications: conversion.plaintext_multiplications + sum_masks,
        ciphertext_multiplications: c,
        scalar_multiplications: 0,
        additions: conversion.additions + sum_additions,
    }
}

/// The append of the new token to a `[1, kv, past, hd]` state (the output-time gather of the
/// Concat into the KV-cache layout): (rotations, masks, additions).
fn append_counts(d: &Decode, t: usize) -> (usize, usize, usize) {
    // One masked group per KV head g, shifted by g·(G − 1)·hd entries: a single unshifted group
    // without GQA.
    let groups = if d.group() == 1 { 1 } else { d.kv_heads };
    let shares = usize::from(!d.past.is_multiple_of(t));
    (groups - 1, groups, groups - 1 + shares)
}

/// The counts of self-attention over `tokens` tokens (no GQA) in `select::sequence_product`'s
/// layout that do not depend on the general conversions (`kernels/convert.rs`): with `n_c`
/// ciphertexts per stack of `[tokens, heads·hd]`, `m = tokens` copies, `m·n_c` ciphertext
/// multiplications; `qKᵀ` then sums over `d` in each copy (`2·δ(hd)` rotations and one mask per
/// ciphertext) before packing the scores into `n_c` ciphertexts; `softmax·V` adds the copies
/// (`(m − 1)·n_c` additions). Returns (ciphertext multiplications, least rotations, least masks).
fn self_attention_counts(
    head_dim: usize,
    tokens: usize,
    token_inner: bool,
    stack_ciphertexts: usize,
) -> (usize, usize, usize) {
    let products = tokens * stack_ciphertexts;
    if token_inner {
        (products, 0, 0)
    } else {
        (products, 2 * products * doubling(head_dim), products)
    }
}

fn measured(lowered: &Lowered, kind: &str) -> Counts {
    let records: Vec<_> = lowered
        .kernels
        .iter()
        .filter(|k| k.kernel.starts_with(kind))
        .collect();
    assert_eq!(records.len(), 1, "{kind}: {:?}", lowered.kernels);
    records[0].counts
}

fn check_formulas(d: &Decode, lowered: &Lowered, slots: usize) {
    let period = lowered.period;
    let what = format!("{d:?} at {slots} slots (period {period})");
    for (kind, token_inner) in [("attention qKᵀ", false), ("attention softmax·V", true)] {
        assert_eq!(
            measured(lowered, kind),
            decode_product_counts(d, token_inner, slots, period),
            "{what}: {kind}"
        );
    }
    let t = slots / period;
    for name in ["present_key", "present_value"] {
        assert_eq!(
            output_stage_counts(&lowered.plan, name),
            append_counts(d, t),
            "{what}: {name}"
        );
    }
}

fn decode_strategy() -> impl Strategy<Value = (Decode, usize)> {
    (
        prop_oneof![Just(2usize), Just(4), Just(8)],
        0usize..4,
        prop_oneof![Just(8usize), Just(16), Just(32)],
        1usize..=64,
        10u32..=13,
        any::<bool>(),
        any::<bool>(),
    )
        .prop_map(
            |(heads, kv, head_dim, past, log_slots, expand, softmax_like)| {
                let divisors: Vec<usize> = (1..=heads).filter(|k| heads % k == 0).collect();
                let d = Decode {
                    heads,
                    kv_heads: divisors[kv % divisors.len()],
                    head_dim,
                    past,
                    width: 32,
                    expand,
                    softmax_like,
                };
                (d, 1usize << log_slots)
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    /// GQA decode attention against an encrypted cache of 1…64 tokens at 2^10…2^13 slots: the
    /// attention output and both present states equal the interpreter's, and the products'
    /// and the append's counts equal their formulas.
    #[test]
    fn decode_attention_matches_the_interpreter((d, slots) in decode_strategy()) {
        let lowered = check_decode(&d, slots);
        if !role_is_ambiguous(&d) {
            check_formulas(&d, &lowered, slots);
        }
    }
}

/// Both cache regimes, deterministically: the cache (and new token) within one ciphertext, and
/// spread over several (`past + 1 > t`), with and without GQA.
#[test]
fn decode_attention_in_one_and_several_ciphertexts() {
    let shapes = [
        // (heads, kv_heads, head_dim, past, slots, ciphertexts of the present cache)
        (4, 2, 32, 15, 1 << 15, 1),
        (2, 2, 8, 6, 1 << 10, 1),
        (8, 2, 16, 64, 1 << 12, 3),
        (2, 1, 8, 40, 1 << 10, 6),
        (8, 1, 32, 63, 1 << 13, 2),
        (4, 4, 16, 33, 1 << 11, 2),
    ];
    for (heads, kv_heads, head_dim, past, slots, ciphertexts) in shapes {
        for (expand, softmax_like) in [(true, false), (false, true)] {
            let d = Decode {
                heads,
                kv_heads,
                head_dim,
                past,
                width: 32,
                expand,
                softmax_like,
            };
            let lowered = check_decode(&d, slots);
            let present = &lowered.plan.outputs[1];
            assert_eq!(present.name, "present_key");
            assert_eq!(
                present.layout.ciphertexts(),
                ciphertexts,
                "{d:?} (period {})",
                lowered.period
            );
            check_formulas(&d, &lowered, slots);
        }
    }
}

/// 32 decode steps with caches of 24…55 tokens (one plan each) at 2^10 slots, where the cache
/// crosses ciphertext boundaries: each step's present ciphertexts are the next step's past
/// ciphertexts as they are (the present layout of plan s is the past layout of plan s + 1, so
/// appending never re-encrypts), every step matches the interpreter on the cleartext cache, and
/// the append costs at most kv − 1 rotations and kv masks per state, whatever the cache length.
#[test]
fn cache_append_over_32_steps_never_re_encrypts() {
    let slots = 1 << 10;
    let first = 24;
    let decode = |past: usize| Decode {
        heads: 4,
        kv_heads: 2,
        head_dim: 8,
        past,
        width: 32,
        expand: true,
        softmax_like: true,
    };
    let plans: Vec<(Graph, Lowered)> = (first..first + 32)
        .map(|past| {
            let graph = decode_step(&decode(past));
            let lowered = lower_at(&graph, slots);
            (graph, lowered)
        })
        .collect();
    let mut cleartext = step_inputs(&decode(first), 11);
    let mut carried: Option<(Ciphertexts, Ciphertexts)> = None;
    let mut ciphertexts = Vec::new();
    for (step, (graph, lowered)) in plans.iter().enumerate() {
        let d = decode(first + step);
        let plan = &lowered.plan;
        let what = format!("step {step} (cache {})", d.past);
        let t = slots / lowered.period;
        cleartext.insert("x".into(), values(1000 + step as u64, d.width));
        let names: Vec<&str> = plan.inputs.iter().map(|io| io.name.as_str()).collect();
        assert_eq!(names, ["x", "past_key", "past_value"]);
        let inputs = match carried.take() {
            None => encode(plan, &cleartext),
            // The previous step's present ciphertexts as they are; only x is encoded.
            Some((key, value)) => {
                assert_eq!(plan.inputs[1].layout.ciphertexts(), d.past.div_ceil(t));
                let x = plan.inputs[0].layout.encode(&cleartext["x"]).unwrap();
                vec![x, key, value]
            }
        };
        let outputs = run_slots(lowered, graph, &inputs);
        let expected = reference(graph, &cleartext);
        check_outputs(plan, &outputs, &expected, &what);
        // The append: nothing at the Concat (a view), the gather into the cache layout at output
        // time a few masked groups of the new token only.
        for name in ["present_key", "present_value"] {
            let at_node = lowered
                .site_counts
                .iter()
                .find(|(site, _, _)| site == name)
                .map(|(_, _, c)| *c)
                .unwrap();
            assert_eq!(at_node, Counts::default(), "{what}: {name}");
            let (rotations, masks, _) = output_stage_counts(plan, name);
            assert!(
                rotations < d.kv_heads && masks <= d.kv_heads,
                "{what}: {name}"
            );
            assert_eq!(
                output_stage_counts(plan, name),
                append_counts(&d, t),
                "{what}: {name}"
            );
        }
        if let Some((_, next)) = plans.get(step + 1) {
            for (io, name) in [(1, "key"), (2, "value")] {
                assert_eq!(plan.outputs[io].name, format!("present_{name}"));
                assert!(
                    plan.outputs[io].layout == next.plan.inputs[io].layout,
                    "{what}: present_{name} layout (period {}) ≠ the next step's past_{name} \
                     layout (period {})",
                    lowered.period,
                    next.period
                );
            }
        }
        ciphertexts.push(plan.outputs[1].layout.ciphertexts());
        let mut outputs = outputs.into_iter();
        let _attention = outputs.next();
        carried = Some((outputs.next().unwrap(), outputs.next().unwrap()));
        cleartext.insert("past_key".into(), expected["present_key"].clone());
        cleartext.insert("past_value".into(), expected["present_value"].clone());
    }
    // The cache grew across ciphertext boundaries on the way.
    assert!(ciphertexts.first() < ciphertexts.last(), "{ciphertexts:?}");
}

/// Kernel counts of a tiny-Llama decode attention (4 heads over 2 KV heads of 32, 15 cached
/// tokens) at 2^15 slots, checked on `sim` and against the formulas.
#[test]
fn decode_attention_counts_snapshot() {
    let slots = 1 << 15;
    let d = Decode {
        heads: 4,
        kv_heads: 2,
        head_dim: 32,
        past: 15,
        width: 128,
        expand: true,
        softmax_like: false,
    };
    let lowered = check_decode(&d, slots);
    check_formulas(&d, &lowered, slots);
    insta::assert_json_snapshot!(serde_json::json!({
        "period": lowered.period,
        "kernels": lowered.kernels,
    }));
}

/// Lowers self-attention at `slots`, runs it on `sim` against the interpreter.
fn check_self_attention(heads: usize, head_dim: usize, tokens: usize, slots: usize) -> Lowered {
    let width = heads * head_dim;
    let graph = self_attention(heads, head_dim, tokens, width);
    let lowered = lower_at(&graph, slots);
    let inputs = HashMap::from([("x".to_string(), values(5, tokens * width))]);
    let outputs = run_slots(&lowered, &graph, &encode(&lowered.plan, &inputs));
    let what = format!("self-attention {heads}×{head_dim} over {tokens} tokens at {slots} slots");
    check_outputs(&lowered.plan, &outputs, &reference(&graph, &inputs), &what);
    lowered
}

/// Self-attention with all query rows at once (`select::sequence_product`), the stack in one
/// ciphertext or several (`tokens·p > slots`), with a token count that is not a power of two:
/// exact on `sim`, the ciphertext multiplications (one per copy and stack ciphertext, not one
/// per query row) and the sums as the formulas say, and when the stack fills its period in one
/// ciphertext the keys of each copy one whole rotation (`m − 1`), the packing at most `m` more.
#[test]
fn self_attention_counts_match_the_formulas() {
    for (heads, head_dim, tokens, slots) in [
        (12, 32, 16, 1 << 15),
        (12, 32, 17, 1 << 15),
        (2, 8, 24, 1 << 10),
        (4, 16, 40, 1 << 10),
    ] {
        let lowered = check_self_attention(heads, head_dim, tokens, slots);
        let period = lowered.period;
        let what =
            format!("{heads}×{head_dim} over {tokens} tokens at {slots} slots (period {period})");
        let stack =
            cachemir_compiler::lower::select::Stack::new(tokens, heads * head_dim, slots, period);
        let n_c = stack.ciphertexts();
        for (kind, token_inner) in [
            ("self-attention qKᵀ", false),
            ("self-attention softmax·V", true),
        ] {
            let counts = measured(&lowered, kind);
            let (products, rotations, masks) =
                self_attention_counts(head_dim, tokens, token_inner, n_c);
            assert_eq!(
                counts.ciphertext_multiplications, products,
                "{what}: {kind}"
            );
            assert!(counts.rotations >= rotations, "{what}: {kind}: {counts:?}");
            assert!(
                counts.plaintext_multiplications >= masks,
                "{what}: {kind}: {counts:?}"
            );
        }
        if stack.period == tokens * period && n_c == 1 {
            // The copies' keys: one rotation each (δ·p·t slots), no mask; the scores' sum
            // and packing: 2·m·δ(hd) rotations, at least 2·m masks.
            let qk = measured(&lowered, "self-attention qKᵀ");
            let sums = 2 * tokens * doubling(head_dim);
            assert!(qk.rotations <= tokens - 1 + sums + tokens, "{what}: {qk:?}");
        }
    }
}

/// As many tokens as the head dimension: `[.., 1, hd] × [.., hd, hd]` (decode) and
/// `[.., S, S] × [.., S, S]` (self-attention) do not say which product is `qKᵀ`. The results
/// are exact; the layouts are not the intended ones (see [`role_is_ambiguous`]; self-attention
/// falls back to the general product layout).
#[test]
fn as_many_tokens_as_the_head_dimension_stay_exact() {
    for (heads, kv_heads, head_dim, slots) in [(2, 2, 8, 1 << 10), (4, 2, 32, 1 << 15)] {
        let d = Decode {
            heads,
            kv_heads,
            head_dim,
            past: head_dim - 1,
            width: 32,
            expand: true,
            softmax_like: true,
        };
        check_decode(&d, slots);
    }
    check_self_attention(4, 16, 16, 1 << 12);
}

/// Kernel counts of a MiniLM-like self-attention (12 heads of 32, 16 tokens) at 2^15 slots,
/// checked on `sim`.
#[test]
fn self_attention_counts_snapshot() {
    let lowered = check_self_attention(12, 32, 16, 1 << 15);
    insta::assert_json_snapshot!(serde_json::json!({
        "period": lowered.period,
        "kernels": lowered.kernels,
    }));
}
