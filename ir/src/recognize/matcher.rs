//! The matching toolkit every pattern family shares: read-only access to the graph from one
//! candidate root, a record of the nodes a match consumes (its *interior*) with backtracking, the
//! "no user outside the pattern" check, and constant comparison.
//!
//! A pattern function walks from the root towards the operands, calling [`Matcher::take`] for
//! every node it wants to swallow. Nothing is changed in the graph while matching; a failed
//! alternative is undone with [`Matcher::mark`] / [`Matcher::reset`] (or [`Matcher::either`]).

use crate::dtype::TensorType;
use crate::graph::{Graph, ValueRef};
use crate::infer::normalize_axis;
use crate::op::{BinaryOp, Op, UnaryOp};
use petgraph::stable_graph::NodeIndex;
use std::collections::HashSet;

/// Relative tolerance for constants in a pattern: the exporters store them as f32, whose
/// rounding (≤ 6e-8 relative) is well inside it, while a genuinely different constant is not.
pub const CONSTANT_TOLERANCE: f64 = 1e-6;

/// `a ≈ b` within [`CONSTANT_TOLERANCE`] relative to the larger magnitude.
pub fn approx(a: f64, b: f64) -> bool {
    (a - b).abs() <= CONSTANT_TOLERANCE * a.abs().max(b.abs())
}

/// A match in progress from one root node.
#[derive(Debug)]
pub struct Matcher<'g> {
    graph: &'g Graph,
    root: NodeIndex,
    interior: Vec<NodeIndex>,
}

impl<'g> Matcher<'g> {
    pub fn new(graph: &'g Graph, root: NodeIndex) -> Self {
        Self {
            graph,
            root,
            interior: Vec::new(),
        }
    }

    pub fn graph(&self) -> &'g Graph {
        self.graph
    }

    /// The root's (first) output: the value a match replaces.
    pub fn root_value(&self) -> ValueRef {
        ValueRef {
            node: self.root,
            output: 0,
        }
    }

    /// The op computing `value`.
    pub fn op(&self, value: ValueRef) -> &'g Op {
        &self.graph.node(value.node).op
    }

    pub fn ty(&self, value: ValueRef) -> Option<&'g TensorType> {
        self.graph.value_type(value)
    }

    pub fn rank(&self, value: ValueRef) -> Option<usize> {
        self.ty(value).map(TensorType::rank)
    }

    pub fn operands(&self, node: NodeIndex) -> Vec<ValueRef> {
        self.graph.operands(node)
    }

    /// The root's operands when the root's op satisfies `wanted`, else `None`.
    pub fn root_operands(&self, wanted: impl Fn(&Op) -> bool) -> Option<Vec<ValueRef>> {
        wanted(&self.graph.node(self.root).op).then(|| self.operands(self.root))
    }

    /// Whether `value` is read exactly once and is not a graph output: a node that only feeds
    /// its parent in a tree-shaped pattern.
    pub fn single_use(&self, value: ValueRef) -> bool {
        self.graph.use_count(value) == 1
    }

    /// Swallows the node computing `value` when its op satisfies `wanted` and it is an ordinary
    /// single-output node; returns its operands. The use check is left to [`Matcher::is_closed`]
    /// so that a node read twice *inside* the pattern (GQA's repeated copies) can be taken.
    pub fn take(&mut self, value: ValueRef, wanted: impl Fn(&Op) -> bool) -> Option<Vec<ValueRef>> {
        let node = self.graph.node(value.node);
        if value.node == self.root || node.outputs.len() != 1 || !wanted(&node.op) {
            return None;
        }
        if !self.interior.contains(&value.node) {
            self.interior.push(value.node);
        }
        Some(self.operands(value.node))
    }

    /// [`Matcher::take`] for a node that must also be [single-use](Matcher::single_use).
    pub fn take_single(
        &mut self,
        value: ValueRef,
        wanted: impl Fn(&Op) -> bool,
    ) -> Option<Vec<ValueRef>> {
        if !self.single_use(value) {
            return None;
        }
        self.take(value, wanted)
    }

    /// Takes a binary node of the given kind; returns its two operands.
    pub fn take_binary(&mut self, value: ValueRef, kind: BinaryOp) -> Option<[ValueRef; 2]> {
        let operands = self.take_single(value, |op| *op == Op::Binary(kind))?;
        operands.try_into().ok()
    }

    /// Takes a unary node of the given kind; returns its operand.
    pub fn take_unary(&mut self, value: ValueRef, kind: UnaryOp) -> Option<ValueRef> {
        let operands = self.take_single(value, |op| *op == Op::Unary(kind))?;
        operands.first().copied()
    }

    /// Follows `value` up through single-use `Cast`s to the type it already has (the TorchScript
    /// exporter wraps f32 values in `Cast(to=f32)`), swallowing them; returns the first value that
    /// is not such a cast.
    pub fn skip_noop_casts(&mut self, mut value: ValueRef) -> ValueRef {
        while let Some(source) = self.noop_cast_source(value)
            && self.single_use(value)
            && self.take(value, |_| true).is_some()
        {
            value = source;
        }
        value
    }

    /// Whether two values are equal up to no-op casts on either side (nothing is taken).
    pub fn same_value(&self, mut a: ValueRef, mut b: ValueRef) -> bool {
        while let Some(source) = self.noop_cast_source(a) {
            a = source;
        }
        while let Some(source) = self.noop_cast_source(b) {
            b = source;
        }
        a == b
    }

    fn noop_cast_source(&self, value: ValueRef) -> Option<ValueRef> {
        let Op::Cast { to } = self.op(value) else {
            return None;
        };
        let source = *self.operands(value.node).first()?;
        (self.ty(source)?.dtype == *to).then_some(source)
    }

    /// The value of a one-element float constant (a scalar however it is shaped).
    pub fn scalar(&self, value: ValueRef) -> Option<f64> {
        let tensor = self.graph.constant(value)?;
        if tensor.len() != 1 || !tensor.dtype().is_float() {
            return None;
        }
        tensor.first_f64()
    }

    /// Whether `value` is a scalar constant ≈ `expected`.
    pub fn is_scalar(&self, value: ValueRef, expected: f64) -> bool {
        self.scalar(value).is_some_and(|c| approx(c, expected))
    }

    /// Whether `axis` of a reduction/softmax/concat over `value` (of rank `rank`) is the last.
    pub fn is_last_axis(axis: i64, rank: usize) -> bool {
        rank > 0 && normalize_axis(axis, rank).is_ok_and(|a| a == rank - 1)
    }

    /// A checkpoint for [`Matcher::reset`].
    pub fn mark(&self) -> usize {
        self.interior.len()
    }

    /// Forgets every node taken since `mark`.
    pub fn reset(&mut self, mark: usize) {
        self.interior.truncate(mark);
    }

    /// Tries `f(a, b)`, then `f(b, a)`: for the operands of a commutative op.
    pub fn either<T>(
        &mut self,
        a: ValueRef,
        b: ValueRef,
        mut f: impl FnMut(&mut Self, ValueRef, ValueRef) -> Option<T>,
    ) -> Option<T> {
        let mark = self.mark();
        if let Some(found) = f(self, a, b) {
            return Some(found);
        }
        self.reset(mark);
        let found = f(self, b, a);
        if found.is_none() {
            self.reset(mark);
        }
        found
    }

    /// Whether the match may replace its root: every interior node is read only by interior
    /// nodes or the root, and none is a graph output. Otherwise fusing would keep those nodes
    /// alive and compute the subexpression twice.
    pub fn is_closed(&self) -> bool {
        let inside: HashSet<NodeIndex> = self
            .interior
            .iter()
            .copied()
            .chain(std::iter::once(self.root))
            .collect();
        let outputs: HashSet<NodeIndex> =
            self.graph.outputs().iter().map(|o| o.value.node).collect();
        self.interior.iter().all(|node| {
            !outputs.contains(node)
                && self
                    .graph
                    .users(*node)
                    .iter()
                    .all(|user| inside.contains(user))
        })
    }
}
