//! Scaled dot-product attention written out by the exporter, including grouped KV heads (GQA).
//! Shapes: `q [B,H,S,D]`, `k [B,Hkv,T,D]`, `v [B,Hkv,T,Dv]` with `H` a multiple of `Hkv`,
//! optional additive `mask` broadcastable to `[B,H,S,T]`; output `[B,H,S,Dv]`.

use super::algebra::scaled_value;
use super::matcher::Matcher;
use super::replacement::{Replacement, Source};
use crate::graph::ValueRef;
use crate::infer::normalize_axis;
use crate::op::{BinaryOp, Op};

/// The `q kᵀ` product found under the softmax, with every constant factor folded into `scale`.
struct Scores {
    scale: f64,
    q: ValueRef,
    /// The value the key transpose reads.
    key_source: ValueRef,
    /// The permutation that turns `key_source` into `k [B,Hkv,T,D]` (identity: it already is).
    key_perm: Vec<usize>,
}

/// `Op::Attention { scale }` from
/// `MatMul(Softmax(Add(Mul(MatMul(q, Transpose(k, [0,1,3,2])), scale), mask), axis=-1), v)`:
/// Hugging Face eager attention traced by TorchScript (Llama, GPT-2, BERT/MiniLM).
/// - the scale may be a `Mul` or `Div` by a constant on the scores, on `q` or on `k`, or absent;
/// - the mask `Add` is optional (either operand order);
/// - `Cast`s to the same type after the softmax (Llama) are looked through;
/// - the key transpose may be fused with the head split: BERT's `Transpose(k, [0,2,3,1])` of
///   `[B,T,H,D]`, for which a `Transpose(·, [0,2,1,3])` is made to give the op `[B,H,T,D]`;
/// - GQA: Llama's `repeat_kv` (`Unsqueeze(·, 2)`, `n` identical copies `Concat`ed on axis 2 —
///   what the importer makes of `Expand` — or the `Expand` itself, then `Reshape` to
///   `[B,Hkv·n,T,D]`) is undone, so the op reads the cache's `[B,Hkv,T,D]` directly.
pub fn attention(m: &mut Matcher) -> Option<Replacement> {
    let [probs, v] = m.root_operands(|op| *op == Op::MatMul)?.try_into().ok()?;
    let probs = m.skip_noop_casts(probs);
    let rank = m.rank(probs)?;
    let logits = *m
        .take_single(
            probs,
            |op| matches!(op, Op::Softmax { axis } if Matcher::is_last_axis(*axis, rank)),
        )?
        .first()?;
    let (scores, mask) = masked_scores(m, logits)?;
    let v = unrepeat_heads(m, v);
    let mut replacement = Replacement::new("Attention", m.root_value());
    let k = if is_identity(&scores.key_perm) {
        Source::Value(unrepeat_heads(m, scores.key_source))
    } else {
        replacement.push(
            Op::Transpose {
                perm: scores.key_perm,
            },
            vec![scores.key_source.into()],
            "k",
        )
    };
    let mut operands = vec![scores.q.into(), k, v.into()];
    operands.extend(mask.map(Source::Value));
    replacement.push(
        Op::Attention {
            scale: scores.scale,
        },
        operands,
        "",
    );
    Some(replacement)
}

/// The softmax's operand as `scores + mask` (either order) or bare `scores`.
fn masked_scores(m: &mut Matcher, logits: ValueRef) -> Option<(Scores, Option<ValueRef>)> {
    let mark = m.mark();
    if let Some([a, b]) = m.take_binary(logits, BinaryOp::Add) {
        let found = m.either(a, b, |m, s, mask| Some((scores(m, s)?, Some(mask))));
        if found.is_some() {
            return found;
        }
        m.reset(mark);
    }
    Some((scores(m, logits)?, None))
}

/// `c · MatMul(c_q · q, c_k · Transpose(c_k' · key_source, perm))`, i.e. `q kᵀ` for
/// `k = Transpose(key_source, perm with its last two entries swapped)`.
fn scores(m: &mut Matcher, value: ValueRef) -> Option<Scores> {
    let (outer, product) = scaled_value(m, value);
    let [q, key_t] = m
        .take_single(product, |op| *op == Op::MatMul)?
        .try_into()
        .ok()?;
    let (q_scale, q) = scaled_value(m, q);
    let (kt_scale, key_t) = scaled_value(m, key_t);
    let key_source = *m
        .take_single(key_t, |op| matches!(op, Op::Transpose { .. }))?
        .first()?;
    let Op::Transpose { perm } = m.op(key_t) else {
        return None;
    };
    let [p0, p1, p2, p3] = perm.as_slice().try_into().ok()?;
    // kᵀ = key_source permuted by `perm`; k swaps kᵀ's last two axes back.
    let key_perm = vec![p0, p1, p3, p2];
    let (k_scale, key_source) = scaled_value(m, key_source);
    Some(Scores {
        scale: outer * q_scale * kt_scale * k_scale,
        q,
        key_source,
        key_perm,
    })
}

/// Undoes GQA's head repetition, `Reshape(Concat₂(n × Unsqueeze(k0, 2)), [B,Hkv·n,T,D])` or the
/// same with `Expand` for the `Concat`, returning `k0 [B,Hkv,T,D]`; anything else is returned
/// as it is, with nothing taken.
fn unrepeat_heads(m: &mut Matcher, value: ValueRef) -> ValueRef {
    let mark = m.mark();
    match repeated_source(m, value) {
        Some(source) => source,
        None => {
            m.reset(mark);
            value
        }
    }
}

fn repeated_source(m: &mut Matcher, value: ValueRef) -> Option<ValueRef> {
    let stacked = *m
        .take_single(value, |op| matches!(op, Op::Reshape { .. }))?
        .first()?;
    // The copies may be read only by the stacking node, so `take` (not `take_single`) below;
    // the match's closure check rejects any outside reader.
    let copies = m.take(stacked, |op| match op {
        Op::Concat { axis } => normalize_axis(*axis, 5) == Ok(2),
        Op::Expand { .. } => true,
        _ => false,
    })?;
    let unsqueezed = *copies.first()?;
    if copies.iter().any(|c| *c != unsqueezed) {
        return None;
    }
    let source = *m
        .take(unsqueezed, |op| match op {
            Op::Unsqueeze { axes } => {
                matches!(axes.as_slice(), [axis] if normalize_axis(*axis, 5) == Ok(2))
            }
            _ => false,
        })?
        .first()?;
    let shape_of = |v: ValueRef| m.ty(v).map(|t| t.shape.clone());
    let [b, kv, t, d] = shape_of(source)?.try_into().ok()?;
    let [_, _, n, _, _] = shape_of(stacked)?.try_into().ok()?;
    let expected_stack = [b, kv, n, t, d];
    let expected_heads = [b, kv * n, t, d];
    (shape_of(stacked)? == expected_stack && shape_of(value)? == expected_heads).then_some(source)
}

fn is_identity(perm: &[usize]) -> bool {
    perm.iter().enumerate().all(|(i, &p)| i == p)
}
