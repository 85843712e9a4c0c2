//! Element maps of the data-movement ops (Reshape, Transpose, Concat, Split, Slice, Gather with
//! constant indices, Expand, (Un)Squeeze, Flatten): for each output element, which operand and
//! which of its elements (row-major). Lowering turns them into [`super::value::Value`] views.

use cachemir_ir::{Op, Tensor};

/// Whether `op` only moves elements (lowered as a view).
pub fn is_movement(op: &Op) -> bool {
    matches!(
        op,
        Op::Reshape { .. }
            | Op::Squeeze { .. }
            | Op::Unsqueeze { .. }
            | Op::Flatten { .. }
            | Op::Transpose { .. }
            | Op::Expand { .. }
            | Op::Concat { .. }
            | Op::Split { .. }
            | Op::Slice { .. }
            | Op::Gather { .. }
    )
}

/// Row-major strides of `shape`.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Multi-index of flat index `e` in `shape`.
pub fn unravel(mut e: usize, shape: &[usize]) -> Vec<usize> {
    let mut index = vec![0; shape.len()];
    for (i, &d) in shape.iter().enumerate().rev() {
        index[i] = e % d.max(1);
        e /= d.max(1);
    }
    index
}

/// `f(index)` for every multi-index of `shape` in row-major order (one index buffer, not one
/// allocation per element: views of long KV caches have millions of elements).
fn map_indices(shape: &[usize], mut f: impl FnMut(&[usize]) -> (usize, usize)) -> Vec<(u32, u32)> {
    let elements: usize = shape.iter().product();
    let mut index = vec![0; shape.len()];
    let mut out = Vec::with_capacity(elements);
    for e in 0..elements {
        if e > 0 {
            for axis in (0..shape.len()).rev() {
                index[axis] += 1;
                if index[axis] < shape[axis] {
                    break;
                }
                index[axis] = 0;
            }
        }
        let (operand, element) = f(&index);
        out.push((operand as u32, element as u32));
    }
    out
}

/// Flat index in `operand` of output element `e` of the broadcast `output` shape (numpy rules).
pub fn broadcast_index(e: usize, output: &[usize], operand: &[usize]) -> usize {
    Broadcast::new(output, operand).index(e)
}

/// [`broadcast_index`] with the strides computed once, for maps over millions of elements.
#[derive(Debug)]
pub struct Broadcast {
    /// Per output axis, from the last: (extent, operand stride or 0 when broadcast).
    axes: Vec<(usize, usize)>,
}

impl Broadcast {
    pub fn new(output: &[usize], operand: &[usize]) -> Self {
        let offset = output.len() - operand.len();
        let operand_strides = strides(operand);
        let axes = (0..output.len())
            .rev()
            .map(|i| {
                let stride = if i < offset || operand[i - offset] == 1 {
                    0
                } else {
                    operand_strides[i - offset]
                };
                (output[i].max(1), stride)
            })
            .collect();
        Self { axes }
    }

    pub fn index(&self, mut e: usize) -> usize {
        let mut index = 0;
        for &(extent, stride) in &self.axes {
            index += (e % extent) * stride;
            e /= extent;
        }
        index
    }
}

fn axis(a: i64, rank: usize) -> usize {
    if a < 0 {
        (a + rank as i64) as usize
    } else {
        a as usize
    }
}

/// The element map of a movement op producing output `output` (index among the node's outputs)
/// of shape `shape`: `Some(map)` with `map[e] = (operand, element)` (32-bit: maps of long KV
/// caches have millions of entries), or `None` for ops that are
/// not pure data movement. `constant_indices` are Gather's indices when constant.
pub fn element_map(
    op: &Op,
    operand_shapes: &[Vec<usize>],
    output: usize,
    shape: &[usize],
    constant_indices: Option<&Tensor>,
) -> Option<Vec<(u32, u32)>> {
    let elements: usize = shape.iter().product();
    let input = operand_shapes.first()?;
    let map: Vec<(u32, u32)> = match op {
        Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. } => {
            (0..elements as u32).map(|e| (0, e)).collect()
        }
        Op::Transpose { perm } => {
            let in_strides = strides(input);
            map_indices(shape, |index| {
                (
                    0,
                    perm.iter()
                        .enumerate()
                        .map(|(i, &p)| index[i] * in_strides[p])
                        .sum(),
                )
            })
        }
        Op::Expand { .. } => (0..elements)
            .map({
                let b = Broadcast::new(shape, input);
                move |e| (0, b.index(e) as u32)
            })
            .collect(),
        Op::Concat { axis: a } => {
            let a = axis(*a, shape.len());
            let operand_strides: Vec<Vec<usize>> =
                operand_shapes.iter().map(|s| strides(s)).collect();
            map_indices(shape, |index| {
                let mut along = index[a];
                let mut operand = 0;
                while along >= operand_shapes[operand][a] {
                    along -= operand_shapes[operand][a];
                    operand += 1;
                }
                let s = &operand_strides[operand];
                let flat: usize = index.iter().zip(s).map(|(i, s)| i * s).sum();
                (operand, flat - index[a] * s[a] + along * s[a])
            })
        }
        Op::Split { axis: a, sizes } => {
            let a = axis(*a, shape.len());
            let start: usize = sizes[..output].iter().sum();
            let s = strides(input);
            map_indices(shape, |index| {
                (
                    0,
                    index.iter().zip(&s).map(|(i, s)| i * s).sum::<usize>() + start * s[a],
                )
            })
        }
        Op::Slice {
            starts,
            ends: _,
            axes,
            steps,
        } => {
            let rank = input.len();
            let mut first = vec![0i64; rank];
            let mut step = vec![1i64; rank];
            for (k, &a) in axes.iter().enumerate() {
                let a = axis(a, rank);
                let dim = input[a] as i64;
                let st = steps.get(k).copied().unwrap_or(1);
                let mut s = starts[k];
                if s < 0 {
                    s += dim;
                }
                s = if st > 0 {
                    s.clamp(0, dim)
                } else {
                    s.clamp(0, dim - 1)
                };
                first[a] = s;
                step[a] = st;
            }
            let s = strides(input);
            map_indices(shape, |index| {
                let old: i64 = (0..rank)
                    .map(|i| (first[i] + index[i] as i64 * step[i]) * s[i] as i64)
                    .sum();
                (0, old as usize)
            })
        }
        Op::Gather { axis: a } => {
            let indices = constant_indices?.to_f64();
            let indices: Vec<i64> = indices.iter().map(|&v| v as i64).collect();
            let a = axis(*a, input.len());
            let index_rank = operand_shapes.get(1)?.len();
            let s = strides(input);
            (0..elements)
                .map(|e| {
                    let out = unravel(e, shape);
                    let index_shape = &operand_shapes[1];
                    let index_flat: usize = out[a..a + index_rank]
                        .iter()
                        .zip(strides(index_shape))
                        .map(|(i, s)| i * s)
                        .sum();
                    let mut position = indices[index_flat];
                    if position < 0 {
                        position += input[a] as i64;
                    }
                    let mut old = 0;
                    for i in 0..input.len() {
                        let v = if i < a {
                            out[i]
                        } else if i == a {
                            position as usize
                        } else {
                            out[i - 1 + index_rank]
                        };
                        old += v * s[i];
                    }
                    (0, old as u32)
                })
                .collect()
        }
        _ => return None,
    };
    Some(map)
}
