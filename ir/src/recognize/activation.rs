//! Activation functions the exporters write out element by element: SiLU and both GELUs.
//! Shapes: `x` of any shape `[..]`, the composite's output has the same shape.

use super::algebra::{affine, is_univariate, monomial_of_owned, polynomial, polynomial_of_owned};
use super::matcher::{Matcher, approx};
use super::replacement::Replacement;
use crate::graph::ValueRef;
use crate::op::{BinaryOp, GeluApproximation, Op, UnaryOp};
use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_PI};

/// GPT-2's cubic coefficient in `gelu_new`.
const GELU_TANH_CUBIC: f64 = 0.044715;

/// `Op::Silu` from `Mul(x, Sigmoid(x))` in either operand order: PyTorch's `F.silu` as traced by
/// `torch.onnx.export` (TorchScript) for Llama's `act_fn` (opset < 22 has no `Swish`).
pub fn silu(m: &mut Matcher) -> Option<Replacement> {
    let [a, b] = m
        .root_operands(|op| *op == Op::Binary(BinaryOp::Mul))?
        .try_into()
        .ok()?;
    let x = m.either(a, b, |m, x, s| {
        (m.take_unary(s, UnaryOp::Sigmoid)? == x).then_some(x)
    })?;
    Some(Replacement::single("Silu", m.root_value(), Op::Silu, &[x]))
}

/// `Op::Gelu` from its expanded formula, `0.5 · x · (1 + f(arg))`, with
/// - `Erf`: `f = erf`, `arg = x/√2` — BERT's `gelu` (MiniLM) as traced by TorchScript:
///   `Mul(Mul(x, Add(Erf(Div(x, 1.4142)), 1)), 0.5)`; also `x * 0.5` first and `Mul` by `1/√2`;
/// - `Tanh`: `f = tanh`, `arg = √(2/π) (x + 0.044715 x³)` — GPT-2's `gelu_new`:
///   `Mul(Mul(x, 0.5), Add(Tanh(Mul(Add(x, Mul(Pow(x, 3), 0.044715)), 0.7979)), 1))`; also with
///   `x*x*x` or the constant distributed over the sum.
///
/// The product is read as a monomial, so any association and order of the three factors matches.
pub fn gelu(m: &mut Matcher) -> Option<Replacement> {
    m.root_operands(|op| matches!(op, Op::Binary(BinaryOp::Mul | BinaryOp::Div)))?;
    let product = monomial_of_owned(m, m.root_value());
    let [a, b] = product.vars.as_slice().try_into().ok()?;
    if a == b || !approx(product.coef, 0.5) {
        return None;
    }
    let (x, approximation) = m.either(a, b, |m, x, bracket| {
        gelu_bracket(m, x, bracket).map(|approximation| (x, approximation))
    })?;
    Some(Replacement::single(
        format!("Gelu({approximation:?})"),
        m.root_value(),
        Op::Gelu { approximation },
        &[x],
    ))
}

/// Matches `bracket = 1 + f(arg(x))`; returns which GELU it is.
fn gelu_bracket(m: &mut Matcher, x: ValueRef, bracket: ValueRef) -> Option<GeluApproximation> {
    m.take_single(bracket, |op| *op == Op::Binary(BinaryOp::Add))?;
    let (one, coef, f) = affine(&polynomial_of_owned(m, bracket))?;
    if !approx(one, 1.0) || !approx(coef, 1.0) {
        return None;
    }
    if let Some(arg) = m.take_unary(f, UnaryOp::Erf) {
        let terms = polynomial(m, arg);
        return is_univariate(&terms, x, &[(1, FRAC_1_SQRT_2)]).then_some(GeluApproximation::Erf);
    }
    let arg = m.take_unary(f, UnaryOp::Tanh)?;
    let c = FRAC_2_PI.sqrt();
    let terms = polynomial(m, arg);
    is_univariate(&terms, x, &[(1, c), (3, c * GELU_TANH_CUBIC)]).then_some(GeluApproximation::Tanh)
}
