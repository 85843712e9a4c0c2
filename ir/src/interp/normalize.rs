//! Normalisations, reductions and the composite activations: Softmax, LayerNormalization,
//! RMSNorm, Reduce*, GELU, SiLU, RoPE.

use super::Value;
use super::elementwise::{max_or_nan, sigmoid};
use crate::infer::{broadcast_shapes, normalize_axis, reduced_axes};
use crate::op::{GeluApproximation, ReduceOp};
use ndarray::{ArrayD, Axis, IxDyn, Slice};

pub(super) fn softmax(x: &ArrayD<f64>, axis: i64) -> Result<ArrayD<f64>, String> {
    let axis = normalize_axis(axis, x.ndim()).map_err(|e| e.to_string())?;
    let mut out = x.clone();
    softmax_in_place(&mut out, axis);
    Ok(out)
}

/// Softmax along the last axis, in place.
pub(super) fn softmax_last_axis_in_place(x: &mut ArrayD<f64>) {
    let last = x.ndim() - 1;
    softmax_in_place(x, last);
}

fn softmax_in_place(x: &mut ArrayD<f64>, axis: usize) {
    for mut lane in x.lanes_mut(Axis(axis)) {
        let max = lane.fold(f64::NEG_INFINITY, |m, &v| m.max(v));
        lane.mapv_inplace(|v| (v - max).exp());
        let sum = lane.sum();
        lane.mapv_inplace(|v| v / sum);
    }
}

/// Reshapes `x` to `[outer, inner]` rows where `inner` covers the axes from `axis` on.
fn rows(x: &ArrayD<f64>, axis: usize) -> ndarray::Array2<f64> {
    let inner: usize = x.shape()[axis..].iter().product();
    let outer = x.len() / inner.max(1);
    x.as_standard_layout()
        .into_owned()
        .into_shape_with_order((outer, inner))
        .expect("element count")
}

/// `v` broadcast to `shape` and flattened (for scale/bias vectors over the normalised axes).
fn flat_broadcast(v: &ArrayD<f64>, shape: &[usize]) -> Result<Vec<f64>, String> {
    let b = broadcast_shapes(shape, v.shape()).map_err(|e| e.to_string())?;
    if b != shape {
        return Err(format!("{:?} does not broadcast to {shape:?}", v.shape()));
    }
    Ok(v.broadcast(IxDyn(shape))
        .expect("checked")
        .iter()
        .copied()
        .collect())
}

pub(super) fn layer_norm(
    x: &ArrayD<f64>,
    scale: &ArrayD<f64>,
    bias: Option<&ArrayD<f64>>,
    axis: i64,
    epsilon: f64,
) -> Result<ArrayD<f64>, String> {
    let axis = normalize_axis(axis, x.ndim()).map_err(|e| e.to_string())?;
    let normalized = &x.shape()[axis..];
    let scale = flat_broadcast(scale, normalized)?;
    let bias = bias.map(|b| flat_broadcast(b, normalized)).transpose()?;
    let mut r = rows(x, axis);
    for mut row in r.rows_mut() {
        let n = row.len() as f64;
        let mean = row.sum() / n;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / n;
        let inv = 1.0 / (var + epsilon).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v = (*v - mean) * inv * scale[i] + bias.as_ref().map_or(0.0, |b| b[i]);
        }
    }
    r.into_shape_with_order(x.raw_dim())
        .map_err(|e| e.to_string())
}

pub(super) fn rms_norm(
    x: &ArrayD<f64>,
    scale: &ArrayD<f64>,
    epsilon: f64,
) -> Result<ArrayD<f64>, String> {
    let axis = x.ndim() - 1;
    let scale: Vec<f64> = scale.iter().copied().collect();
    let mut r = rows(x, axis);
    for mut row in r.rows_mut() {
        let mean_square = row.iter().map(|v| v * v).sum::<f64>() / row.len() as f64;
        let inv = 1.0 / (mean_square + epsilon).sqrt();
        for (i, v) in row.iter_mut().enumerate() {
            *v *= inv * scale[i];
        }
    }
    r.into_shape_with_order(x.raw_dim())
        .map_err(|e| e.to_string())
}

pub(super) fn reduce(
    op: ReduceOp,
    x: &Value,
    axes: &[i64],
    keep_dims: bool,
) -> Result<Value, String> {
    let axes = reduced_axes(x.shape().len(), axes).map_err(|e| e.to_string())?;
    match x {
        Value::Float(a) => {
            // L2 squares once, sums over every axis, and takes one square root at the end.
            let mut out = if op == ReduceOp::L2 {
                a.mapv(|v| v * v)
            } else {
                a.clone()
            };
            for &axis in axes.iter().rev() {
                out = match op {
                    ReduceOp::Sum | ReduceOp::Mean | ReduceOp::L2 => out.sum_axis(Axis(axis)),
                    ReduceOp::Max => {
                        out.fold_axis(Axis(axis), f64::NEG_INFINITY, |&m, &v| max_or_nan(m, v))
                    }
                };
            }
            let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
            match op {
                ReduceOp::Mean => out.mapv_inplace(|v| v / count as f64),
                ReduceOp::L2 => out.mapv_inplace(f64::sqrt),
                _ => {}
            }
            Ok(Value::Float(keep(out, &axes, keep_dims)))
        }
        Value::Int(a) => {
            let mut out = a.clone();
            for &axis in axes.iter().rev() {
                out = match op {
                    ReduceOp::Sum => out.sum_axis(Axis(axis)),
                    ReduceOp::Max => out.fold_axis(Axis(axis), i64::MIN, |m, &v| *m.max(&v)),
                    _ => return Err(format!("Reduce{op:?} of integers")),
                };
            }
            Ok(Value::Int(keep(out, &axes, keep_dims)))
        }
        Value::Bool(_) => Err(format!("Reduce{op:?} of bools")),
    }
}

fn keep<T>(mut out: ArrayD<T>, axes: &[usize], keep_dims: bool) -> ArrayD<T> {
    if keep_dims {
        for &axis in axes {
            out.insert_axis_inplace(Axis(axis));
        }
    }
    out
}

pub(super) fn gelu(x: &ArrayD<f64>, approximation: GeluApproximation) -> ArrayD<f64> {
    match approximation {
        GeluApproximation::Erf => {
            x.mapv(|v| 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)))
        }
        GeluApproximation::Tanh => {
            let c = (2.0 / std::f64::consts::PI).sqrt();
            x.mapv(|v| 0.5 * v * (1.0 + (c * (v + 0.044715 * v * v * v)).tanh()))
        }
    }
}

pub(super) fn silu(x: &ArrayD<f64>) -> ArrayD<f64> {
    x.mapv(|v| v * sigmoid(v))
}

pub(super) fn rope(
    x: &ArrayD<f64>,
    cos: &ArrayD<f64>,
    sin: &ArrayD<f64>,
) -> Result<ArrayD<f64>, String> {
    let last = x.ndim() - 1;
    let half = x.shape()[last] / 2;
    let first = x.slice_axis(Axis(last), Slice::from(..half));
    let second = x.slice_axis(Axis(last), Slice::from(half..));
    let rotated = ndarray::concatenate(Axis(last), &[(-&second).view(), first.view()])
        .map_err(|e| e.to_string())?;
    let cos = cos.broadcast(x.raw_dim()).ok_or("cos does not broadcast")?;
    let sin = sin.broadcast(x.raw_dim()).ok_or("sin does not broadcast")?;
    Ok(x * &cos + &rotated * &sin)
}
