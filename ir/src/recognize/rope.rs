//! Rotary position embedding, rotate-half form (Su et al., RoFormer), written out by the exporter.
//! Shapes: `x [.., S, D]` with `D` even, `cos`, `sin` broadcastable to `x`; output like `x`.

use super::algebra::monomial;
use super::matcher::Matcher;
use super::replacement::Replacement;
use crate::graph::ValueRef;
use crate::infer::slice_ranges;
use crate::op::{BinaryOp, Op};

/// `Op::Rope` from `Add(Mul(x, cos), Mul(Concat(Neg(Slice(x, D/2..)), Slice(x, ..D/2)), sin))`
/// on the last axis: Hugging Face `apply_rotary_pos_emb` with `rotate_half` (Llama, Mistral,
/// Qwen…) traced by TorchScript. Either order of every `Add`/`Mul` matches, as does `-1 * ·`
/// for the negation. `cos`/`sin` are kept as they are (in the Llama export they are computed
/// from `position_ids` and reach here through `Unsqueeze`); the op's shape rule checks that they
/// broadcast to `x`.
pub fn rope(m: &mut Matcher) -> Option<Replacement> {
    let [a, b] = m
        .root_operands(|op| *op == Op::Binary(BinaryOp::Add))?
        .try_into()
        .ok()?;
    let (x, cos, sin) = m.either(a, b, |m, direct, rotated| {
        let [p, q] = m.take_binary(rotated, BinaryOp::Mul)?;
        let (x, sin) = m.either(p, q, |m, halves, sin| {
            Some((rotate_half_of(m, halves)?, sin))
        })?;
        let [p, q] = m.take_binary(direct, BinaryOp::Mul)?;
        let cos = m.either(p, q, |_, same, cos| (same == x).then_some(cos))?;
        Some((x, cos, sin))
    })?;
    Some(Replacement::single(
        "Rope",
        m.root_value(),
        Op::Rope,
        &[x, cos, sin],
    ))
}

/// Matches `rotate_half(x) = Concat(-x[.., D/2..], x[.., ..D/2])` on the last axis; returns `x`.
fn rotate_half_of(m: &mut Matcher, value: ValueRef) -> Option<ValueRef> {
    let rank = m.rank(value)?;
    let operands = m.take_single(
        value,
        |op| matches!(op, Op::Concat { axis } if Matcher::is_last_axis(*axis, rank)),
    )?;
    let [negated, first] = operands.try_into().ok()?;
    let negation = monomial(m, negated);
    if negation.coef != -1.0 {
        return None;
    }
    let second = negation.linear_var()?;
    let x = half_of(m, first, 0)?;
    (half_of(m, second, 1)? == x).then_some(x)
}

/// Matches `x[.., h·D/2 .. (h+1)·D/2]` (`h` = 0 first half, 1 second half) as a `Slice` of the
/// last axis only; returns `x`.
fn half_of(m: &mut Matcher, value: ValueRef, h: usize) -> Option<ValueRef> {
    let x = *m
        .take_single(value, |op| matches!(op, Op::Slice { .. }))?
        .first()?;
    let Op::Slice {
        starts,
        ends,
        axes,
        steps,
    } = m.op(value)
    else {
        return None;
    };
    let shape = &m.ty(x)?.shape;
    let last = shape.len().checked_sub(1)?;
    let half = shape[last] / 2;
    if shape[last] % 2 != 0 {
        return None;
    }
    let ranges = slice_ranges(shape, starts, ends, axes, steps).ok()?;
    let exact = ranges.iter().enumerate().all(|(d, r)| {
        let (start, len) = if d == last {
            (h * half, half)
        } else {
            (0, shape[d])
        };
        r.start == start as i64 && r.step == 1 && r.len() == len
    });
    exact.then_some(x)
}
