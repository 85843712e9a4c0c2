//! `decompose`: rewrites the encrypted composite and non-polynomial structures into primitives
//! that CKKS evaluates with additions, multiplications and a few approximated functions:
//!
//! - `Softmax(x + mask)` → `e = Exp((x + finite(mask) − shift) / 2^k) · keep(mask)`,
//!   `p = e / Σe`, then `k` times `p ← p² / Σp²`, which is exact: squaring and renormalising
//!   `softmax(y / 2^j)` gives `softmax(y / 2^(j−1))`. A public additive mask splits into its
//!   finite part and a public 0/1 keep-mask (exporters fill masked scores with the most negative
//!   float, which no polynomial can take); `shift` is a constant the calibration pass sets to the
//!   calibrated maximum so that `Exp` sees `≤ 0`. Dividing the exponent by 2^k keeps the first
//!   denominator within a factor e^(spread/2^k) of its largest value, and every later one lies
//!   in `[1/n, 1]`: each reciprocal gets a narrow domain (the squaring softmax of, e.g., Zimerman
//!   et al., "Converting transformers to polynomial form", 2024).
//! - `Attention` → repeated KV heads for GQA, `q kᵀ · scale`, the softmax above, `· v`.
//! - `LayerNormalization` / `RmsNorm` → mean and variance (or mean square) with `Rsqrt`.
//! - `x / y` with `y` encrypted → `x · Reciprocal(y)`; `Reciprocal(Sqrt(x))` → `Rsqrt(x)`;
//!   `Pow(x, n)` for integer `n` ≤ 8 → multiplications.
//!
//! Public values are left alone: they are computed in the clear. GELU and SiLU stay: each is
//! approximated as one polynomial.

use super::{CompileError, Pass, computed_on_ciphertexts, emit, encrypted, scalar};
use cachemir_ir::{
    BinaryOp, CompareOp, DType, Graph, Op, ReduceOp, SourceLocation, UnaryOp, ValueRef,
};

/// Mask values at or below this mean "masked": exporters fill with the most negative f32
/// (about −3.4e38) or, BERT-style, −10000; real attention biases (ALiBi, relative positions)
/// stay far above it.
const MASKED: f64 = -1e3;

/// Suffix of the shift constants the calibration pass fills in.
pub const SOFTMAX_SHIFT: &str = ":softmax_shift";

/// The decompose pass.
#[derive(Debug, Clone, Copy)]
pub struct Decompose {
    /// `k`, the number of squaring steps of every softmax (see the module docs).
    pub softmax_squarings: u32,
}

impl Default for Decompose {
    fn default() -> Self {
        Self {
            softmax_squarings: 3,
        }
    }
}

const NAME: &str = "decompose";

impl Pass for Decompose {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        let mut rewritten = std::collections::BTreeMap::<String, usize>::new();
        for node in graph.topological_order() {
            let value = ValueRef { node, output: 0 };
            if graph.value_type(value).is_none() || !computed_on_ciphertexts(graph, value) {
                continue;
            }
            let Some(replacement) = decompose(graph, value, self.softmax_squarings)? else {
                continue;
            };
            *rewritten.entry(graph.node(node).op.name()).or_insert(0) += 1;
            graph
                .replace_uses(value, replacement)
                .map_err(|source| CompileError::Ir { pass: NAME, source })?;
        }
        graph.prune(false);
        let list: Vec<String> = rewritten
            .iter()
            .map(|(op, n)| format!("{op} ×{n}"))
            .collect();
        Ok(if list.is_empty() {
            "nothing to decompose".into()
        } else {
            format!("decomposed {}", list.join(", "))
        })
    }
}

/// Builds nodes named after the value they replace.
struct Builder<'g> {
    graph: &'g mut Graph,
    softmax_squarings: u32,
    base: String,
    source: SourceLocation,
    dtype: DType,
    count: usize,
}

impl Builder<'_> {
    fn op(&mut self, op: Op, operands: &[ValueRef]) -> Result<ValueRef, CompileError> {
        self.count += 1;
        let name = format!("{}:{}", self.base, self.count);
        emit(self.graph, NAME, op, operands, name, &self.source)
    }

    fn binary(&mut self, op: BinaryOp, a: ValueRef, b: ValueRef) -> Result<ValueRef, CompileError> {
        self.op(Op::Binary(op), &[a, b])
    }

    fn constant(&mut self, value: f64) -> ValueRef {
        self.count += 1;
        let name = format!("{}:{}", self.base, self.count);
        scalar(self.graph, value, self.dtype, name, &self.source)
    }

    fn shape(&self, v: ValueRef) -> Vec<usize> {
        self.graph.value_type(v).expect("exists").shape.clone()
    }

    /// `Σ_axis e^(x − shift) · keep` normalised; see the module docs.
    fn softmax(
        &mut self,
        x: ValueRef,
        axis: i64,
        mask: Option<ValueRef>,
    ) -> Result<ValueRef, CompileError> {
        let (mut z, mut keep) = (x, None);
        if let Some(mask) = mask {
            let threshold = self.constant(MASKED);
            let allowed = self.op(Op::Compare(CompareOp::Greater), &[mask, threshold])?;
            let zero = self.constant(0.0);
            let finite = self.op(Op::Where, &[allowed, mask, zero])?;
            z = self.binary(BinaryOp::Add, x, finite)?;
            keep = Some(self.op(Op::Cast { to: self.dtype }, &[allowed])?);
        }
        self.count += 1;
        let shift_name = format!("{}{SOFTMAX_SHIFT}{}", self.base, self.count);
        let shift = scalar(self.graph, 0.0, self.dtype, shift_name, &self.source);
        let mut shifted = self.binary(BinaryOp::Sub, z, shift)?;
        if self.softmax_squarings > 0 {
            let scale = self.constant(0.5f64.powi(self.softmax_squarings as i32));
            shifted = self.binary(BinaryOp::Mul, shifted, scale)?;
        }
        let mut e = self.op(Op::Unary(UnaryOp::Exp), &[shifted])?;
        if let Some(keep) = keep {
            e = self.binary(BinaryOp::Mul, e, keep)?;
        }
        let mut p = self.normalise_sum(e, axis)?;
        for _ in 0..self.softmax_squarings {
            let square = self.binary(BinaryOp::Mul, p, p)?;
            p = self.normalise_sum(square, axis)?;
        }
        Ok(p)
    }

    /// `x / Σ_axis x`.
    fn normalise_sum(&mut self, x: ValueRef, axis: i64) -> Result<ValueRef, CompileError> {
        let sum = self.op(
            Op::Reduce {
                op: ReduceOp::Sum,
                axes: vec![axis],
                keep_dims: true,
            },
            &[x],
        )?;
        let inverse = self.op(Op::Unary(UnaryOp::Reciprocal), &[sum])?;
        self.binary(BinaryOp::Mul, x, inverse)
    }

    /// `x · Rsqrt(mean(x²) + ε)`-style normalisation over `axes`, centred first when `centre`.
    fn normalise(
        &mut self,
        x: ValueRef,
        axes: Vec<i64>,
        epsilon: f64,
        centre: bool,
    ) -> Result<ValueRef, CompileError> {
        let mean_of = |b: &mut Self, v| {
            b.op(
                Op::Reduce {
                    op: ReduceOp::Mean,
                    axes: axes.clone(),
                    keep_dims: true,
                },
                &[v],
            )
        };
        let centred = if centre {
            let mean = mean_of(self, x)?;
            self.binary(BinaryOp::Sub, x, mean)?
        } else {
            x
        };
        let square = self.binary(BinaryOp::Mul, centred, centred)?;
        let variance = mean_of(self, square)?;
        let eps = self.constant(epsilon);
        let shifted = self.binary(BinaryOp::Add, variance, eps)?;
        let inverse = self.op(Op::Unary(UnaryOp::Rsqrt), &[shifted])?;
        self.binary(BinaryOp::Mul, centred, inverse)
    }

    /// KV heads repeated `group` times: `[B, Hkv, T, D]` → `[B, Hkv·group, T, D]`.
    fn repeat_heads(&mut self, x: ValueRef, group: usize) -> Result<ValueRef, CompileError> {
        if group == 1 {
            return Ok(x);
        }
        let shape = self.shape(x);
        let wide = self.op(Op::Unsqueeze { axes: vec![2] }, &[x])?;
        let copies = self.op(Op::Concat { axis: 2 }, &vec![wide; group])?;
        self.op(
            Op::Reshape {
                shape: vec![shape[0], shape[1] * group, shape[2], shape[3]],
            },
            &[copies],
        )
    }
}

/// The replacement of `value`, if its op is one this pass decomposes.
fn decompose(
    graph: &mut Graph,
    value: ValueRef,
    softmax_squarings: u32,
) -> Result<Option<ValueRef>, CompileError> {
    let node = graph.node(value.node).clone();
    let operands = graph.operands(value.node);
    let dtype = node.outputs[0].dtype;
    if !dtype.is_float() {
        return Ok(None);
    }
    let mut b = Builder {
        graph,
        softmax_squarings,
        base: node.output_names[0].clone(),
        source: node.source.clone(),
        dtype,
        count: 0,
    };
    let replacement = match &node.op {
        Op::Softmax { axis } => {
            let (x, mask) = split_public_mask(b.graph, operands[0]);
            b.softmax(x, *axis, mask)?
        }
        Op::Attention { scale } => {
            let (q, k, v) = (operands[0], operands[1], operands[2]);
            let group = b.shape(q)[1] / b.shape(k)[1];
            let (k, v) = (b.repeat_heads(k, group)?, b.repeat_heads(v, group)?);
            let k_t = b.op(
                Op::Transpose {
                    perm: vec![0, 1, 3, 2],
                },
                &[k],
            )?;
            let scores = b.op(Op::MatMul, &[q, k_t])?;
            let scale = b.constant(*scale);
            let scores = b.binary(BinaryOp::Mul, scores, scale)?;
            let probabilities = b.softmax(scores, -1, operands.get(3).copied())?;
            b.op(Op::MatMul, &[probabilities, v])?
        }
        Op::LayerNormalization { axis, epsilon } => {
            let rank = b.shape(operands[0]).len() as i64;
            let first = if *axis < 0 { axis + rank } else { *axis };
            let normalised = b.normalise(operands[0], (first..rank).collect(), *epsilon, true)?;
            let scaled = b.binary(BinaryOp::Mul, normalised, operands[1])?;
            match operands.get(2) {
                Some(&bias) => b.binary(BinaryOp::Add, scaled, bias)?,
                None => scaled,
            }
        }
        Op::RmsNorm { epsilon } => {
            let normalised = b.normalise(operands[0], vec![-1], *epsilon, false)?;
            b.binary(BinaryOp::Mul, normalised, operands[1])?
        }
        Op::Binary(BinaryOp::Div) if encrypted(b.graph, operands[1]) => {
            let inverse = b.op(Op::Unary(UnaryOp::Reciprocal), &[operands[1]])?;
            b.binary(BinaryOp::Mul, operands[0], inverse)?
        }
        Op::Reduce {
            op: ReduceOp::L2,
            axes,
            keep_dims,
        } => {
            let square = b.binary(BinaryOp::Mul, operands[0], operands[0])?;
            let sum = b.op(
                Op::Reduce {
                    op: ReduceOp::Sum,
                    axes: axes.clone(),
                    keep_dims: *keep_dims,
                },
                &[square],
            )?;
            b.op(Op::Unary(UnaryOp::Sqrt), &[sum])?
        }
        Op::Unary(UnaryOp::Reciprocal) => {
            let inner = b.graph.node(operands[0].node);
            match (&inner.op, b.graph.use_count(operands[0])) {
                (Op::Unary(UnaryOp::Sqrt), 1) => {
                    let radicand = b.graph.operands(operands[0].node)[0];
                    b.op(Op::Unary(UnaryOp::Rsqrt), &[radicand])?
                }
                _ => return Ok(None),
            }
        }
        Op::Binary(BinaryOp::Pow) => {
            // One exponent for every element (a scalar, or a constant tensor of equal values
            // that does not widen the result): an integer from 1 to 8.
            let Some(n) = b
                .graph
                .constant(operands[1])
                .and_then(uniform_value)
                .filter(|n| n.fract() == 0.0 && (1.0..=8.0).contains(n))
            else {
                return Ok(None);
            };
            if b.shape(operands[0]) != node.outputs[0].shape {
                return Ok(None);
            }
            power(&mut b, operands[0], n as u32)?
        }
        _ => return Ok(None),
    };
    Ok(Some(replacement))
}

/// The single value every element of `t` holds, if they all hold the same one.
fn uniform_value(t: &cachemir_ir::Tensor) -> Option<f64> {
    let values = t.to_f64();
    let first = *values.iter().next()?;
    values.iter().all(|&v| v == first).then_some(first)
}

/// `x^n` by square-and-multiply (depth ⌈log2 n⌉).
fn power(b: &mut Builder, x: ValueRef, n: u32) -> Result<ValueRef, CompileError> {
    if n == 1 {
        return Ok(x);
    }
    let half = power(b, x, n / 2)?;
    let square = b.binary(BinaryOp::Mul, half, half)?;
    if n % 2 == 1 {
        b.binary(BinaryOp::Mul, square, x)
    } else {
        Ok(square)
    }
}

/// `(x, Some(mask))` when `value = x + mask` with `x` encrypted and `mask` public; else
/// `(value, None)`.
fn split_public_mask(graph: &Graph, value: ValueRef) -> (ValueRef, Option<ValueRef>) {
    let node = graph.node(value.node);
    if matches!(node.op, Op::Binary(BinaryOp::Add)) && graph.use_count(value) == 1 {
        let operands = graph.operands(value.node);
        match (encrypted(graph, operands[0]), encrypted(graph, operands[1])) {
            (true, false) => return (operands[0], Some(operands[1])),
            (false, true) => return (operands[1], Some(operands[0])),
            _ => {}
        }
    }
    (value, None)
}
