//! Matrix products: numpy `matmul`, ONNX `Gemm`, and grouped scaled dot-product attention.

use super::normalize::softmax_last_axis_in_place;
use crate::infer::{broadcast_shapes, matmul_shape};
use ndarray::{Array2, Array3, ArrayD, ArrayView2, Axis, Ix2, IxDyn, s};

pub(super) fn matmul(a: &ArrayD<f64>, b: &ArrayD<f64>) -> Result<ArrayD<f64>, String> {
    let out_shape = matmul_shape(a.shape(), b.shape()).map_err(|e| e.to_string())?;
    let a_shape: Vec<usize> = if a.ndim() == 1 {
        vec![1, a.len()]
    } else {
        a.shape().to_vec()
    };
    let b_shape: Vec<usize> = if b.ndim() == 1 {
        vec![b.len(), 1]
    } else {
        b.shape().to_vec()
    };
    let a = a.to_shape(IxDyn(&a_shape)).map_err(|e| e.to_string())?;
    let b = b.to_shape(IxDyn(&b_shape)).map_err(|e| e.to_string())?;
    let (m, k) = (a_shape[a_shape.len() - 2], a_shape[a_shape.len() - 1]);
    let n = b_shape[b_shape.len() - 1];

    // A weight matrix shared by every batch: one large product instead of many small ones.
    if k == 0 {
        return Ok(ArrayD::zeros(IxDyn(&out_shape)));
    }
    if b_shape.len() == 2 {
        let rows = a.len() / k;
        let a2 = a.to_shape((rows, k)).map_err(|e| e.to_string())?;
        let b2 = b.view().into_dimensionality::<Ix2>().expect("rank 2");
        let out = a2.dot(&b2);
        return out
            .into_shape_with_order(IxDyn(&out_shape))
            .map_err(|e| e.to_string());
    }

    let batch = broadcast_shapes(&a_shape[..a_shape.len() - 2], &b_shape[..b_shape.len() - 2])
        .map_err(|e| e.to_string())?;
    let count: usize = batch.iter().product();
    let stacked = |x: &ArrayD<f64>, rows: usize, cols: usize| -> Result<Array3<f64>, String> {
        let mut shape = batch.clone();
        shape.extend([rows, cols]);
        let view = x
            .broadcast(IxDyn(&shape))
            .ok_or("operand does not broadcast")?;
        view.to_shape((count, rows, cols))
            .map(|v| v.into_owned())
            .map_err(|e| e.to_string())
    };
    let a3 = stacked(&a.to_owned(), m, k)?;
    let b3 = stacked(&b.to_owned(), k, n)?;
    let mut out = Array3::<f64>::zeros((count, m, n));
    for i in 0..count {
        out.slice_mut(s![i, .., ..])
            .assign(&a3.index_axis(Axis(0), i).dot(&b3.index_axis(Axis(0), i)));
    }
    out.into_shape_with_order(IxDyn(&out_shape))
        .map_err(|e| e.to_string())
}

pub(super) fn gemm(
    a: &ArrayD<f64>,
    b: &ArrayD<f64>,
    c: Option<&ArrayD<f64>>,
    (alpha, beta, trans_a, trans_b): (f64, f64, bool, bool),
) -> Result<ArrayD<f64>, String> {
    let as2 = |x: &ArrayD<f64>| -> Result<Array2<f64>, String> {
        x.view()
            .into_dimensionality::<Ix2>()
            .map(|v| v.to_owned())
            .map_err(|e| e.to_string())
    };
    let (a, b) = (as2(a)?, as2(b)?);
    let a: ArrayView2<f64> = if trans_a { a.t() } else { a.view() };
    let b: ArrayView2<f64> = if trans_b { b.t() } else { b.view() };
    let mut out = a.dot(&b) * alpha;
    if let Some(c) = c {
        let c = c
            .broadcast(IxDyn(out.shape()))
            .ok_or("C does not broadcast")?;
        out.zip_mut_with(&c, |o, &c| *o += beta * c);
    }
    Ok(out.into_dyn())
}

pub(super) fn attention(
    q: &ArrayD<f64>,
    k: &ArrayD<f64>,
    v: &ArrayD<f64>,
    mask: Option<&ArrayD<f64>>,
    scale: f64,
) -> Result<ArrayD<f64>, String> {
    let (batch, heads, queries, _) = (q.shape()[0], q.shape()[1], q.shape()[2], q.shape()[3]);
    let (kv_heads, keys, value_dim) = (k.shape()[1], k.shape()[2], v.shape()[3]);
    let group = heads / kv_heads;
    let scores_shape = IxDyn(&[batch, heads, queries, keys]);
    let mask = match mask {
        Some(m) => Some(m.broadcast(scores_shape).ok_or("mask does not broadcast")?),
        None => None,
    };
    let mut out = ArrayD::<f64>::zeros(IxDyn(&[batch, heads, queries, value_dim]));
    for b in 0..batch {
        for h in 0..heads {
            let qh = q.slice(s![b, h, .., ..]);
            let kh = k.slice(s![b, h / group, .., ..]);
            let vh = v.slice(s![b, h / group, .., ..]);
            let mut scores = qh.dot(&kh.t()) * scale;
            if let Some(mask) = &mask {
                scores += &mask.slice(s![b, h, .., ..]);
            }
            let mut scores = scores.into_dyn();
            softmax_last_axis_in_place(&mut scores);
            let scores = scores.into_dimensionality::<Ix2>().expect("rank 2");
            out.slice_mut(s![b, h, .., ..]).assign(&scores.dot(&vh));
        }
    }
    Ok(out)
}
