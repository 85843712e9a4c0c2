//! The e-class analysis: what every e-class is known to be — its type (element type, shape and
//! secrecy, from [`cachemir_ir::infer::infer`]), whether it depends on weights only, its value
//! when it is a one-element constant, and an interval holding every element.
//!
//! Rules read these facts in their guards (a scalar folds into a weight only when it is a
//! constant; a rewrite applies only when the result keeps the type, see
//! [`super::rules::TypeChecked`]); the cost model reads the secrecy.

use super::canonical::{ConstKey, leaf_key, op_key};
use super::language::{Kind, TensorNode};
use cachemir_ir::infer::infer;
use cachemir_ir::{BinaryOp, Op, Secrecy, TensorType, UnaryOp};
use egg::{Analysis, DidMerge, EGraph, Id};
use std::collections::HashMap;

/// The e-graph of a rewrite.
pub type TensorGraph = EGraph<TensorNode, TensorAnalysis>;

/// What the analysis knows about a leaf of the source graph.
#[derive(Debug, Clone, PartialEq)]
pub struct LeafFacts {
    pub ty: TensorType,
    /// A weight (`Constant` or `SyntheticWeight`), as opposed to a graph input.
    pub constant: bool,
    /// The value of a one-element `Constant`.
    pub scalar: Option<f64>,
    /// `[min, max]` of a `Constant`'s data.
    pub range: Option<(f64, f64)>,
}

/// The analysis state: the facts of the source graph's leaves, indexed by [`Kind::Leaf`], and
/// the e-class of every canonical constant seen (classes with equal keys are merged).
#[derive(Debug, Clone, Default)]
pub struct TensorAnalysis {
    pub leaves: Vec<LeafFacts>,
    pub constants: HashMap<ConstKey, Id>,
}

/// The facts of one e-class.
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    /// The type of each output (one, except for a multi-output op's class). Empty when shape
    /// inference rejects every node of the class: such a class is never extracted.
    pub types: Vec<TensorType>,
    /// Computed from weights only (no graph input): a public value the server may precompute.
    pub constant: bool,
    /// The value, when the class is a constant with one element.
    pub scalar: Option<f64>,
    /// An interval holding every element, when known.
    pub range: Option<(f64, f64)>,
    /// The canonical form of a weight-derived linear constant ([`super::canonical`]).
    pub key: Option<ConstKey>,
}

impl Facts {
    /// The (first) output type.
    pub fn ty(&self) -> Option<&TensorType> {
        self.types.first()
    }

    /// Whether the (first) output is a ciphertext.
    pub fn is_encrypted(&self) -> bool {
        self.ty().is_some_and(|t| t.secrecy == Secrecy::Encrypted)
    }
}

impl Analysis<TensorNode> for TensorAnalysis {
    type Data = Facts;

    fn make(egraph: &mut TensorGraph, enode: &TensorNode, _id: Id) -> Facts {
        let child = |i: usize| &egraph[enode.children[i]].data;
        match &enode.kind {
            Kind::Leaf(i) => match egraph.analysis.leaves.get(*i as usize) {
                Some(leaf) => Facts {
                    types: vec![leaf.ty.clone()],
                    constant: leaf.constant,
                    scalar: leaf.scalar,
                    range: leaf.range.or(leaf.scalar.map(|v| (v, v))),
                    key: leaf
                        .constant
                        .then(|| leaf_key(*i, &leaf.ty, leaf.scalar))
                        .flatten(),
                },
                None => ill_typed(),
            },
            Kind::Output(i) => {
                let of = child(0);
                match of.types.get(*i as usize) {
                    Some(ty) => Facts {
                        types: vec![ty.clone()],
                        constant: of.constant,
                        scalar: None,
                        range: None,
                        key: None,
                    },
                    None => ill_typed(),
                }
            }
            Kind::Encrypt => {
                let of = child(0);
                let types = of
                    .types
                    .iter()
                    .map(|t| TensorType {
                        secrecy: Secrecy::Encrypted,
                        ..t.clone()
                    })
                    .collect();
                // Not `constant`: an encrypted value is no weight to fold.
                Facts {
                    types,
                    constant: false,
                    scalar: None,
                    range: of.range,
                    key: None,
                }
            }
            Kind::Op(op) => {
                let operands: Vec<&Facts> =
                    enode.children.iter().map(|c| &egraph[*c].data).collect();
                make_op(op.op(), &operands)
            }
        }
    }

    fn merge(&mut self, to: &mut Facts, from: Facts) -> DidMerge {
        let before = to.clone();
        if to.types.is_empty() {
            to.types = from.types.clone();
        }
        // Two forms of one value: what either proves holds for both.
        to.constant |= from.constant;
        to.scalar = to.scalar.or(from.scalar);
        if to.key.is_none() {
            to.key = from.key.clone();
        }
        to.range = match (to.range, from.range) {
            (Some((a, b)), Some((c, d))) if a.max(c) <= b.min(d) => Some((a.max(c), b.min(d))),
            (Some(r), _) | (None, Some(r)) => Some(r),
            (None, None) => None,
        };
        DidMerge(*to != before, *to != from)
    }

    /// Merges the class with the class of an equal canonical constant, if one was seen.
    fn modify(egraph: &mut TensorGraph, id: Id) {
        let Some(key) = egraph[id].data.key.clone() else {
            return;
        };
        match egraph.analysis.constants.get(&key).copied() {
            Some(other) => {
                egraph.union(id, other);
            }
            None => {
                egraph.analysis.constants.insert(key, id);
            }
        }
    }
}

fn ill_typed() -> Facts {
    Facts {
        types: Vec::new(),
        constant: false,
        scalar: None,
        range: None,
        key: None,
    }
}

/// The facts of `op` applied to operands with these facts.
fn make_op(op: &Op, operands: &[&Facts]) -> Facts {
    let types: Option<Vec<TensorType>> = operands.iter().map(|f| f.ty().cloned()).collect();
    let Some(types) = types.and_then(|t| infer(op, &t).ok()) else {
        return ill_typed();
    };
    let constant = !operands.is_empty() && operands.iter().all(|f| f.constant);
    let scalars: Option<Vec<f64>> = operands.iter().map(|f| f.scalar).collect();
    let one_element = types.len() == 1 && types[0].len() == 1 && types[0].dtype.is_float();
    let scalar = match scalars {
        Some(values) if constant && one_element => eval_scalar(op, &values),
        _ => None,
    };
    let ranges: Vec<Option<(f64, f64)>> = operands.iter().map(|f| f.range).collect();
    let range = scalar.map(|v| (v, v)).or_else(|| range_of(op, &ranges));
    let keys: Vec<Option<&ConstKey>> = operands.iter().map(|f| f.key.as_ref()).collect();
    let key = match types.as_slice() {
        [ty] if constant => op_key(op, &keys, ty, scalar),
        _ => None,
    };
    Facts {
        types,
        constant,
        scalar,
        range,
        key,
    }
}

/// Element-wise arithmetic on one-element constants (the subset rules need to read scalars
/// through, e.g. `1/√2` written as `recip(sqrt(2))`).
fn eval_scalar(op: &Op, values: &[f64]) -> Option<f64> {
    let v = match (op, values) {
        (Op::Unary(u), [x]) => match u {
            UnaryOp::Neg => -x,
            UnaryOp::Abs => x.abs(),
            UnaryOp::Sqrt => x.sqrt(),
            UnaryOp::Reciprocal => 1.0 / x,
            UnaryOp::Rsqrt => 1.0 / x.sqrt(),
            UnaryOp::Exp => x.exp(),
            UnaryOp::Log => x.ln(),
            _ => return None,
        },
        (Op::Binary(b), [x, y]) => match b {
            BinaryOp::Add => x + y,
            BinaryOp::Sub => x - y,
            BinaryOp::Mul => x * y,
            BinaryOp::Div => x / y,
            BinaryOp::Pow => x.powf(*y),
            BinaryOp::Max => x.max(*y),
            BinaryOp::Min => x.min(*y),
            _ => return None,
        },
        (Op::Cast { .. } | Op::Reshape { .. } | Op::Unsqueeze { .. } | Op::Squeeze { .. }, [x]) => {
            *x
        }
        _ => return None,
    };
    v.is_finite().then_some(v)
}

/// Interval bounds of an op's result from its operands' bounds (the ops whose range is known
/// whatever the input, and monotone arithmetic on known bounds).
fn range_of(op: &Op, ranges: &[Option<(f64, f64)>]) -> Option<(f64, f64)> {
    let first = ranges.first().copied().flatten();
    match op {
        Op::Unary(UnaryOp::Exp) => Some((first.map_or(0.0, |(lo, _)| lo.exp()), f64::INFINITY)),
        Op::Unary(UnaryOp::Sigmoid) | Op::Softmax { .. } => Some((0.0, 1.0)),
        Op::Unary(UnaryOp::Tanh | UnaryOp::Erf) => Some((-1.0, 1.0)),
        Op::Unary(UnaryOp::Abs | UnaryOp::Sqrt | UnaryOp::Rsqrt) => Some((0.0, f64::INFINITY)),
        Op::Clip { min, max } => Some((
            min.unwrap_or(f64::NEG_INFINITY),
            max.unwrap_or(f64::INFINITY),
        )),
        Op::Binary(BinaryOp::Add) => {
            let ((a, b), (c, d)) = (first?, ranges.get(1).copied().flatten()?);
            Some((a + c, b + d))
        }
        Op::Binary(BinaryOp::Mul) => {
            let ((a, b), (c, d)) = (first?, ranges.get(1).copied().flatten()?);
            let products = [a * c, a * d, b * c, b * d];
            let lo = products.iter().copied().fold(f64::INFINITY, f64::min);
            let hi = products.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
        }
        Op::Binary(BinaryOp::Max) => {
            let lows: Vec<f64> = ranges.iter().filter_map(|r| r.map(|(lo, _)| lo)).collect();
            lows.iter()
                .copied()
                .reduce(f64::max)
                .map(|lo| (lo, f64::INFINITY))
        }
        Op::Reshape { .. }
        | Op::Transpose { .. }
        | Op::Squeeze { .. }
        | Op::Unsqueeze { .. }
        | Op::Flatten { .. }
        | Op::Expand { .. }
        | Op::Slice { .. } => first,
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::DType;

    fn scalar(v: f64) -> Facts {
        Facts {
            types: vec![TensorType::new(DType::F64, vec![], Secrecy::Public)],
            constant: true,
            scalar: Some(v),
            range: Some((v, v)),
            key: None,
        }
    }

    #[test]
    fn scalars_are_read_through_arithmetic() {
        let two = scalar(2.0);
        let root = make_op(&Op::Unary(UnaryOp::Sqrt), &[&two]);
        let inverse = make_op(&Op::Unary(UnaryOp::Reciprocal), &[&root]);
        assert!((inverse.scalar.unwrap() - std::f64::consts::FRAC_1_SQRT_2).abs() < 1e-15);
        assert!(inverse.constant);
    }

    #[test]
    fn ill_typed_operands_give_no_type() {
        let a = Facts {
            types: vec![TensorType::new(DType::F64, vec![2, 3], Secrecy::Encrypted)],
            constant: false,
            scalar: None,
            range: None,
            key: None,
        };
        let b = Facts {
            types: vec![TensorType::new(DType::F64, vec![4, 3], Secrecy::Public)],
            ..a.clone()
        };
        assert!(make_op(&Op::MatMul, &[&a, &b]).types.is_empty());
        assert!(make_op(&Op::MatMul, &[&a]).types.is_empty());
    }
}
