//! RMSNorm (Zhang & Sennrich, 2019) written out by the exporter.
//! Shapes: `x [.., D]`, `weight [D]`, output `[.., D]`; statistics over the last axis.

use super::algebra::monomial;
use super::matcher::Matcher;
use super::replacement::Replacement;
use crate::graph::ValueRef;
use crate::op::{BinaryOp, Op, ReduceOp, UnaryOp};

/// `Op::RmsNorm { epsilon }` from
/// `Mul(weight, Mul(x, Reciprocal(Sqrt(Add(ReduceMean(Pow(x, 2), axes=[-1], keepdims), eps)))))`:
/// Hugging Face `LlamaRMSNorm` traced by TorchScript, where `torch.rsqrt` becomes
/// `Div(1, Sqrt(·))` and the `.to(float32)` / `.to(input_dtype)` around it become `Cast`s to the
/// type the value already has (looked through). Also matched: `Reciprocal(Sqrt(·))`,
/// `Div(x, Sqrt(·))`, `x * x` for the square, and the weight on either side.
pub fn rms_norm(m: &mut Matcher) -> Option<Replacement> {
    let [a, b] = m
        .root_operands(|op| *op == Op::Binary(BinaryOp::Mul))?
        .try_into()
        .ok()?;
    let (x, weight, epsilon) = m.either(a, b, |m, weight, normed| {
        let normed = m.skip_noop_casts(normed);
        let (x, epsilon) = normalized(m, normed)?;
        Some((x, weight, epsilon))
    })?;
    Some(Replacement::single(
        "RmsNorm",
        m.root_value(),
        Op::RmsNorm { epsilon },
        &[x, weight],
    ))
}

/// `x / sqrt(mean(x²) + eps)` as `Mul(x, 1/sqrt(…))` or `Div(x, sqrt(…))`; returns `(x, eps)`.
fn normalized(m: &mut Matcher, value: ValueRef) -> Option<(ValueRef, f64)> {
    if let Some([p, q]) = m.take_binary(value, BinaryOp::Mul) {
        return m.either(p, q, |m, x, inverse| {
            let root = inverse_sqrt(m, inverse)?;
            Some((x, mean_square_plus_eps(m, root, x)?))
        });
    }
    let [x, denominator] = m.take_binary(value, BinaryOp::Div)?;
    let radicand = m.take_unary(denominator, UnaryOp::Sqrt)?;
    Some((x, mean_square_plus_eps(m, radicand, x)?))
}

/// `1 / sqrt(r)` as `Reciprocal(Sqrt(r))` or `Div(1, Sqrt(r))`; returns `r`.
fn inverse_sqrt(m: &mut Matcher, value: ValueRef) -> Option<ValueRef> {
    let denominator = match m.take_unary(value, UnaryOp::Reciprocal) {
        Some(d) => d,
        None => {
            let [one, d] = m.take_binary(value, BinaryOp::Div)?;
            m.is_scalar(one, 1.0).then_some(d)?
        }
    };
    m.take_unary(denominator, UnaryOp::Sqrt)
}

/// `ReduceMean(x², last axis, keepdims) + eps`, either order; returns `eps`.
fn mean_square_plus_eps(m: &mut Matcher, value: ValueRef, x: ValueRef) -> Option<f64> {
    let [p, q] = m.take_binary(value, BinaryOp::Add)?;
    m.either(p, q, |m, mean, eps| {
        let epsilon = m.scalar(eps).filter(|e| *e >= 0.0)?;
        let rank = m.rank(mean)?;
        let square = m
            .take_single(mean, |op| match op {
                Op::Reduce {
                    op: ReduceOp::Mean,
                    axes,
                    keep_dims: true,
                } => matches!(axes.as_slice(), [axis] if Matcher::is_last_axis(*axis, rank)),
                _ => false,
            })?
            .first()
            .copied()?;
        let squared = monomial(m, square);
        let is_square = squared.coef == 1.0
            && matches!(squared.vars.as_slice(), [u, v] if m.same_value(*u, x) && m.same_value(*v, x));
        is_square.then_some(epsilon)
    })
}
