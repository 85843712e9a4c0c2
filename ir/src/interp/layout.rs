//! Data-movement kernels: Transpose, Reshape (and Flatten/Squeeze/Unsqueeze), Expand, Concat,
//! Split, Slice, Gather.

use super::Value;
use crate::dtype::{DType, Secrecy, TensorType};
use crate::infer::{normalize_axis, slice_ranges};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

/// Applies the same shape-generic operation to whichever element type the value holds.
macro_rules! each_kind {
    ($value:expr, $a:ident => $body:expr) => {
        match $value {
            Value::Float($a) => Value::Float($body),
            Value::Int($a) => Value::Int($body),
            Value::Bool($a) => Value::Bool($body),
        }
    };
}

/// The type of a value (for ops whose output shape comes from shape inference).
pub(super) fn type_of(v: &Value) -> TensorType {
    let dtype = match v {
        Value::Float(_) => DType::F64,
        Value::Int(_) => DType::I64,
        Value::Bool(_) => DType::Bool,
    };
    TensorType::new(dtype, v.shape().to_vec(), Secrecy::Public)
}

pub(super) fn transpose(x: &Value, perm: &[usize]) -> Value {
    each_kind!(x, a => a.view().permuted_axes(IxDyn(perm)).as_standard_layout().into_owned())
}

pub(super) fn reshape(x: &Value, shape: &[usize]) -> Result<Value, String> {
    fn go<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
        a.as_standard_layout()
            .into_owned()
            .into_shape_with_order(IxDyn(shape))
            .map_err(|e| e.to_string())
    }
    Ok(each_kind!(x, a => go(a, shape)?))
}

pub(super) fn expand(x: &Value, shape: &[usize]) -> Result<Value, String> {
    fn go<T: Clone>(a: &ArrayD<T>, shape: &[usize]) -> Result<ArrayD<T>, String> {
        Ok(a.broadcast(IxDyn(shape))
            .ok_or_else(|| format!("{:?} does not broadcast to {shape:?}", a.shape()))?
            .to_owned())
    }
    Ok(each_kind!(x, a => go(a, shape)?))
}

pub(super) fn concat(operands: &[&Value], axis: i64) -> Result<Value, String> {
    let rank = operands.first().ok_or("Concat of nothing")?.shape().len();
    let axis = Axis(normalize_axis(axis, rank).map_err(|e| e.to_string())?);
    fn go<'a, T: Clone + 'a>(
        axis: Axis,
        parts: impl Iterator<Item = Option<&'a ArrayD<T>>>,
    ) -> Result<ArrayD<T>, String> {
        let views = parts
            .map(|p| p.map(|a| a.view()))
            .collect::<Option<Vec<_>>>()
            .ok_or("Concat of mixed element types")?;
        ndarray::concatenate(axis, &views).map_err(|e| e.to_string())
    }
    Ok(match operands[0] {
        Value::Float(_) => Value::Float(go(
            axis,
            operands.iter().map(|v| match v {
                Value::Float(a) => Some(a),
                _ => None,
            }),
        )?),
        Value::Int(_) => Value::Int(go(
            axis,
            operands.iter().map(|v| match v {
                Value::Int(a) => Some(a),
                _ => None,
            }),
        )?),
        Value::Bool(_) => Value::Bool(go(
            axis,
            operands.iter().map(|v| match v {
                Value::Bool(a) => Some(a),
                _ => None,
            }),
        )?),
    })
}

pub(super) fn split(x: &Value, axis: i64, sizes: &[usize]) -> Result<Vec<Value>, String> {
    let axis = normalize_axis(axis, x.shape().len()).map_err(|e| e.to_string())?;
    let mut start = 0;
    let mut parts = Vec::with_capacity(sizes.len());
    for &size in sizes {
        let piece = Slice::from(start..start + size);
        parts.push(each_kind!(x, a => a.slice_axis(Axis(axis), piece).to_owned()));
        start += size;
    }
    Ok(parts)
}

pub(super) fn slice(
    x: &Value,
    starts: &[i64],
    ends: &[i64],
    axes: &[i64],
    steps: &[i64],
) -> Result<Value, String> {
    let ranges = slice_ranges(x.shape(), starts, ends, axes, steps).map_err(|e| e.to_string())?;
    // ndarray's negative steps walk a range backwards from its end, so express each ONNX range
    // as the span it covers plus the step's sign.
    let slices: Vec<Slice> = ranges
        .iter()
        .map(|r| {
            if r.is_empty() {
                return Slice::from(0..0);
            }
            let span = (r.len() as i64 - 1) * r.step.abs();
            let (low, high) = if r.step > 0 {
                (r.start, r.start + span + 1)
            } else {
                (r.start - span, r.start + 1)
            };
            Slice::new(low as isize, Some(high as isize), r.step as isize)
        })
        .collect();
    Ok(each_kind!(x, a => a.slice_each_axis(|d| slices[d.axis.index()]).to_owned()))
}

pub(super) fn gather(data: &Value, indices: &Value, axis: i64) -> Result<Value, String> {
    let Value::Int(indices) = indices else {
        return Err("Gather needs integer indices".into());
    };
    let shape = data.shape();
    let axis = normalize_axis(axis, shape.len()).map_err(|e| e.to_string())?;
    let dim = shape[axis] as i64;
    let flat = indices
        .iter()
        .map(|&i| {
            let j = if i < 0 { i + dim } else { i };
            if (0..dim).contains(&j) {
                Ok(j as usize)
            } else {
                Err(format!(
                    "index {i} is out of range for an axis of size {dim}"
                ))
            }
        })
        .collect::<Result<Vec<usize>, String>>()?;
    let mut out_shape = shape[..axis].to_vec();
    out_shape.extend_from_slice(indices.shape());
    out_shape.extend_from_slice(&shape[axis + 1..]);
    fn go<T: Clone>(
        a: &ArrayD<T>,
        axis: usize,
        flat: &[usize],
        out: &[usize],
    ) -> Result<ArrayD<T>, String> {
        a.select(Axis(axis), flat)
            .into_shape_with_order(IxDyn(out))
            .map_err(|e| e.to_string())
    }
    Ok(each_kind!(data, a => go(a, axis, &flat, &out_shape)?))
}
