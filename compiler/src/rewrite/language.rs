//! The e-graph language over Tensor IR: one e-node per IR op, with the op's attributes inside
//! the node (so two transposes with different permutations are different operators), graph
//! inputs and weights as opaque leaves, and one projection node per output of a multi-output op.
//!
//! Patterns in [`super::rules`] name the attribute-free ops by the short names of
//! [`short_name`] (`add`, `mul`, `recip`, `rsqrt`, `matmul`, …) plus canonical attributed
//! forms: `reduce-mean`, `reduce-sum`, `reduce-max` (last axis, keep dims) and `softmax` (last
//! axis).

use cachemir_ir::{BinaryOp, GeluApproximation, Op, ReduceOp, UnaryOp};
use egg::{FromOp, FromOpError, Id, Language};
use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;

/// An IR op (never `Input`, `Constant` or `SyntheticWeight`: those are [`Kind::Leaf`]s) with
/// a canonical key, so that it can be hashed and ordered although its attributes hold floats.
/// The key is the op's JSON form: exact for every f64 (serde_json round-trips them).
#[derive(Debug, Clone)]
pub struct IrOp {
    op: Arc<Op>,
    key: Arc<str>,
}

impl IrOp {
    /// Wraps `op` (never `Input`, `Constant` or `SyntheticWeight`).
    pub fn new(op: Op) -> Self {
        // Serialising an attribute-only op cannot fail; the fallback keeps distinct ops
        // distinct anyway.
        let key = serde_json::to_string(&op).unwrap_or_else(|_| format!("{op:?}"));
        Self {
            op: Arc::new(op),
            key: key.into(),
        }
    }

    /// The wrapped op.
    pub fn op(&self) -> &Op {
        &self.op
    }
}

impl PartialEq for IrOp {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for IrOp {}

impl Hash for IrOp {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl PartialOrd for IrOp {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IrOp {
    fn cmp(&self, other: &Self) -> Ordering {
        self.key.cmp(&other.key)
    }
}

/// What an e-node is.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// A graph input, constant or synthetic weight of the source graph, by its index in the
    /// leaf table ([`super::analysis::TensorAnalysis::leaves`]). Weight data never enters the
    /// e-graph.
    Leaf(u32),
    /// Output `i` of a multi-output op (`Split`); the op is the only child.
    Output(u32),
    /// The only child, encrypted by the client although it is computed from public values
    /// (`Graph::encrypt_from`): same value, encrypted type.
    Encrypt,
    /// An IR op applied to the children.
    Op(IrOp),
}

/// An e-node: a [`Kind`] and its children (the operands, in order).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TensorNode {
    pub kind: Kind,
    pub children: Vec<Id>,
}

impl TensorNode {
    /// Leaf `index` of the leaf table.
    pub fn leaf(index: u32) -> Self {
        Self {
            kind: Kind::Leaf(index),
            children: Vec::new(),
        }
    }

    /// Output `index` of the multi-output op in class `of`.
    pub fn output(index: u32, of: Id) -> Self {
        Self {
            kind: Kind::Output(index),
            children: vec![of],
        }
    }

    /// `op` applied to `children` (its operands, in order).
    pub fn op(op: Op, children: Vec<Id>) -> Self {
        Self {
            kind: Kind::Op(IrOp::new(op)),
            children,
        }
    }

    /// The value of class `of`, encrypted by the client.
    pub fn encrypt(of: Id) -> Self {
        Self {
            kind: Kind::Encrypt,
            children: vec![of],
        }
    }

    /// The IR op, for [`Kind::Op`] nodes.
    pub fn ir_op(&self) -> Option<&Op> {
        match &self.kind {
            Kind::Op(op) => Some(op.op()),
            _ => None,
        }
    }
}

/// Discriminates e-nodes for egg's matching shortcut: two nodes match when their kinds (op and
/// attributes) and arities are equal.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Discriminant {
    Leaf(u32),
    Output(u32),
    Encrypt,
    Op(Arc<str>),
}

impl Language for TensorNode {
    type Discriminant = Discriminant;

    fn discriminant(&self) -> Discriminant {
        match &self.kind {
            Kind::Leaf(i) => Discriminant::Leaf(*i),
            Kind::Output(i) => Discriminant::Output(*i),
            Kind::Encrypt => Discriminant::Encrypt,
            Kind::Op(op) => Discriminant::Op(op.key.clone()),
        }
    }

    fn matches(&self, other: &Self) -> bool {
        self.kind == other.kind && self.children.len() == other.children.len()
    }

    fn children(&self) -> &[Id] {
        &self.children
    }

    fn children_mut(&mut self) -> &mut [Id] {
        &mut self.children
    }
}

/// The ops patterns may name, with their short names. Attribute-free except `reduce-mean`,
/// `reduce-sum`, `reduce-max` and `softmax`, which stand for their canonical last-axis forms (the converter writes every
/// single-axis reduction and softmax with a negative axis, see [`super::convert`]).
fn named_ops() -> Vec<(&'static str, Op)> {
    use BinaryOp as B;
    use UnaryOp as U;
    vec![
        ("add", Op::Binary(B::Add)),
        ("sub", Op::Binary(B::Sub)),
        ("mul", Op::Binary(B::Mul)),
        ("div", Op::Binary(B::Div)),
        ("pow", Op::Binary(B::Pow)),
        ("max", Op::Binary(B::Max)),
        ("min", Op::Binary(B::Min)),
        ("neg", Op::Unary(U::Neg)),
        ("abs", Op::Unary(U::Abs)),
        ("sqrt", Op::Unary(U::Sqrt)),
        ("recip", Op::Unary(U::Reciprocal)),
        ("rsqrt", Op::Unary(U::Rsqrt)),
        ("exp", Op::Unary(U::Exp)),
        ("log", Op::Unary(U::Log)),
        ("erf", Op::Unary(U::Erf)),
        ("tanh", Op::Unary(U::Tanh)),
        ("sigmoid", Op::Unary(U::Sigmoid)),
        ("matmul", Op::MatMul),
        ("silu", Op::Silu),
        (
            "gelu-erf",
            Op::Gelu {
                approximation: GeluApproximation::Erf,
            },
        ),
        (
            "gelu-tanh",
            Op::Gelu {
                approximation: GeluApproximation::Tanh,
            },
        ),
        ("rope", Op::Rope),
        ("softmax", Op::Softmax { axis: -1 }),
        ("reduce-mean", last_axis(ReduceOp::Mean)),
        ("reduce-sum", last_axis(ReduceOp::Sum)),
        ("reduce-max", last_axis(ReduceOp::Max)),
    ]
}

/// The reduction over the last axis that keeps it (as size 1).
fn last_axis(op: ReduceOp) -> Op {
    Op::Reduce {
        op,
        axes: vec![-1],
        keep_dims: true,
    }
}

/// The pattern name of an op, if it has one.
pub fn short_name(op: &Op) -> Option<&'static str> {
    named_ops()
        .into_iter()
        .find(|(_, named)| named == op)
        .map(|(name, _)| name)
}

impl fmt::Display for TensorNode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            Kind::Leaf(i) => write!(f, "%{i}"),
            Kind::Output(i) => write!(f, "output{i}"),
            Kind::Encrypt => write!(f, "encrypt"),
            Kind::Op(op) => match short_name(op.op()) {
                Some(name) => f.write_str(name),
                None => write!(f, "{}[{}]", op.op().name(), op.op().attributes().join(",")),
            },
        }
    }
}

impl FromOp for TensorNode {
    type Error = FromOpError;

    fn from_op(name: &str, children: Vec<Id>) -> Result<Self, Self::Error> {
        // `%i` is leaf `i`, as printed (for goal tests over a known leaf table).
        if let Some(index) = name.strip_prefix('%').and_then(|i| i.parse().ok())
            && children.is_empty()
        {
            return Ok(TensorNode::leaf(index));
        }
        match named_ops().into_iter().find(|(n, _)| *n == name) {
            Some((_, op)) => Ok(TensorNode::op(op, children)),
            None => Err(FromOpError::new(name, children)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_names_round_trip() {
        for (name, op) in named_ops() {
            let node = TensorNode::from_op(name, vec![]).unwrap();
            assert_eq!(node.ir_op(), Some(&op));
            assert_eq!(node.to_string(), name);
        }
    }

    #[test]
    fn attributes_distinguish_ops() {
        let a = TensorNode::op(Op::Transpose { perm: vec![1, 0] }, vec![Id::from(0)]);
        let b = TensorNode::op(Op::Transpose { perm: vec![0, 1] }, vec![Id::from(0)]);
        assert!(!a.matches(&b));
        assert_eq!(a.to_string(), "Transpose[perm=[1, 0]]");
    }
}
