//! Canonical keys of weight-derived linear constants, so that re-associating a product of
//! weights and public scalars never makes a new e-class.
//!
//! Folding rules build constant terms such as `(W₁·c₁)·W₂` or `W₁·(W₂·c₁)`; for e-graphs these
//! are different terms, and a chain of `n` scaled linear maps has exponentially many of them.
//! Every such term has one canonical form, `scale · F₁ · F₂ ⋯` (the matrix product of the
//! weight leaves `Fᵢ`, in order, times the product of the scalars), and the analysis merges the
//! e-classes with equal forms (see [`super::analysis::TensorAnalysis`]). One-element constants
//! are keyed by their value. Scales are compared after dropping their last 12 mantissa bits
//! (≈ 2e-13 relative): products of the same scalars in another order round differently.

use cachemir_ir::{BinaryOp, Op, TensorType};

/// The canonical form of a weight-derived constant, with its type.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConstKey {
    /// A one-element constant of this (quantised) value.
    Scalar { ty: TensorType, value: u64 },
    /// `scale · F₁ · F₂ ⋯` with `Fᵢ` weight leaves of rank 1 or 2 (so that `MatMul` is
    /// associative on them).
    Product {
        ty: TensorType,
        scale: u64,
        factors: Vec<u32>,
    },
}

/// `v` with its last 12 mantissa bits cleared, as bits.
fn quantise(v: f64) -> u64 {
    v.to_bits() & !0xfff
}

/// The key of a weight leaf (`scalar`: its value when it has one element).
pub fn leaf_key(index: u32, ty: &TensorType, scalar: Option<f64>) -> Option<ConstKey> {
    if let Some(value) = scalar {
        return Some(ConstKey::Scalar {
            ty: ty.clone(),
            value: quantise(value),
        });
    }
    (ty.dtype.is_float() && (1..=2).contains(&ty.rank())).then(|| ConstKey::Product {
        ty: ty.clone(),
        scale: quantise(1.0),
        factors: vec![index],
    })
}

/// The key of `op` applied to constant operands with these keys, with result type `ty` and
/// value `scalar` when it has one element.
pub fn op_key(
    op: &Op,
    operands: &[Option<&ConstKey>],
    ty: &TensorType,
    scalar: Option<f64>,
) -> Option<ConstKey> {
    if let Some(value) = scalar {
        return Some(ConstKey::Scalar {
            ty: ty.clone(),
            value: quantise(value),
        });
    }
    let product = |scale: f64, factors: Vec<u32>| ConstKey::Product {
        ty: ty.clone(),
        scale: quantise(scale),
        factors,
    };
    match (op, operands) {
        (Op::Binary(BinaryOp::Mul), [Some(a), Some(b)]) => match (*a, *b) {
            (ConstKey::Product { scale, factors, .. }, ConstKey::Scalar { value, .. })
            | (ConstKey::Scalar { value, .. }, ConstKey::Product { scale, factors, .. }) => {
                Some(product(
                    f64::from_bits(*scale) * f64::from_bits(*value),
                    factors.clone(),
                ))
            }
            _ => None,
        },
        (Op::MatMul, [Some(a), Some(b)]) => match (*a, *b) {
            (
                ConstKey::Product {
                    scale: s,
                    factors: f,
                    ..
                },
                ConstKey::Product {
                    scale: t,
                    factors: g,
                    ..
                },
            ) if ty.rank() <= 2 => Some(product(
                f64::from_bits(*s) * f64::from_bits(*t),
                f.iter().chain(g).copied().collect(),
            )),
            _ => None,
        },
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::{DType, Secrecy};

    #[test]
    fn products_are_keyed_independently_of_association_and_scalar_placement() {
        let m = TensorType::new(DType::F64, vec![4, 4], Secrecy::Public);
        let s = TensorType::new(DType::F64, vec![], Secrecy::Public);
        let (w1, w2) = (leaf_key(0, &m, None), leaf_key(1, &m, None));
        let c = leaf_key(2, &s, Some(0.5));
        let mul = Op::Binary(BinaryOp::Mul);
        // (W1·½)·W2 and W1·(W2·½).
        let scaled1 = op_key(&mul, &[w1.as_ref(), c.as_ref()], &m, None);
        let left = op_key(&Op::MatMul, &[scaled1.as_ref(), w2.as_ref()], &m, None);
        let scaled2 = op_key(&mul, &[c.as_ref(), w2.as_ref()], &m, None);
        let right = op_key(&Op::MatMul, &[w1.as_ref(), scaled2.as_ref()], &m, None);
        assert!(left.is_some());
        assert_eq!(left, right);
        let unscaled = op_key(&Op::MatMul, &[w1.as_ref(), w2.as_ref()], &m, None);
        assert_ne!(left, unscaled);
    }
}
