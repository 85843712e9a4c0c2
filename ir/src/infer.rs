//! Shape and type inference: the output types of an op from its operands' types.
//!
//! Every rule follows the ONNX operator specification; the result's secrecy is the join of the
//! operands' secrecies (a value computed from an encrypted value is encrypted).

use crate::dtype::{DType, Secrecy, TensorType};
use crate::error::ShapeError;
use crate::op::{Op, ReduceOp};

/// Resolves a possibly negative axis against `rank` (ONNX convention: `-1` is the last axis).
///
/// # Errors
/// [`ShapeError::Axis`] when the axis is outside `-rank..rank`.
pub fn normalize_axis(axis: i64, rank: usize) -> Result<usize, ShapeError> {
    let r = rank as i64;
    if axis < -r || axis >= r {
        return Err(ShapeError::Axis { axis, rank });
    }
    Ok(if axis < 0 { axis + r } else { axis } as usize)
}

/// numpy broadcasting of two shapes.
///
/// # Errors
/// [`ShapeError::Broadcast`] when a pair of dimensions differs and neither is 1.
pub fn broadcast_shapes(left: &[usize], right: &[usize]) -> Result<Vec<usize>, ShapeError> {
    let rank = left.len().max(right.len());
    let mut out = vec![0; rank];
    for (i, dim) in out.iter_mut().enumerate() {
        let l = dim_from_end(left, rank - 1 - i);
        let r = dim_from_end(right, rank - 1 - i);
        *dim = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => {
                return Err(ShapeError::Broadcast {
                    left: left.to_vec(),
                    right: right.to_vec(),
                });
            }
        };
    }
    Ok(out)
}

fn dim_from_end(shape: &[usize], from_end: usize) -> usize {
    if from_end < shape.len() {
        shape[shape.len() - 1 - from_end]
    } else {
        1
    }
}

fn arity(operands: &[TensorType], min: usize, max: usize) -> Result<(), ShapeError> {
    if operands.len() < min || operands.len() > max {
        let expected = if min == max {
            min.to_string()
        } else {
            format!("{min} to {max}")
        };
        return Err(ShapeError::Arity {
            expected,
            got: operands.len(),
        });
    }
    Ok(())
}

fn expect_float(operands: &[TensorType], index: usize) -> Result<(), ShapeError> {
    let dtype = operands[index].dtype;
    if !dtype.is_float() {
        return Err(ShapeError::DType {
            operand: index,
            expected: "a float type".into(),
            got: dtype,
        });
    }
    Ok(())
}

fn expect_rank_at_least(
    operands: &[TensorType],
    index: usize,
    min: usize,
) -> Result<(), ShapeError> {
    let got = operands[index].rank();
    if got < min {
        return Err(ShapeError::Rank {
            operand: index,
            expected: format!("at least {min}"),
            got,
        });
    }
    Ok(())
}

fn secrecy(operands: &[TensorType]) -> Secrecy {
    Secrecy::join(operands.iter().map(|t| t.secrecy))
}

fn same_as_first(operands: &[TensorType], shape: Vec<usize>) -> TensorType {
    TensorType::new(operands[0].dtype, shape, secrecy(operands))
}

/// The output types of `op` applied to operands of these types.
///
/// # Errors
/// A [`ShapeError`] describing the first violated rule. `Input` and `Constant` take their type
/// from the graph and are rejected here.
pub fn infer(op: &Op, operands: &[TensorType]) -> Result<Vec<TensorType>, ShapeError> {
    let single = |t: TensorType| Ok(vec![t]);
    match op {
        Op::Input | Op::Constant(_) | Op::SyntheticWeight { .. } => Err(ShapeError::Invalid(
            "inputs and constants carry their own type".into(),
        )),
        Op::Unary(_) | Op::Gelu { .. } | Op::Silu | Op::Polynomial(_) => {
            arity(operands, 1, 1)?;
            single(operands[0].clone())
        }
        Op::Cast { to } => {
            arity(operands, 1, 1)?;
            single(TensorType::new(
                *to,
                operands[0].shape.clone(),
                operands[0].secrecy,
            ))
        }
        Op::Clip { .. } => {
            arity(operands, 1, 1)?;
            single(operands[0].clone())
        }
        Op::Binary(_) => {
            arity(operands, 2, 2)?;
            let shape = broadcast_shapes(&operands[0].shape, &operands[1].shape)?;
            single(same_as_first(operands, shape))
        }
        Op::Compare(_) => {
            arity(operands, 2, 2)?;
            let shape = broadcast_shapes(&operands[0].shape, &operands[1].shape)?;
            single(TensorType::new(DType::Bool, shape, secrecy(operands)))
        }
        Op::Where => {
            arity(operands, 3, 3)?;
            if operands[0].dtype != DType::Bool {
                return Err(ShapeError::DType {
                    operand: 0,
                    expected: "bool".into(),
                    got: operands[0].dtype,
                });
            }
            let shape = broadcast_shapes(&operands[0].shape, &operands[1].shape)?;
            let shape = broadcast_shapes(&shape, &operands[2].shape)?;
            single(TensorType::new(operands[1].dtype, shape, secrecy(operands)))
        }
        Op::MatMul => {
            arity(operands, 2, 2)?;
            single(same_as_first(
                operands,
                matmul_shape(&operands[0].shape, &operands[1].shape)?,
            ))
        }
        Op::Gemm {
            trans_a, trans_b, ..
        } => {
            arity(operands, 2, 3)?;
            for (i, operand) in operands.iter().take(2).enumerate() {
                if operand.rank() != 2 {
                    return Err(ShapeError::Rank {
                        operand: i,
                        expected: "2".into(),
                        got: operand.rank(),
                    });
                }
            }
            let (a, b) = (&operands[0].shape, &operands[1].shape);
            let (m, k) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
            let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
            if k != k2 {
                return Err(ShapeError::Invalid(format!(
                    "inner dimensions differ: {k} vs {k2}"
                )));
            }
            if let Some(c) = operands.get(2)
                && broadcast_shapes(&c.shape, &[m, n])? != [m, n]
            {
                return Err(ShapeError::Invalid(format!(
                    "C of shape {:?} does not broadcast to [{m}, {n}]",
                    c.shape
                )));
            }
            single(same_as_first(operands, vec![m, n]))
        }
        Op::Softmax { axis } => {
            arity(operands, 1, 1)?;
            expect_float(operands, 0)?;
            normalize_axis(*axis, operands[0].rank())?;
            single(operands[0].clone())
        }
        Op::LayerNormalization { axis, .. } => {
            arity(operands, 2, 3)?;
            expect_float(operands, 0)?;
            let axis = normalize_axis(*axis, operands[0].rank())?;
            let normalized = &operands[0].shape[axis..];
            for (i, t) in operands.iter().enumerate().skip(1) {
                let b = broadcast_shapes(normalized, &t.shape)?;
                if b != normalized {
                    return Err(ShapeError::Invalid(format!(
                        "operand {i} of shape {:?} does not broadcast to the normalised shape {normalized:?}",
                        t.shape
                    )));
                }
            }
            single(same_as_first(operands, operands[0].shape.clone()))
        }
        Op::RmsNorm { .. } => {
            arity(operands, 2, 2)?;
            expect_float(operands, 0)?;
            expect_rank_at_least(operands, 0, 1)?;
            let last = *operands[0].shape.last().expect("rank ≥ 1");
            if operands[1].shape != [last] {
                return Err(ShapeError::Invalid(format!(
                    "scale has shape {:?}, expected [{last}]",
                    operands[1].shape
                )));
            }
            single(same_as_first(operands, operands[0].shape.clone()))
        }
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } => {
            arity(operands, 1, 1)?;
            if matches!(op, ReduceOp::Mean | ReduceOp::L2) {
                expect_float(operands, 0)?;
            }
            let shape = reduce_shape(&operands[0].shape, axes, *keep_dims)?;
            single(same_as_first(operands, shape))
        }
        Op::Transpose { perm } => {
            arity(operands, 1, 1)?;
            let rank = operands[0].rank();
            let mut seen = vec![false; rank];
            if perm.len() != rank
                || perm
                    .iter()
                    .any(|&p| p >= rank || std::mem::replace(&mut seen[p], true))
            {
                return Err(ShapeError::Invalid(format!(
                    "perm {perm:?} is not a permutation of {rank} axes"
                )));
            }
            let shape = perm.iter().map(|&p| operands[0].shape[p]).collect();
            single(same_as_first(operands, shape))
        }
        Op::Reshape { shape } => {
            arity(operands, 1, 1)?;
            let count: usize = shape.iter().product();
            if count != operands[0].len() {
                return Err(ShapeError::Invalid(format!(
                    "cannot reshape {:?} ({} elements) to {shape:?} ({count} elements)",
                    operands[0].shape,
                    operands[0].len()
                )));
            }
            single(same_as_first(operands, shape.clone()))
        }
        Op::Expand { shape } => {
            arity(operands, 1, 1)?;
            let out = broadcast_shapes(&operands[0].shape, shape)?;
            if &out != shape {
                return Err(ShapeError::Invalid(format!(
                    "expanding {:?} gives {out:?}, not the declared {shape:?}",
                    operands[0].shape
                )));
            }
            single(same_as_first(operands, out))
        }
        Op::Concat { axis } => {
            if operands.is_empty() {
                return Err(ShapeError::Arity {
                    expected: "at least 1".into(),
                    got: 0,
                });
            }
            let rank = operands[0].rank();
            let axis = normalize_axis(*axis, rank)?;
            let mut shape = operands[0].shape.clone();
            shape[axis] = 0;
            for (i, t) in operands.iter().enumerate() {
                let compatible = t.rank() == rank
                    && (0..rank).all(|d| d == axis || t.shape[d] == operands[0].shape[d]);
                if !compatible {
                    return Err(ShapeError::Invalid(format!(
                        "operand {i} of shape {:?} cannot be concatenated with {:?} on axis {axis}",
                        t.shape, operands[0].shape
                    )));
                }
                if t.dtype != operands[0].dtype {
                    return Err(ShapeError::DType {
                        operand: i,
                        expected: operands[0].dtype.to_string(),
                        got: t.dtype,
                    });
                }
                shape[axis] += t.shape[axis];
            }
            single(same_as_first(operands, shape))
        }
        Op::Split { axis, sizes } => {
            arity(operands, 1, 1)?;
            let axis = normalize_axis(*axis, operands[0].rank())?;
            let total: usize = sizes.iter().sum();
            if total != operands[0].shape[axis] {
                return Err(ShapeError::Invalid(format!(
                    "split sizes {sizes:?} add up to {total}, axis {axis} has {}",
                    operands[0].shape[axis]
                )));
            }
            Ok(sizes
                .iter()
                .map(|&s| {
                    let mut shape = operands[0].shape.clone();
                    shape[axis] = s;
                    same_as_first(operands, shape)
                })
                .collect())
        }
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => {
            arity(operands, 1, 1)?;
            let ranges = slice_ranges(&operands[0].shape, starts, ends, axes, steps)?;
            let shape = ranges.iter().map(|r| r.len()).collect();
            single(same_as_first(operands, shape))
        }
        Op::Gather { axis } => {
            arity(operands, 2, 2)?;
            if operands[1].dtype != DType::I64 {
                return Err(ShapeError::DType {
                    operand: 1,
                    expected: "i64".into(),
                    got: operands[1].dtype,
                });
            }
            let data = &operands[0].shape;
            let axis = normalize_axis(*axis, data.len())?;
            let mut shape = data[..axis].to_vec();
            shape.extend_from_slice(&operands[1].shape);
            shape.extend_from_slice(&data[axis + 1..]);
            single(same_as_first(operands, shape))
        }
        Op::Squeeze { axes } => {
            arity(operands, 1, 1)?;
            let shape = &operands[0].shape;
            let axes = axes
                .iter()
                .map(|&a| normalize_axis(a, shape.len()))
                .collect::<Result<Vec<_>, _>>()?;
            let mut out = Vec::new();
            for (d, &size) in shape.iter().enumerate() {
                let listed = if axes.is_empty() {
                    size == 1
                } else {
                    axes.contains(&d)
                };
                if listed && size != 1 {
                    return Err(ShapeError::Invalid(format!(
                        "cannot squeeze axis {d} of size {size}"
                    )));
                }
                if !listed {
                    out.push(size);
                }
            }
            single(same_as_first(operands, out))
        }
        Op::Unsqueeze { axes } => {
            arity(operands, 1, 1)?;
            let rank = operands[0].rank() + axes.len();
            let mut positions = axes
                .iter()
                .map(|&a| normalize_axis(a, rank))
                .collect::<Result<Vec<_>, _>>()?;
            positions.sort_unstable();
            if positions.windows(2).any(|w| w[0] == w[1]) {
                return Err(ShapeError::Invalid(format!("repeated axis in {axes:?}")));
            }
            let mut source = operands[0].shape.iter();
            let shape = (0..rank)
                .map(|d| {
                    if positions.contains(&d) {
                        1
                    } else {
                        *source.next().expect("rank counted")
                    }
                })
                .collect();
            single(same_as_first(operands, shape))
        }
        Op::Flatten { axis } => {
            arity(operands, 1, 1)?;
            let shape = &operands[0].shape;
            let rank = shape.len();
            let axis = if *axis == rank as i64 {
                rank
            } else {
                normalize_axis(*axis, rank)?
            };
            let outer = shape[..axis].iter().product();
            let inner = shape[axis..].iter().product();
            single(same_as_first(operands, vec![outer, inner]))
        }
        Op::Rope => {
            arity(operands, 3, 3)?;
            expect_float(operands, 0)?;
            expect_rank_at_least(operands, 0, 1)?;
            let x = &operands[0].shape;
            if !x[x.len() - 1].is_multiple_of(2) {
                return Err(ShapeError::Invalid(format!(
                    "head dimension {} is odd; rotate-half needs it even",
                    x[x.len() - 1]
                )));
            }
            for t in &operands[1..] {
                if broadcast_shapes(x, &t.shape)? != *x {
                    return Err(ShapeError::Broadcast {
                        left: x.clone(),
                        right: t.shape.clone(),
                    });
                }
            }
            single(same_as_first(operands, x.clone()))
        }
        Op::Attention { .. } => {
            arity(operands, 3, 4)?;
            for i in 0..3 {
                expect_float(operands, i)?;
                if operands[i].rank() != 4 {
                    return Err(ShapeError::Rank {
                        operand: i,
                        expected: "4".into(),
                        got: operands[i].rank(),
                    });
                }
            }
            let (q, k, v) = (&operands[0].shape, &operands[1].shape, &operands[2].shape);
            let ok = q[0] == k[0]
                && k[0] == v[0]
                && k[1] == v[1]
                && k[1] > 0
                && q[1] % k[1] == 0
                && q[3] == k[3]
                && k[2] == v[2];
            if !ok {
                return Err(ShapeError::Invalid(format!(
                    "q {q:?}, k {k:?}, v {v:?} do not form a (grouped) attention"
                )));
            }
            if let Some(mask) = operands.get(3) {
                let scores = vec![q[0], q[1], q[2], k[2]];
                if broadcast_shapes(&scores, &mask.shape)? != scores {
                    return Err(ShapeError::Broadcast {
                        left: scores,
                        right: mask.shape.clone(),
                    });
                }
            }
            single(same_as_first(operands, vec![q[0], q[1], q[2], v[3]]))
        }
    }
}

/// numpy `matmul` output shape (1-D operands are promoted and the added axis dropped).
pub fn matmul_shape(a: &[usize], b: &[usize]) -> Result<Vec<usize>, ShapeError> {
    if a.is_empty() || b.is_empty() {
        return Err(ShapeError::Invalid("matmul of a scalar".into()));
    }
    let a2: Vec<usize> = if a.len() == 1 {
        vec![1, a[0]]
    } else {
        a.to_vec()
    };
    let b2: Vec<usize> = if b.len() == 1 {
        vec![b[0], 1]
    } else {
        b.to_vec()
    };
    let (m, k) = (a2[a2.len() - 2], a2[a2.len() - 1]);
    let (k2, n) = (b2[b2.len() - 2], b2[b2.len() - 1]);
    if k != k2 {
        return Err(ShapeError::Invalid(format!(
            "matmul inner dimensions differ: {a:?} @ {b:?}"
        )));
    }
    let mut shape = broadcast_shapes(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        shape.push(m);
    }
    if b.len() > 1 {
        shape.push(n);
    }
    Ok(shape)
}

/// Output shape of a reduction; empty `axes` reduces all axes.
pub fn reduce_shape(
    shape: &[usize],
    axes: &[i64],
    keep_dims: bool,
) -> Result<Vec<usize>, ShapeError> {
    let axes = reduced_axes(shape.len(), axes)?;
    Ok(shape
        .iter()
        .enumerate()
        .filter_map(|(d, &s)| match (axes.contains(&d), keep_dims) {
            (true, true) => Some(1),
            (true, false) => None,
            (false, _) => Some(s),
        })
        .collect())
}

/// The normalised, sorted axes a reduction covers (all axes when `axes` is empty).
pub fn reduced_axes(rank: usize, axes: &[i64]) -> Result<Vec<usize>, ShapeError> {
    if axes.is_empty() {
        return Ok((0..rank).collect());
    }
    let mut out = axes
        .iter()
        .map(|&a| normalize_axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// One axis of a resolved slice: `len` elements from `start` by `step`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SliceRange {
    pub start: i64,
    pub step: i64,
    len: usize,
}

impl SliceRange {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// Resolves ONNX `Slice` parameters against a shape (clamping as the spec says), one range per
/// axis of the input.
pub fn slice_ranges(
    shape: &[usize],
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<Vec<SliceRange>, ShapeError> {
    if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err(ShapeError::Invalid(
            "starts, ends, axes and steps differ in length".into(),
        ));
    }
    let mut ranges: Vec<SliceRange> = shape
        .iter()
        .map(|&s| SliceRange {
            start: 0,
            step: 1,
            len: s,
        })
        .collect();
    for i in 0..starts.len() {
        let axis = normalize_axis(axes[i], shape.len())?;
        let dim = shape[axis] as i64;
        let step = steps[i];
        if step == 0 {
            return Err(ShapeError::Invalid("slice step 0".into()));
        }
        let resolve = |v: i64| if v < 0 { v.saturating_add(dim) } else { v };
        let (start, end) = (resolve(starts[i]), resolve(ends[i]));
        if dim == 0 {
            ranges[axis] = SliceRange {
                start: 0,
                step,
                len: 0,
            };
            continue;
        }
        let (start, end) = if step > 0 {
            (start.clamp(0, dim), end.clamp(0, dim))
        } else {
            (start.clamp(0, dim - 1), end.clamp(-1, dim - 1))
        };
        // ⌈distance / |step|⌉ without overflow for any step, i64::MIN included.
        let distance = if step > 0 { end - start } else { start - end };
        let len = if distance > 0 {
            ((distance as u64 - 1) / step.unsigned_abs() + 1) as i64
        } else {
            0
        };
        ranges[axis] = SliceRange {
            start,
            step,
            len: len as usize,
        };
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec(), Secrecy::Public)
    }

    #[test]
    fn broadcasting_follows_numpy() {
        assert_eq!(
            broadcast_shapes(&[2, 1, 4], &[3, 1]).unwrap(),
            vec![2, 3, 4]
        );
        assert!(broadcast_shapes(&[2, 3], &[4]).is_err());
    }

    #[test]
    fn batched_matmul_broadcasts_batch_dims() {
        assert_eq!(
            matmul_shape(&[2, 1, 3, 4], &[5, 4, 6]).unwrap(),
            vec![2, 5, 3, 6]
        );
        assert_eq!(matmul_shape(&[4], &[4, 6]).unwrap(), vec![6]);
        assert!(matmul_shape(&[3, 4], &[5, 6]).is_err());
    }

    #[test]
    fn slice_clamps_like_onnx() {
        let r = slice_ranges(&[10], &[-3], &[i64::MAX], &[0], &[1]).unwrap();
        assert_eq!((r[0].start, r[0].len()), (7, 3));
        let r = slice_ranges(&[10], &[i64::MAX], &[i64::MIN], &[0], &[-1]).unwrap();
        assert_eq!((r[0].start, r[0].len()), (9, 10));
    }

    #[test]
    fn grouped_attention_shape() {
        let out = infer(
            &Op::Attention { scale: 0.5 },
            &[
                f32(&[1, 4, 1, 32]),
                f32(&[1, 2, 16, 32]),
                f32(&[1, 2, 16, 32]),
                f32(&[1, 1, 1, 16]),
            ],
        )
        .unwrap();
        assert_eq!(out[0].shape, vec![1, 4, 1, 32]);
        assert!(
            infer(
                &Op::Attention { scale: 0.5 },
                &[
                    f32(&[1, 3, 1, 32]),
                    f32(&[1, 2, 16, 32]),
                    f32(&[1, 2, 16, 32])
                ]
            )
            .is_err()
        );
    }

    #[test]
    fn secrecy_propagates() {
        let mut enc = f32(&[4]);
        enc.secrecy = Secrecy::Encrypted;
        let out = infer(&Op::Binary(crate::op::BinaryOp::Add), &[f32(&[4]), enc]).unwrap();
        assert_eq!(out[0].secrecy, Secrecy::Encrypted);
    }
}
