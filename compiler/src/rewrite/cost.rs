//! The FHE cost model that drives extraction and that the report prints before and after.
//!
//! It counts, per Tensor IR op on encrypted data (CKKS; each tensor op is taken as one
//! vectorised ciphertext operation, before layouts are chosen):
//! - **ct-ct mults**: products of two encrypted values (each needs a relinearisation);
//! - **ct-pt mults**: products of an encrypted value and a public one (weights, masks, tables);
//! - **depth**: the longest chain of multiplications (each consumes a level; bootstraps follow
//!   from it), a max over operands, not a sum;
//! - **rotations**: an estimate: a vector × public `k×n` matrix costs `2√k` (baby-step
//!   giant-step diagonal method, Halevi & Shoup 2014), a reduction over `n` slots `log₂ n`,
//!   moving data along the last axis (rotate-half, slicing, concatenation) one per piece;
//! - **non-linear**: evaluations of functions that a later pass replaces by polynomials or
//!   Newton iterations; their mults and depth are included above with fixed estimates
//!   ([`ACTIVATION`] for exp/erf/tanh/sigmoid/GELU/SiLU-like functions, [`INVERSE`] for 1/x,
//!   √x and 1/√x).
//!
//! An op whose operands are all public costs nothing in FHE (client or server computes it in
//! the clear); it is only counted in `public_ops`, the last tie-breaker. The fields are ordered
//! as extraction compares them: depth first (levels and bootstraps dominate latency), then
//! ct-ct mults, rotations, ct-pt mults.

use super::analysis::TensorGraph;
use super::language::{Kind, TensorNode};
use cachemir_ir::infer::infer;
use cachemir_ir::{BinaryOp, Graph, Op, ReduceOp, Secrecy, TensorType, UnaryOp};
use egg::{CostFunction, Id};
use std::collections::HashMap;
use std::fmt;

/// Estimated FHE cost of a graph (or of an extracted term). Compared lexicographically in field
/// order. Fields saturate rather than overflow; [`FheCost::INFINITE`] marks what cannot be
/// built.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FheCost {
    /// Multiplicative depth on encrypted data (levels consumed along the longest path).
    pub depth: u32,
    /// Ciphertext × ciphertext multiplications.
    pub ct_ct_mults: u64,
    /// Estimated slot rotations (key switches).
    pub rotations_estimate: u64,
    /// Ciphertext × plaintext multiplications.
    pub ct_pt_mults: u64,
    /// Non-polynomial functions evaluated on encrypted data.
    pub nonlinear: u64,
    /// Ops on encrypted data, weighted: 1 each, 2 for forms with a canonical cheaper spelling
    /// (`Div` by a public value, `Pow`), so that ties go to the canonical form.
    pub encrypted_ops: u64,
    /// Ops on public data only (free in FHE; the last tie-breaker).
    pub public_ops: u64,
}

/// Depth and ct-ct mults of a function approximated by one polynomial (degree ≈ 31 by
/// Paterson–Stockmeyer: depth 5, about 10 non-scalar products).
pub const ACTIVATION: (u32, u64) = (5, 10);
/// Depth and ct-ct mults of 1/x, √x or 1/√x by three Newton iterations after an initial
/// polynomial guess.
pub const INVERSE: (u32, u64) = (9, 9);

impl FheCost {
    /// The cost of something that cannot be built (an ill-typed e-node).
    pub const INFINITE: FheCost = FheCost {
        depth: u32::MAX,
        ct_ct_mults: u64::MAX,
        rotations_estimate: u64::MAX,
        ct_pt_mults: u64::MAX,
        nonlinear: u64::MAX,
        encrypted_ops: u64::MAX,
        public_ops: u64::MAX,
    };

    /// `self` after `other` in sequence: sums, with depths added.
    fn then(self, other: FheCost) -> FheCost {
        FheCost {
            depth: self.depth.saturating_add(other.depth),
            ..self.plus(other)
        }
    }

    /// Both, side by side: sums, with the larger depth.
    fn plus(self, other: FheCost) -> FheCost {
        FheCost {
            depth: self.depth.max(other.depth),
            ct_ct_mults: self.ct_ct_mults.saturating_add(other.ct_ct_mults),
            rotations_estimate: self
                .rotations_estimate
                .saturating_add(other.rotations_estimate),
            ct_pt_mults: self.ct_pt_mults.saturating_add(other.ct_pt_mults),
            nonlinear: self.nonlinear.saturating_add(other.nonlinear),
            encrypted_ops: self.encrypted_ops.saturating_add(other.encrypted_ops),
            public_ops: self.public_ops.saturating_add(other.public_ops),
        }
    }
}

impl fmt::Display for FheCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "depth {}, ct-ct mults {}, rotations ~{}, ct-pt mults {}, non-linear {}, encrypted ops {}, public ops {}",
            self.depth,
            self.ct_ct_mults,
            self.rotations_estimate,
            self.ct_pt_mults,
            self.nonlinear,
            self.encrypted_ops,
            self.public_ops
        )
    }
}

/// Building blocks of per-op costs.
fn step(depth: u32, ct_ct: u64, ct_pt: u64, rotations: u64) -> FheCost {
    FheCost {
        depth,
        ct_ct_mults: ct_ct,
        rotations_estimate: rotations,
        ct_pt_mults: ct_pt,
        encrypted_ops: 1,
        ..FheCost::default()
    }
}

fn function((depth, ct_ct): (u32, u64)) -> FheCost {
    FheCost {
        nonlinear: 1,
        ..step(depth, ct_ct, 0, 0)
    }
}

fn log2(n: usize) -> u64 {
    u64::from(n.max(1).next_power_of_two().trailing_zeros())
}

fn bsgs(k: usize) -> u64 {
    (2.0 * (k.max(1) as f64).sqrt()).ceil() as u64
}

fn last_dim(ty: &TensorType) -> usize {
    ty.shape.last().copied().unwrap_or(1)
}

/// Whether a permutation moves only axes of size 1 (then it is a reshape: no data moves).
pub fn is_trivial_permutation(shape: &[usize], perm: &[usize]) -> bool {
    let kept: Vec<usize> = perm
        .iter()
        .copied()
        .filter(|&a| shape.get(a) != Some(&1))
        .collect();
    kept.windows(2).all(|w| w[0] < w[1])
}

/// The FHE cost of one op with these operand and result types (no operand costs included).
pub fn op_cost(op: &Op, operands: &[&TensorType], outputs: &[TensorType]) -> FheCost {
    let encrypted: Vec<bool> = operands
        .iter()
        .map(|t| t.secrecy == Secrecy::Encrypted)
        .collect();
    let any = encrypted.iter().any(|&e| e);
    if !any {
        return FheCost {
            public_ops: 1,
            ..FheCost::default()
        };
    }
    let both = encrypted.len() >= 2 && encrypted[0] && encrypted[1];
    let first = operands[0];
    let out = outputs.first().unwrap_or(first);
    let mult = || {
        if both {
            step(1, 1, 0, 0)
        } else {
            step(1, 0, 1, 0)
        }
    };
    let free = step(0, 0, 0, 0);
    match op {
        Op::Binary(BinaryOp::Mul) => mult(),
        Op::Binary(BinaryOp::Add | BinaryOp::Sub) => free,
        Op::Binary(BinaryOp::Div) if !encrypted.get(1).copied().unwrap_or(false) => FheCost {
            encrypted_ops: 2,
            ..step(1, 0, 1, 0)
        },
        Op::Binary(BinaryOp::Div) => function(INVERSE).then(step(1, 1, 0, 0)),
        Op::Binary(BinaryOp::Pow) => FheCost {
            encrypted_ops: 2,
            ..function(ACTIVATION).then(function(ACTIVATION))
        },
        Op::Binary(_) | Op::Compare(_) | Op::Clip { .. } => function(ACTIVATION),
        Op::Unary(UnaryOp::Neg) | Op::Cast { .. } => free,
        Op::Unary(UnaryOp::Sqrt | UnaryOp::Reciprocal | UnaryOp::Rsqrt) => function(INVERSE),
        Op::Unary(_) | Op::Gelu { .. } | Op::Silu => function(ACTIVATION),
        Op::Polynomial(p) => {
            let degree = p.degree().max(1);
            FheCost {
                nonlinear: 1,
                ..step(log2(degree + 1) as u32, bsgs(degree) + log2(degree), 0, 0)
            }
        }
        Op::Where => {
            if encrypted[0] {
                step(1, 2, 0, 0)
            } else {
                step(1, 0, 2, 0)
            }
        }
        Op::MatMul | Op::Gemm { .. } => {
            let k = last_dim(first);
            if both {
                step(1, 1, 0, log2(k))
            } else {
                step(1, 0, 1, bsgs(k))
            }
        }
        Op::Softmax { .. } => {
            let n = last_dim(first);
            function(ACTIVATION)
                .then(step(0, 0, 0, log2(n)))
                .then(function(INVERSE))
                .then(step(1, 1, 0, log2(n)))
        }
        Op::LayerNormalization { .. } | Op::RmsNorm { .. } => {
            let n = last_dim(first);
            let centre = if matches!(op, Op::LayerNormalization { .. }) {
                step(1, 0, 1, log2(n))
            } else {
                free
            };
            centre
                .then(step(1, 1, 0, 0))
                .then(step(1, 0, 1, log2(n)))
                .then(function(INVERSE))
                .then(step(1, 1, 0, 0))
                .then(step(1, 0, 1, 0))
        }
        Op::Reduce { op: reduce, .. } => {
            let n = first.len() / out.len().max(1);
            match reduce {
                ReduceOp::Sum => step(0, 0, 0, log2(n)),
                ReduceOp::Mean => step(1, 0, 1, log2(n)),
                ReduceOp::Max => FheCost {
                    nonlinear: log2(n),
                    ..step(
                        ACTIVATION.0 * log2(n) as u32,
                        ACTIVATION.1 * log2(n),
                        0,
                        log2(n),
                    )
                },
                ReduceOp::L2 => step(1, 1, 0, log2(n)).then(function(INVERSE)),
            }
        }
        Op::Transpose { perm } if is_trivial_permutation(&first.shape, perm) => free,
        Op::Transpose { .. } => step(1, 0, bsgs(first.len()), bsgs(first.len())),
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. } => free,
        Op::Expand { .. } => step(0, 0, 0, log2(out.len() / first.len().max(1))),
        Op::Concat { .. } | Op::Split { .. } | Op::Slice { .. } | Op::Gather { .. } => {
            let pieces = (operands.len().max(outputs.len())) as u64;
            let moves_last_axis = last_dim(out) != last_dim(first)
                || outputs.iter().any(|o| last_dim(o) != last_dim(first));
            if moves_last_axis {
                step(1, 0, pieces, pieces)
            } else {
                free
            }
        }
        Op::Rope => step(1, 0, 2, 2).then(step(1, 0, 2, 0)),
        Op::Attention { .. } => {
            let d = last_dim(first);
            let t = operands
                .get(1)
                .map_or(1, |k| k.shape.iter().rev().nth(1).copied().unwrap_or(1));
            step(1, 1, 0, log2(d))
                .then(step(1, 0, 1, 0))
                .then(function(ACTIVATION))
                .then(function(INVERSE))
                .then(step(1, 1, 0, log2(t)))
        }
        Op::Input | Op::Constant(_) | Op::SyntheticWeight { .. } => FheCost::default(),
    }
}

/// The FHE cost of a whole IR graph: every node once, depth the longest path to an output.
pub fn graph_cost(graph: &Graph) -> FheCost {
    let mut depth: HashMap<_, u32> = HashMap::new();
    let mut total = FheCost::default();
    for node in graph.topological_order() {
        let n = graph.node(node);
        let operands = graph.operands(node);
        let types: Vec<&TensorType> = operands
            .iter()
            .filter_map(|v| graph.value_type(*v))
            .collect();
        let own = if n.op.is_constant() || matches!(n.op, Op::Input) {
            FheCost::default()
        } else {
            op_cost(&n.op, &types, &n.outputs)
        };
        let below = operands
            .iter()
            .filter_map(|v| depth.get(&v.node))
            .max()
            .copied()
            .unwrap_or(0);
        depth.insert(node, below.saturating_add(own.depth));
        total = total.plus(FheCost { depth: 0, ..own });
    }
    total.depth = graph
        .outputs()
        .iter()
        .filter_map(|o| depth.get(&o.value.node))
        .max()
        .copied()
        .unwrap_or(0);
    total
}

/// egg's cost function for extraction: [`op_cost`] of the e-node on its e-class types plus its
/// children's costs (a tree cost: a shared subterm counts once per use, egg's usual
/// approximation; depth, the first criterion, is exact). An e-node whose inferred type differs
/// from its class's costs [`FheCost::INFINITE`].
#[derive(Debug)]
pub struct FheCostFunction<'a> {
    pub egraph: &'a TensorGraph,
}

impl CostFunction<TensorNode> for FheCostFunction<'_> {
    type Cost = FheCost;

    fn cost<C>(&mut self, enode: &TensorNode, mut costs: C) -> FheCost
    where
        C: FnMut(Id) -> FheCost,
    {
        let own = match &enode.kind {
            Kind::Leaf(_) | Kind::Output(_) | Kind::Encrypt => FheCost::default(),
            Kind::Op(op) => {
                let types: Option<Vec<TensorType>> = enode
                    .children
                    .iter()
                    .map(|c| self.egraph[*c].data.ty().cloned())
                    .collect();
                let inferred = types.as_ref().and_then(|t| infer(op.op(), t).ok());
                match (types, inferred) {
                    (Some(types), Some(outputs)) if self.class_types(enode) == Some(&outputs) => {
                        op_cost(op.op(), &types.iter().collect::<Vec<_>>(), &outputs)
                    }
                    _ => return FheCost::INFINITE,
                }
            }
        };
        let below = enode
            .children
            .iter()
            .map(|c| costs(*c))
            .fold(FheCost::default(), FheCost::plus);
        below.then(own)
    }
}

impl FheCostFunction<'_> {
    /// The types of the class `enode` lives in.
    fn class_types(&self, enode: &TensorNode) -> Option<&Vec<TensorType>> {
        let id = self.egraph.lookup(enode.clone())?;
        Some(&self.egraph[id].data.types)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::DType;

    fn ty(shape: &[usize], secrecy: Secrecy) -> TensorType {
        TensorType::new(DType::F64, shape.to_vec(), secrecy)
    }

    #[test]
    fn public_ops_are_free_and_matmul_costs_bsgs_rotations() {
        let (x, w) = (
            ty(&[1, 64], Secrecy::Encrypted),
            ty(&[64, 64], Secrecy::Public),
        );
        let public = op_cost(&Op::MatMul, &[&w, &w], std::slice::from_ref(&w));
        assert_eq!(public.depth + public.ct_pt_mults as u32, 0);
        let cost = op_cost(&Op::MatMul, &[&x, &w], std::slice::from_ref(&x));
        assert_eq!(
            (cost.depth, cost.ct_pt_mults, cost.rotations_estimate),
            (1, 1, 16)
        );
        let square = op_cost(
            &Op::Binary(BinaryOp::Mul),
            &[&x, &x],
            std::slice::from_ref(&x),
        );
        assert_eq!(square.ct_ct_mults, 1);
    }

    #[test]
    fn unit_axis_transposes_are_free() {
        assert!(is_trivial_permutation(&[1, 1, 4, 8], &[0, 2, 1, 3]));
        assert!(!is_trivial_permutation(&[1, 2, 4, 8], &[0, 2, 1, 3]));
    }
}
