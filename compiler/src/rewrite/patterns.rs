//! The right-hand sides of the rules that read attributes (shapes, permutations, epsilons,
//! scales) from the e-graph; [`super::rules`] lists them. Each function proposes terms equal to
//! the matched e-class; the caller adds them only when they keep the class's type.

use super::analysis::TensorGraph;
use super::cost::is_trivial_permutation;
use super::rules::Term;
use cachemir_ir::{BinaryOp, Op, UnaryOp};
use egg::{Id, Subst, Var};

/// How many layout ops [`fold_rotate_half`] looks through between a projection and its RoPE.
const MAX_LAYOUT_CHAIN: usize = 4;

fn shape(egraph: &TensorGraph, id: Id) -> Option<&[usize]> {
    egraph[id].data.ty().map(|t| t.shape.as_slice())
}

fn ops(egraph: &TensorGraph, id: Id) -> impl Iterator<Item = (&Op, &[Id])> {
    egraph[id]
        .nodes
        .iter()
        .filter_map(|n| n.ir_op().map(|op| (op, n.children.as_slice())))
}

fn get(subst: &Subst, name: &str) -> Option<Id> {
    subst.get(name.parse::<Var>().ok()?).copied()
}

fn scalar(egraph: &TensorGraph, subst: &Subst, name: &str) -> Option<f64> {
    let id = get(subst, name)?;
    let facts = &egraph[id].data;
    facts.constant.then_some(facts.scalar).flatten()
}

/// Squeeze, Unsqueeze, Flatten and transposes of unit axes are reshapes to the class's shape.
pub fn as_reshape(egraph: &TensorGraph, class: Id) -> Vec<Term> {
    let Some(target) = shape(egraph, class) else {
        return Vec::new();
    };
    let has_reshape = ops(egraph, class).any(|(op, _)| matches!(op, Op::Reshape { .. }));
    if has_reshape {
        return Vec::new();
    }
    ops(egraph, class)
        .filter_map(|(op, children)| {
            let child = *children.first()?;
            let is_layout = match op {
                Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. } => true,
                Op::Transpose { perm } => is_trivial_permutation(shape(egraph, child)?, perm),
                _ => false,
            };
            is_layout.then(|| {
                Term::Node(
                    Op::Reshape {
                        shape: target.to_vec(),
                    },
                    vec![Term::Class(child)],
                )
            })
        })
        .take(1)
        .collect()
}

/// Ops that change nothing are their operand: a cast to the operand's element type, a concat of
/// one operand, an expand to the operand's shape, `|x|` of a non-negative `x` and a clip whose
/// bounds contain the operand's range (the analysis's interval).
pub fn identity(egraph: &TensorGraph, class: Id) -> Vec<Term> {
    let Some(ty) = egraph[class].data.ty() else {
        return Vec::new();
    };
    ops(egraph, class)
        .filter_map(|(op, children)| {
            let [child] = children else { return None };
            let child = egraph.find(*child);
            let facts = &egraph[child].data;
            let range = facts.range;
            let no_op = match op {
                Op::Cast { .. } | Op::Concat { .. } | Op::Expand { .. } => true,
                Op::Unary(UnaryOp::Abs) => range.is_some_and(|(lo, _)| lo >= 0.0),
                Op::Clip { min, max } => range.is_some_and(|(lo, hi)| {
                    min.is_none_or(|m| lo >= m) && max.is_none_or(|m| hi <= m)
                }),
                _ => false,
            };
            let same = no_op && facts.ty() == Some(ty) && child != egraph.find(class);
            same.then_some(Term::Class(child))
        })
        .take(1)
        .collect()
}

/// `reshape(reshape(x)) → reshape(x)`, and a reshape to the shape it already has is `x`.
pub fn reshape_chain(egraph: &TensorGraph, class: Id) -> Vec<Term> {
    let mut terms = Vec::new();
    for (op, children) in ops(egraph, class) {
        let (Op::Reshape { shape: target }, [child]) = (op, children) else {
            continue;
        };
        let child = egraph.find(*child);
        if child == egraph.find(class) {
            continue;
        }
        if shape(egraph, child) == Some(target.as_slice()) {
            terms.push(Term::Class(child));
            continue;
        }
        for (inner, grandchildren) in ops(egraph, child) {
            if let (Op::Reshape { .. }, [x]) = (inner, grandchildren) {
                let direct = Op::Reshape {
                    shape: target.clone(),
                };
                if !exists(egraph, class, &direct, *x) {
                    terms.push(Term::Node(direct, vec![Term::Class(*x)]));
                }
            }
        }
    }
    terms
}

/// `transpose(transpose(x, p), q) → transpose(x, p∘q)`; the identity permutation is `x`.
pub fn transpose_chain(egraph: &TensorGraph, class: Id) -> Vec<Term> {
    let identity = |p: &[usize]| p.iter().enumerate().all(|(i, &a)| i == a);
    let mut terms = Vec::new();
    for (op, children) in ops(egraph, class) {
        let (Op::Transpose { perm: outer }, [child]) = (op, children) else {
            continue;
        };
        let child = egraph.find(*child);
        if identity(outer) && child != egraph.find(class) {
            terms.push(Term::Class(child));
            continue;
        }
        for (inner, grandchildren) in ops(egraph, child) {
            let (Op::Transpose { perm: first }, [x]) = (inner, grandchildren) else {
                continue;
            };
            let composed: Option<Vec<usize>> =
                outer.iter().map(|&i| first.get(i).copied()).collect();
            let Some(perm) = composed else { continue };
            if identity(&perm) {
                terms.push(Term::Class(*x));
            } else {
                let direct = Op::Transpose { perm };
                if !exists(egraph, class, &direct, *x) {
                    terms.push(Term::Node(direct, vec![Term::Class(*x)]));
                }
            }
        }
    }
    terms
}

/// Whether `op(child)` is already in `class`.
fn exists(egraph: &TensorGraph, class: Id, op: &Op, child: Id) -> bool {
    let node = super::language::TensorNode::op(op.clone(), vec![child]);
    egraph
        .lookup(node)
        .is_some_and(|id| egraph.find(id) == egraph.find(class))
}

/// `rope(L(h·W), cos, sin) → L(h·W)·cos + L(h·(W R))·sin`, where `L` is a chain of reshapes
/// and last-axis-preserving transposes (the head split) and `R` swaps and negates the halves of
/// every head's columns, so that `L(h·(W R)) = rotate_half(L(h·W))`. `W` must be a weight of
/// shape `[k, heads·head_dim]`; `W R` is a public constant (free, and materialised for real
/// weights).
pub fn fold_rotate_half(egraph: &TensorGraph, class: Id) -> Vec<Term> {
    let mut terms = Vec::new();
    for (op, children) in ops(egraph, class) {
        let (Op::Rope, [x, cos, sin]) = (op, children) else {
            continue;
        };
        let Some(head_dim) = shape(egraph, *x).and_then(|s| s.last().copied()) else {
            continue;
        };
        if head_dim % 2 != 0 || head_dim == 0 {
            continue;
        }
        let Some((layout, h, w)) = projection_under(egraph, *x, head_dim, MAX_LAYOUT_CHAIN) else {
            continue;
        };
        let Some(rotated_weight) = rotate_half_columns(egraph, w, head_dim) else {
            continue;
        };
        let mut rotated = Term::Node(Op::MatMul, vec![Term::Class(h), rotated_weight]);
        for op in layout.into_iter().rev() {
            rotated = Term::Node(op, vec![rotated]);
        }
        let mul = |a: Term, b: Id| Term::Node(Op::Binary(BinaryOp::Mul), vec![a, Term::Class(b)]);
        terms.push(Term::Node(
            Op::Binary(BinaryOp::Add),
            vec![mul(Term::Class(*x), *cos), mul(rotated, *sin)],
        ));
        break;
    }
    terms
}

/// Below `x`: layout ops (outermost first) down to a `MatMul(h, W)` with `W` a rank-2 weight,
/// every value on the way having a last dimension that is a multiple of `head_dim` and every
/// transpose keeping the last axis last.
fn projection_under(
    egraph: &TensorGraph,
    x: Id,
    head_dim: usize,
    budget: usize,
) -> Option<(Vec<Op>, Id, Id)> {
    let last = shape(egraph, x)?.last().copied()?;
    if last % head_dim != 0 {
        return None;
    }
    for (op, children) in ops(egraph, x) {
        match (op, children) {
            (Op::MatMul, [h, w]) => {
                let weight = &egraph[*w].data;
                if weight.constant && weight.ty().is_some_and(|t| t.rank() == 2) {
                    return Some((Vec::new(), *h, *w));
                }
            }
            (Op::Reshape { .. }, [child]) | (Op::Transpose { .. }, [child]) if budget > 0 => {
                if let Op::Transpose { perm } = op
                    && perm.last() != Some(&(perm.len() - 1))
                {
                    continue;
                }
                if let Some((mut layout, h, w)) =
                    projection_under(egraph, *child, head_dim, budget - 1)
                {
                    layout.insert(0, op.clone());
                    return Some((layout, h, w));
                }
            }
            _ => {}
        }
    }
    None
}

/// `W R`: within every block of `head_dim` columns of `w` (`[k, n]`), the columns
/// `[-second half, first half]`, as IR ops on the weight.
fn rotate_half_columns(egraph: &TensorGraph, w: Id, head_dim: usize) -> Option<Term> {
    let [k, n] = shape(egraph, w)? else {
        return None;
    };
    let (k, n) = (*k, *n);
    if n % head_dim != 0 {
        return None;
    }
    let heads = Term::Node(
        Op::Reshape {
            shape: vec![k, n / head_dim, head_dim],
        },
        vec![Term::Class(w)],
    );
    let half = (head_dim / 2) as i64;
    let slice = |start: i64, end: i64| {
        Term::Node(
            Op::Slice {
                starts: vec![start],
                ends: vec![end],
                axes: vec![2],
                steps: vec![1],
            },
            vec![heads.clone()],
        )
    };
    let swapped = Term::Node(
        Op::Concat { axis: 2 },
        vec![
            Term::Node(Op::Unary(UnaryOp::Neg), vec![slice(half, 2 * half)]),
            slice(0, half),
        ],
    );
    Some(Term::Node(Op::Reshape { shape: vec![k, n] }, vec![swapped]))
}

/// `RmsNorm { epsilon }(x, w)` from the matched formula.
pub fn rms_norm(egraph: &TensorGraph, subst: &Subst) -> Vec<Term> {
    let (Some(x), Some(w), Some(epsilon)) = (
        get(subst, "?x"),
        get(subst, "?w"),
        scalar(egraph, subst, "?eps"),
    ) else {
        return Vec::new();
    };
    if epsilon < 0.0 {
        return Vec::new();
    }
    vec![Term::Node(
        Op::RmsNorm { epsilon },
        vec![Term::Class(x), Term::Class(w)],
    )]
}

/// `LayerNormalization { axis: -1, epsilon }(x, w, b)` from the matched formula.
pub fn layer_norm(egraph: &TensorGraph, subst: &Subst) -> Vec<Term> {
    let (Some(x), Some(w), Some(b), Some(epsilon)) = (
        get(subst, "?x"),
        get(subst, "?w"),
        get(subst, "?b"),
        scalar(egraph, subst, "?eps"),
    ) else {
        return Vec::new();
    };
    if epsilon < 0.0 {
        return Vec::new();
    }
    vec![Term::Node(
        Op::LayerNormalization { axis: -1, epsilon },
        vec![Term::Class(x), Term::Class(w), Term::Class(b)],
    )]
}

/// `Attention { scale }(q, k, v, mask?)` from `softmax(q·kᵀ·s [+ m])·v`; where `k` and `v`
/// are both `repeat_kv` expansions of fewer heads, the unexpanded ones (GQA).
pub fn attention(egraph: &TensorGraph, subst: &Subst) -> Vec<Term> {
    let (Some(q), Some(kt), Some(v), Some(scale)) = (
        get(subst, "?q"),
        get(subst, "?kt"),
        get(subst, "?v"),
        scalar(egraph, subst, "?s"),
    ) else {
        return Vec::new();
    };
    let mask = get(subst, "?m");
    let mut terms = Vec::new();
    for k in transposed_last_two(egraph, kt) {
        let mut pairs = vec![(k, v)];
        if let (Some(k0), Some(v0)) = (unrepeat_kv(egraph, k), unrepeat_kv(egraph, v)) {
            pairs.insert(0, (k0, v0));
        }
        for (k, v) in pairs {
            let mut operands = vec![Term::Class(q), Term::Class(k), Term::Class(v)];
            operands.extend(mask.map(Term::Class));
            terms.push(Term::Node(Op::Attention { scale }, operands));
        }
    }
    terms
}

/// The `k`s with `kt = transpose(k)` swapping the last two axes.
fn transposed_last_two(egraph: &TensorGraph, kt: Id) -> Vec<Id> {
    ops(egraph, kt)
        .filter_map(|(op, children)| match (op, children) {
            (Op::Transpose { perm }, [k]) => {
                let r = perm.len();
                let swaps = r >= 2
                    && perm[..r - 2].iter().enumerate().all(|(i, &a)| i == a)
                    && perm[r - 2] == r - 1
                    && perm[r - 1] == r - 2;
                swaps.then_some(*k)
            }
            _ => None,
        })
        .collect()
}

/// `k0` when `k = reshape(expand(unsqueeze(k0, 2), [B, Hkv, n, T, D]), [B, Hkv·n, T, D])`
/// (Hugging Face `repeat_kv`; the unsqueeze may already be a reshape).
fn unrepeat_kv(egraph: &TensorGraph, k: Id) -> Option<Id> {
    let [b, heads, t, d] = *shape(egraph, k)? else {
        return None;
    };
    ops(egraph, k).find_map(|(op, children)| {
        let (Op::Reshape { .. }, [expanded]) = (op, children) else {
            return None;
        };
        ops(egraph, *expanded).find_map(|(op, children)| {
            let (Op::Expand { shape: e }, [unsqueezed]) = (op, children) else {
                return None;
            };
            let [eb, kv, n, et, ed] = e.as_slice() else {
                return None;
            };
            if (*eb, kv * n, *et, *ed) != (b, heads, t, d) {
                return None;
            }
            ops(egraph, *unsqueezed).find_map(|(op, children)| {
                let [k0] = children else { return None };
                let unit_axis = match op {
                    Op::Unsqueeze { axes } => axes.as_slice() == [2],
                    Op::Reshape { shape } => shape.as_slice() == [b, *kv, 1, t, d],
                    _ => false,
                };
                (unit_axis && shape(egraph, *k0) == Some(&[b, *kv, t, d][..])).then_some(*k0)
            })
        })
    })
}
