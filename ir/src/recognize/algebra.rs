//! Reading element-wise arithmetic as algebra, so one description of a formula matches every way
//! an exporter spells it: `x * 0.5 * y`, `(x * y) * 0.5`, `x * y / 2` all read as the monomial
//! `0.5·x·y`; `Pow(x, 3)` and `x * x * x` both read as `x³`; `c * (x + d·x³)` reads as the
//! polynomial `c·x + c·d·x³`.
//!
//! Only single-use nodes are looked through (a node with another user is a leaf), and every node
//! looked through is taken into the match's interior.

use super::matcher::{Matcher, approx};
use crate::graph::ValueRef;
use crate::op::{BinaryOp, Op, UnaryOp};

/// `coef · Π vars`, the vars sorted (a var repeated n times is a power n).
#[derive(Debug, Clone, PartialEq)]
pub struct Monomial {
    pub coef: f64,
    pub vars: Vec<ValueRef>,
}

impl Monomial {
    fn constant(coef: f64) -> Self {
        Self {
            coef,
            vars: Vec::new(),
        }
    }

    fn leaf(value: ValueRef) -> Self {
        Self {
            coef: 1.0,
            vars: vec![value],
        }
    }

    fn times(mut self, other: Monomial) -> Self {
        self.coef *= other.coef;
        self.vars.extend(other.vars);
        self.vars.sort_unstable();
        self
    }

    fn scaled(mut self, factor: f64) -> Self {
        self.coef *= factor;
        self
    }

    /// The single var of a degree-1 monomial.
    pub fn linear_var(&self) -> Option<ValueRef> {
        match self.vars.as_slice() {
            [v] => Some(*v),
            _ => None,
        }
    }
}

/// A sum of monomials, like terms merged.
pub type Polynomial = Vec<Monomial>;

/// Largest integer exponent of `Pow` expanded into a product.
const MAX_POWER: usize = 4;

/// Reads `value` as a monomial, looking through its node even when it has several users
/// (the caller owns that node, typically the root).
pub fn monomial_of_owned(m: &mut Matcher, value: ValueRef) -> Monomial {
    if let Some(c) = m.scalar(value) {
        return Monomial::constant(c);
    }
    let operands = m.operands(value.node);
    match (m.op(value), operands.as_slice()) {
        (Op::Binary(BinaryOp::Mul), &[a, b]) => {
            let a = monomial(m, a);
            a.times(monomial(m, b))
        }
        (Op::Binary(BinaryOp::Div), &[a, b]) => match m.scalar(b) {
            Some(c) if c != 0.0 => monomial(m, a).scaled(1.0 / c),
            _ => Monomial::leaf(value),
        },
        (Op::Unary(UnaryOp::Neg), &[a]) => monomial(m, a).scaled(-1.0),
        (Op::Binary(BinaryOp::Pow), &[a, b]) => match integer_power(m, b) {
            Some(n) => {
                let base = monomial(m, a);
                (1..n).fold(base.clone(), |acc, _| acc.times(base.clone()))
            }
            None => Monomial::leaf(value),
        },
        _ => Monomial::leaf(value),
    }
}

/// Reads `value` as a monomial, looking through it only if it is a single-use product node.
pub fn monomial(m: &mut Matcher, value: ValueRef) -> Monomial {
    if let Some(c) = m.scalar(value) {
        return Monomial::constant(c);
    }
    if !is_product(m.op(value)) || !m.single_use(value) {
        return Monomial::leaf(value);
    }
    let mark = m.mark();
    if m.take(value, |_| true).is_none() {
        return Monomial::leaf(value);
    }
    let result = monomial_of_owned(m, value);
    if result.vars == [value] {
        // Not actually looked through (e.g. a division by a non-constant).
        m.reset(mark);
    }
    result
}

/// `value` as `coef · var` when it is a constant multiple of one value, else `1 · value`
/// (nothing taken): for scale factors applied to attention's q, k or scores.
pub fn scaled_value(m: &mut Matcher, value: ValueRef) -> (f64, ValueRef) {
    let mark = m.mark();
    let mono = monomial(m, value);
    match mono.linear_var() {
        Some(var) => (mono.coef, var),
        None => {
            m.reset(mark);
            (1.0, value)
        }
    }
}

/// Reads `value` (owned by the caller, like [`monomial_of_owned`]) as a polynomial, expanding
/// single-use sums and constant multiples of sums.
pub fn polynomial_of_owned(m: &mut Matcher, value: ValueRef) -> Polynomial {
    let operands = m.operands(value.node);
    let terms = match (m.op(value), operands.as_slice()) {
        (Op::Binary(BinaryOp::Add), &[a, b]) => {
            let mut terms = polynomial(m, a);
            terms.extend(polynomial(m, b));
            terms
        }
        (Op::Binary(BinaryOp::Sub), &[a, b]) => {
            let mut terms = polynomial(m, a);
            terms.extend(polynomial(m, b).into_iter().map(|t| t.scaled(-1.0)));
            terms
        }
        _ => {
            let mono = monomial_of_owned(m, value);
            match mono.linear_var() {
                // c · (a + b): distribute.
                Some(var) if var != value && is_sum(m.op(var)) => {
                    let coef = mono.coef;
                    polynomial(m, var)
                        .into_iter()
                        .map(|t| t.scaled(coef))
                        .collect()
                }
                _ => vec![mono],
            }
        }
    };
    merge_like_terms(terms)
}

/// Reads `value` as a polynomial, looking through it only if it is single-use.
pub fn polynomial(m: &mut Matcher, value: ValueRef) -> Polynomial {
    if let Some(c) = m.scalar(value) {
        return vec![Monomial::constant(c)];
    }
    let op = m.op(value);
    if !(is_sum(op) || is_product(op)) || !m.single_use(value) {
        return vec![Monomial::leaf(value)];
    }
    let mark = m.mark();
    if m.take(value, |_| true).is_none() {
        return vec![Monomial::leaf(value)];
    }
    let terms = polynomial_of_owned(m, value);
    if terms == [Monomial::leaf(value)] {
        m.reset(mark);
    }
    terms
}

/// The polynomial as `{degree: coef}` in the single variable `x`, or `None` when a term has any
/// other factor.
pub fn univariate(terms: &Polynomial, x: ValueRef) -> Option<Vec<(usize, f64)>> {
    let mut out: Vec<(usize, f64)> = Vec::with_capacity(terms.len());
    for t in terms {
        if t.vars.iter().any(|v| *v != x) {
            return None;
        }
        out.push((t.vars.len(), t.coef));
    }
    out.sort_by_key(|(degree, _)| *degree);
    Some(out)
}

/// Whether `univariate(terms, x)` is `expected` (degrees exact, coefficients ≈).
pub fn is_univariate(terms: &Polynomial, x: ValueRef, expected: &[(usize, f64)]) -> bool {
    univariate(terms, x).is_some_and(|got| {
        got.len() == expected.len()
            && got
                .iter()
                .zip(expected)
                .all(|((d, c), (de, ce))| d == de && approx(*c, *ce))
    })
}

/// `terms` as `constant + coef · var`: returns `(constant, coef, var)`.
pub fn affine(terms: &Polynomial) -> Option<(f64, f64, ValueRef)> {
    let constant = terms
        .iter()
        .filter(|t| t.vars.is_empty())
        .map(|t| t.coef)
        .sum();
    let mut linear = terms.iter().filter(|t| !t.vars.is_empty());
    let term = linear.next()?;
    if linear.next().is_some() {
        return None;
    }
    Some((constant, term.coef, term.linear_var()?))
}

fn integer_power(m: &Matcher, exponent: ValueRef) -> Option<usize> {
    let e = m.scalar(exponent)?;
    (1..=MAX_POWER).find(|&n| e == n as f64)
}

fn is_product(op: &Op) -> bool {
    matches!(
        op,
        Op::Binary(BinaryOp::Mul | BinaryOp::Div | BinaryOp::Pow) | Op::Unary(UnaryOp::Neg)
    )
}

fn is_sum(op: &Op) -> bool {
    matches!(
        op,
        Op::Binary(BinaryOp::Add | BinaryOp::Sub) | Op::Unary(UnaryOp::Neg)
    )
}

fn merge_like_terms(terms: Vec<Monomial>) -> Polynomial {
    let mut merged: Polynomial = Vec::with_capacity(terms.len());
    for t in terms {
        match merged.iter_mut().find(|m| m.vars == t.vars) {
            Some(m) => m.coef += t.coef,
            None => merged.push(t),
        }
    }
    merged
}
