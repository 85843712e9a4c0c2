//! Import-time kernels for ops that exporters apply only to constants (mask and index building:
//! `Trilu`, `CumSum`, `ScatterND`) and for replicating constants (`Tile`, `Expand`). They have
//! no IR op: on run-time data the importer reports them.

use cachemir_ir::Tensor;
use cachemir_ir::infer::normalize_axis;
use ndarray::{ArrayD, Axis, IxDyn};

/// Applies the same shape-generic operation to whichever element type the tensor holds.
macro_rules! each_dtype {
    ($tensor:expr, $a:ident => $body:expr) => {
        match $tensor {
            Tensor::F32($a) => Tensor::F32($body),
            Tensor::F64($a) => Tensor::F64($body),
            Tensor::I64($a) => Tensor::I64($body),
            Tensor::Bool($a) => Tensor::Bool($body),
        }
    };
}

/// `tensor` with `leading_axes` unit axes prepended, then repeated `copies[axis]` times along
/// each axis (ONNX `Tile`; `Expand` of size-1 axes is the same with copies = target size).
pub fn replicate(tensor: &Tensor, leading_axes: usize, copies: &[usize]) -> Result<Tensor, String> {
    fn go<T: Clone>(a: &ArrayD<T>, leading: usize, copies: &[usize]) -> Result<ArrayD<T>, String> {
        let mut shape = vec![1; leading];
        shape.extend_from_slice(a.shape());
        let mut out = a
            .to_shape(IxDyn(&shape))
            .map_err(|e| e.to_string())?
            .into_owned();
        for (axis, &n) in copies.iter().enumerate() {
            if n != 1 {
                let views = vec![out.view(); n];
                out = ndarray::concatenate(Axis(axis), &views).map_err(|e| e.to_string())?;
            }
        }
        Ok(out)
    }
    Ok(each_dtype!(tensor, a => go(a, leading_axes, copies)?))
}

/// ONNX `Trilu`: keep the upper (or lower) triangle of the last two axes from diagonal `k`.
pub fn trilu(tensor: &Tensor, upper: bool, k: i64) -> Result<Tensor, String> {
    fn go<T: Clone + Default>(a: &ArrayD<T>, upper: bool, k: i64) -> Result<ArrayD<T>, String> {
        if a.ndim() < 2 {
            return Err("Trilu needs rank ≥ 2".into());
        }
        let mut out = a.clone();
        let rank = a.ndim();
        for (index, value) in out.indexed_iter_mut() {
            let (row, column) = (index[rank - 2] as i64, index[rank - 1] as i64);
            let keep = if upper {
                column - row >= k
            } else {
                column - row <= k
            };
            if !keep {
                *value = T::default();
            }
        }
        Ok(out)
    }
    Ok(each_dtype!(tensor, a => go(a, upper, k)?))
}

/// ONNX `CumSum` along `axis`, optionally exclusive and/or reversed.
pub fn cumsum(
    tensor: &Tensor,
    axis: i64,
    exclusive: bool,
    reverse: bool,
) -> Result<Tensor, String> {
    fn go<T: Copy + Default + std::ops::Add<Output = T>>(
        a: &ArrayD<T>,
        axis: usize,
        exclusive: bool,
        reverse: bool,
    ) -> ArrayD<T> {
        let mut out = a.clone();
        for mut lane in out.lanes_mut(Axis(axis)) {
            let n = lane.len();
            let mut running = T::default();
            for step in 0..n {
                let i = if reverse { n - 1 - step } else { step };
                let value = lane[i];
                lane[i] = if exclusive { running } else { running + value };
                running = running + value;
            }
        }
        out
    }
    let axis = normalize_axis(axis, tensor.shape().len()).map_err(|e| e.to_string())?;
    Ok(match tensor {
        Tensor::F32(a) => Tensor::F32(go(a, axis, exclusive, reverse)),
        Tensor::F64(a) => Tensor::F64(go(a, axis, exclusive, reverse)),
        Tensor::I64(a) => Tensor::I64(go(a, axis, exclusive, reverse)),
        Tensor::Bool(_) => return Err("CumSum of bools".into()),
    })
}

/// ONNX `ScatterND` (reduction `none`): `data` with the slices addressed by `indices` replaced
/// by `updates`.
pub fn scatter_nd(data: &Tensor, indices: &Tensor, updates: &Tensor) -> Result<Tensor, String> {
    let indices = indices
        .as_i64()
        .ok_or("ScatterND indices must be integers")?;
    let shape = data.shape().to_vec();
    let depth = *indices
        .shape()
        .last()
        .ok_or("ScatterND indices of rank 0")?;
    if depth > shape.len() {
        return Err(format!(
            "index depth {depth} exceeds data rank {}",
            shape.len()
        ));
    }
    let slice_len: usize = shape[depth..].iter().product();
    let count = indices.len() / depth.max(1);
    let mut strides = vec![slice_len; depth];
    for d in (0..depth.saturating_sub(1)).rev() {
        strides[d] = strides[d + 1] * shape[d + 1];
    }
    let offsets = indices
        .as_standard_layout()
        .iter()
        .copied()
        .collect::<Vec<i64>>()
        .chunks(depth.max(1))
        .take(count)
        .map(|index| {
            index
                .iter()
                .enumerate()
                .try_fold(0usize, |offset, (d, &i)| {
                    let dim = shape[d] as i64;
                    let i = if i < 0 { i + dim } else { i };
                    if (0..dim).contains(&i) {
                        Ok(offset + i as usize * strides[d])
                    } else {
                        Err(format!("index {i} out of range for axis {d} of size {dim}"))
                    }
                })
        })
        .collect::<Result<Vec<usize>, String>>()?;
    if updates.len() != count * slice_len {
        return Err(format!(
            "{} updates for {count} slices of {slice_len}",
            updates.len()
        ));
    }
    fn go<T: Clone>(
        a: &ArrayD<T>,
        u: &ArrayD<T>,
        offsets: &[usize],
        slice_len: usize,
    ) -> ArrayD<T> {
        let mut flat: Vec<T> = a.as_standard_layout().iter().cloned().collect();
        let updates: Vec<T> = u.as_standard_layout().iter().cloned().collect();
        for (n, &offset) in offsets.iter().enumerate() {
            flat[offset..offset + slice_len]
                .clone_from_slice(&updates[n * slice_len..(n + 1) * slice_len]);
        }
        ArrayD::from_shape_vec(a.raw_dim(), flat).expect("same length")
    }
    Ok(match (data, updates) {
        (Tensor::F32(a), Tensor::F32(u)) => Tensor::F32(go(a, u, &offsets, slice_len)),
        (Tensor::F64(a), Tensor::F64(u)) => Tensor::F64(go(a, u, &offsets, slice_len)),
        (Tensor::I64(a), Tensor::I64(u)) => Tensor::I64(go(a, u, &offsets, slice_len)),
        (Tensor::Bool(a), Tensor::Bool(u)) => Tensor::Bool(go(a, u, &offsets, slice_len)),
        _ => return Err("data and updates differ in element type".into()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ints(shape: &[usize], values: Vec<i64>) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(shape), values).unwrap())
    }

    #[test]
    fn trilu_keeps_the_causal_triangle() {
        let ones = ints(&[3, 3], vec![1; 9]);
        assert_eq!(
            trilu(&ones, true, 1).unwrap().to_i64_vec(),
            vec![0, 1, 1, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(
            trilu(&ones, false, 0).unwrap().to_i64_vec(),
            vec![1, 0, 0, 1, 1, 0, 1, 1, 1]
        );
    }

    #[test]
    fn cumsum_variants() {
        let x = ints(&[4], vec![1, 2, 3, 4]);
        assert_eq!(
            cumsum(&x, 0, false, false).unwrap().to_i64_vec(),
            vec![1, 3, 6, 10]
        );
        assert_eq!(
            cumsum(&x, 0, true, false).unwrap().to_i64_vec(),
            vec![0, 1, 3, 6]
        );
        assert_eq!(
            cumsum(&x, 0, false, true).unwrap().to_i64_vec(),
            vec![10, 9, 7, 4]
        );
    }

    #[test]
    fn scatter_nd_replaces_rows() {
        let data = ints(&[3, 2], vec![0; 6]);
        let indices = ints(&[2, 1], vec![2, 0]);
        let updates = ints(&[2, 2], vec![5, 6, 7, 8]);
        assert_eq!(
            scatter_nd(&data, &indices, &updates).unwrap().to_i64_vec(),
            vec![7, 8, 0, 0, 5, 6]
        );
        assert!(scatter_nd(&data, &ints(&[1, 1], vec![3]), &ints(&[1, 2], vec![1, 1])).is_err());
    }

    #[test]
    fn replicate_tiles_and_broadcasts() {
        let x = ints(&[1, 2], vec![1, 2]);
        let tiled = replicate(&x, 1, &[2, 1, 2]).unwrap();
        assert_eq!(tiled.shape(), &[2, 1, 4]);
        assert_eq!(tiled.to_i64_vec(), vec![1, 2, 1, 2, 1, 2, 1, 2]);
    }
}
