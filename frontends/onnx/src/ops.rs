//! ONNX op importers, registered by op type: each turns one node into an IR op over named
//! operands, into constants computed at import time, or into an alias of its input.
//!
//! Shape-like operands (Reshape's shape, Slice's starts, Squeeze's axes, …) must be constants
//! once folding has run; they become static attributes of the IR op.

use crate::error::OnnxError;
use crate::fold;
use crate::importer::{Importer, Slot};
use crate::proto::{Attributes, dtype_from_onnx};
use cachemir_ir::infer::{broadcast_shapes, normalize_axis};
use cachemir_ir::{BinaryOp, CompareOp, DType, GeluApproximation, Op, ReduceOp, Tensor, UnaryOp};
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::NodeProto;

/// What a node becomes.
pub(crate) enum Lowered {
    /// An IR op over these ONNX tensor names (folded when they are all constants).
    Op(Op, Vec<String>),
    /// Values computed at import time (Shape, Range, ConstantOfShape, Constant, …).
    Constants(Vec<Tensor>),
    /// The outputs are these tensors unchanged (Identity, Dropout at inference).
    Alias(Vec<String>),
    /// The tensor with `leading_axes` unit axes prepended, then repeated `copies[axis]` times
    /// along each axis (`Expand`, `Tile`): folded for constants, a `Reshape` and `Concat`s of
    /// copies for run-time values, so no broadcast op reaches the compiler.
    Replicate {
        input: String,
        leading_axes: usize,
        copies: Vec<usize>,
    },
}

/// The node's inputs, with absent optional inputs as `None`.
struct Inputs<'a> {
    node: &'a NodeProto,
    importer: &'a Importer,
    attributes: &'a Attributes<'a>,
}

impl<'a> Inputs<'a> {
    fn name(&self, i: usize) -> Option<&'a str> {
        self.node
            .input
            .get(i)
            .map(String::as_str)
            .filter(|n| !n.is_empty())
    }

    fn required(&self, i: usize) -> Result<String, OnnxError> {
        self.name(i)
            .map(str::to_string)
            .ok_or_else(|| self.attributes.error(format!("input {i} is required")))
    }

    fn slot(&self, i: usize) -> Result<&'a Slot, OnnxError> {
        let name = self.required(i)?;
        self.importer.slot(&name).ok_or_else(|| {
            self.attributes
                .error(format!("input `{name}` is undefined"))
        })
    }

    fn shape(&self, i: usize) -> Result<Vec<usize>, OnnxError> {
        Ok(self.importer.slot_type(self.slot(i)?).shape)
    }

    /// The constant value of input `i`, or an error saying it depends on run-time data.
    fn constant(&self, i: usize, what: &str) -> Result<&'a Tensor, OnnxError> {
        match self.slot(i)? {
            Slot::Constant(t) => Ok(t),
            Slot::Value(_) => Err(self.attributes.error(format!(
                "{what} (input {i}) depends on run-time data; only static shapes are supported"
            ))),
        }
    }

    fn optional_ints(&self, i: usize, what: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        match self.name(i) {
            Some(_) => Ok(Some(self.constant(i, what)?.to_i64_vec())),
            None => Ok(None),
        }
    }

    fn all(&self) -> Vec<String> {
        self.node
            .input
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect()
    }

    fn first(&self, count: usize) -> Vec<String> {
        self.node
            .input
            .iter()
            .take(count)
            .filter(|n| !n.is_empty())
            .cloned()
            .collect()
    }
}

/// Lowers one ONNX node. `label` names it in errors.
pub(crate) fn lower(
    importer: &mut Importer,
    node: &NodeProto,
    attributes: &Attributes,
    label: &str,
) -> Result<Lowered, OnnxError> {
    let opset = importer.opset;
    let inputs = Inputs {
        node,
        importer,
        attributes,
    };
    let op = |op: Op| Ok(Lowered::Op(op, inputs.all()));
    let unary = |u: UnaryOp| Ok(Lowered::Op(Op::Unary(u), inputs.first(1)));
    let binary = |b: BinaryOp| Ok(Lowered::Op(Op::Binary(b), inputs.first(2)));
    let compare = |c: CompareOp| Ok(Lowered::Op(Op::Compare(c), inputs.first(2)));
    match node.op_type.as_str() {
        "Add" => binary(BinaryOp::Add),
        "Sub" => binary(BinaryOp::Sub),
        "Mul" => binary(BinaryOp::Mul),
        "Div" => binary(BinaryOp::Div),
        "Pow" => binary(BinaryOp::Pow),
        "And" => binary(BinaryOp::And),
        "Or" => binary(BinaryOp::Or),
        "Max" | "Min" => {
            let b = if node.op_type == "Max" {
                BinaryOp::Max
            } else {
                BinaryOp::Min
            };
            match inputs.all().len() {
                1 => Ok(Lowered::Alias(inputs.all())),
                2 => binary(b),
                n => Err(attributes.error(format!("{n} operands; at most 2 are supported"))),
            }
        }
        "Equal" => compare(CompareOp::Equal),
        "Less" => compare(CompareOp::Less),
        "LessOrEqual" => compare(CompareOp::LessOrEqual),
        "Greater" => compare(CompareOp::Greater),
        "GreaterOrEqual" => compare(CompareOp::GreaterOrEqual),
        "Not" => unary(UnaryOp::Not),
        "Neg" => unary(UnaryOp::Neg),
        "Abs" => unary(UnaryOp::Abs),
        "Sqrt" => unary(UnaryOp::Sqrt),
        "Reciprocal" => unary(UnaryOp::Reciprocal),
        "Exp" => unary(UnaryOp::Exp),
        "Log" => unary(UnaryOp::Log),
        "Erf" => unary(UnaryOp::Erf),
        "Tanh" => unary(UnaryOp::Tanh),
        "Sigmoid" => unary(UnaryOp::Sigmoid),
        "Sin" => unary(UnaryOp::Sin),
        "Cos" => unary(UnaryOp::Cos),
        "Floor" => unary(UnaryOp::Floor),
        "Ceil" => unary(UnaryOp::Ceil),
        "Relu" => {
            let x = inputs.required(0)?;
            let dtype = importer.slot_type(inputs.slot(0)?).dtype;
            let zero = scalar(dtype, 0.0);
            let zero = importer.fresh_constant(label, zero);
            Ok(Lowered::Op(Op::Binary(BinaryOp::Max), vec![x, zero]))
        }
        "Gelu" => {
            let approximation = match attributes.string("approximate").as_deref() {
                None | Some("none") => GeluApproximation::Erf,
                Some("tanh") => GeluApproximation::Tanh,
                Some(other) => return Err(attributes.error(format!("approximate=`{other}`"))),
            };
            Ok(Lowered::Op(Op::Gelu { approximation }, inputs.first(1)))
        }
        "Where" => op(Op::Where),
        "Cast" => {
            let to = attributes.int("to", 0) as i32;
            let to = dtype_from_onnx(to)
                .ok_or_else(|| attributes.error(format!("cast to element type {to}")))?;
            Ok(Lowered::Op(Op::Cast { to }, inputs.first(1)))
        }
        "Clip" => {
            let bound = |i: usize, attribute: &str| -> Result<Option<f64>, OnnxError> {
                if opset < 11 {
                    return Ok(attributes
                        .has(attribute)
                        .then(|| attributes.float(attribute, 0.0)));
                }
                match inputs.name(i) {
                    Some(_) => Ok(inputs.constant(i, attribute)?.first_f64()),
                    None => Ok(None),
                }
            };
            let (min, max) = (bound(1, "min")?, bound(2, "max")?);
            Ok(Lowered::Op(Op::Clip { min, max }, inputs.first(1)))
        }
        "MatMul" => op(Op::MatMul),
        "Gemm" => op(Op::Gemm {
            alpha: attributes.float("alpha", 1.0),
            beta: attributes.float("beta", 1.0),
            trans_a: attributes.int("transA", 0) != 0,
            trans_b: attributes.int("transB", 0) != 0,
        }),
        "Softmax" => Ok(Lowered::Op(
            Op::Softmax {
                axis: attributes.int("axis", -1),
            },
            inputs.first(1),
        )),
        "LayerNormalization" => {
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(attributes.error("the Mean and InvStdDev outputs are not supported"));
            }
            op(Op::LayerNormalization {
                axis: attributes.int("axis", -1),
                epsilon: attributes.float("epsilon", 1e-5),
            })
        }
        "ReduceMean" => reduce(&inputs, attributes, ReduceOp::Mean, opset >= 18),
        "ReduceSum" => reduce(&inputs, attributes, ReduceOp::Sum, true),
        "ReduceMax" => reduce(&inputs, attributes, ReduceOp::Max, opset >= 18),
        "ReduceL2" => reduce(&inputs, attributes, ReduceOp::L2, opset >= 18),
        "Transpose" => {
            let rank = inputs.shape(0)?.len();
            let perm = match attributes.ints("perm") {
                Some(p) => p
                    .iter()
                    .map(|&a| normalize_axis(a, rank).map_err(|e| attributes.error(e.to_string())))
                    .collect::<Result<Vec<_>, _>>()?,
                None => (0..rank).rev().collect(),
            };
            Ok(Lowered::Op(Op::Transpose { perm }, inputs.first(1)))
        }
        "Reshape" => {
            let input = inputs.shape(0)?;
            let target = inputs.constant(1, "shape")?.to_i64_vec();
            let shape = resolve_reshape(&input, &target, attributes.int("allowzero", 0) != 0)
                .map_err(|m| attributes.error(m))?;
            Ok(Lowered::Op(Op::Reshape { shape }, inputs.first(1)))
        }
        "Flatten" => Ok(Lowered::Op(
            Op::Flatten {
                axis: attributes.int("axis", 1),
            },
            inputs.first(1),
        )),
        "Expand" => {
            let input = inputs.shape(0)?;
            let target: Vec<usize> = inputs
                .constant(1, "shape")?
                .to_i64_vec()
                .iter()
                .map(|&d| {
                    usize::try_from(d).map_err(|_| attributes.error(format!("negative size {d}")))
                })
                .collect::<Result<_, _>>()?;
            let shape =
                broadcast_shapes(&input, &target).map_err(|e| attributes.error(e.to_string()))?;
            let leading_axes = shape.len() - input.len();
            let copies = shape
                .iter()
                .enumerate()
                .map(
                    |(axis, &want)| match axis.checked_sub(leading_axes).map(|a| input[a]) {
                        Some(have) if have == want => 1,
                        _ => want,
                    },
                )
                .collect();
            Ok(Lowered::Replicate {
                input: inputs.required(0)?,
                leading_axes,
                copies,
            })
        }
        "Tile" => {
            let rank = inputs.shape(0)?.len();
            let copies: Vec<usize> = inputs
                .constant(1, "repeats")?
                .to_i64_vec()
                .iter()
                .map(|&r| {
                    usize::try_from(r).map_err(|_| attributes.error(format!("negative repeat {r}")))
                })
                .collect::<Result<_, _>>()?;
            if copies.len() != rank {
                return Err(attributes.error(format!("{} repeats for rank {rank}", copies.len())));
            }
            Ok(Lowered::Replicate {
                input: inputs.required(0)?,
                leading_axes: 0,
                copies,
            })
        }
        "Trilu" => {
            let k = match inputs.name(1) {
                Some(_) => inputs.constant(1, "k")?.first_f64().unwrap_or(0.0) as i64,
                None => 0,
            };
            let upper = attributes.int("upper", 1) != 0;
            let x = inputs.constant(0, "input (Trilu is folded only)")?;
            Ok(Lowered::Constants(vec![
                fold::trilu(x, upper, k).map_err(|m| attributes.error(m))?,
            ]))
        }
        "CumSum" => {
            let x = inputs.constant(0, "x (CumSum is folded only)")?;
            let axis = inputs.constant(1, "axis")?.first_f64().unwrap_or(0.0) as i64;
            let exclusive = attributes.int("exclusive", 0) != 0;
            let reverse = attributes.int("reverse", 0) != 0;
            Ok(Lowered::Constants(vec![
                fold::cumsum(x, axis, exclusive, reverse).map_err(|m| attributes.error(m))?,
            ]))
        }
        "ScatterND" => {
            if attributes.string("reduction").is_some_and(|r| r != "none") {
                return Err(attributes.error("only reduction `none` is supported"));
            }
            let data = inputs.constant(0, "data (ScatterND is folded only)")?;
            let indices = inputs.constant(1, "indices")?;
            let updates = inputs.constant(2, "updates")?;
            Ok(Lowered::Constants(vec![
                fold::scatter_nd(data, indices, updates).map_err(|m| attributes.error(m))?,
            ]))
        }
        "Concat" => {
            if !attributes.has("axis") {
                return Err(attributes.error("attribute `axis` is required"));
            }
            // Zero-length pieces (an empty past at prefill) are dropped: they add nothing.
            let mut names = inputs.all();
            if names.len() > 1 {
                let axis = attributes.int("axis", 0);
                let rank = inputs.shape(0)?.len();
                let axis =
                    normalize_axis(axis, rank).map_err(|e| attributes.error(e.to_string()))?;
                let keep: Vec<String> = names
                    .iter()
                    .filter(|n| {
                        importer
                            .slot(n)
                            .is_none_or(|s| importer.slot_type(s).shape.get(axis) != Some(&0))
                    })
                    .cloned()
                    .collect();
                if keep.len() == 1 {
                    return Ok(Lowered::Alias(keep));
                }
                if !keep.is_empty() {
                    names = keep;
                }
            }
            Ok(Lowered::Op(
                Op::Concat {
                    axis: attributes.int("axis", 0),
                },
                names,
            ))
        }
        "Split" => {
            let axis = attributes.int("axis", 0);
            let shape = inputs.shape(0)?;
            let dim = shape
                [normalize_axis(axis, shape.len()).map_err(|e| attributes.error(e.to_string()))?];
            let explicit = if opset >= 13 {
                inputs.optional_ints(1, "split")?
            } else {
                attributes.ints("split")
            };
            let sizes: Vec<usize> = match explicit {
                Some(s) => s.iter().map(|&v| v.max(0) as usize).collect(),
                None => {
                    let parts = if attributes.has("num_outputs") {
                        attributes.int("num_outputs", 1) as usize
                    } else {
                        node.output.len()
                    };
                    if parts == 0 {
                        return Err(attributes.error("split into 0 parts"));
                    }
                    let chunk = dim.div_ceil(parts);
                    (0..parts)
                        .map(|p| chunk.min(dim.saturating_sub(p * chunk)))
                        .collect()
                }
            };
            Ok(Lowered::Op(Op::Split { axis, sizes }, inputs.first(1)))
        }
        "Slice" => {
            let starts = inputs.constant(1, "starts")?.to_i64_vec();
            let ends = inputs.constant(2, "ends")?.to_i64_vec();
            let axes = inputs
                .optional_ints(3, "axes")?
                .unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = inputs
                .optional_ints(4, "steps")?
                .unwrap_or_else(|| vec![1; starts.len()]);
            Ok(Lowered::Op(
                Op::Slice {
                    starts,
                    ends,
                    axes,
                    steps,
                },
                inputs.first(1),
            ))
        }
        "Gather" => Ok(Lowered::Op(
            Op::Gather {
                axis: attributes.int("axis", 0),
            },
            inputs.first(2),
        )),
        "Squeeze" | "Unsqueeze" => {
            let axes = if opset >= 13 {
                inputs.optional_ints(1, "axes")?
            } else {
                attributes.ints("axes")
            };
            let op = if node.op_type == "Squeeze" {
                Op::Squeeze {
                    axes: axes.unwrap_or_default(),
                }
            } else {
                Op::Unsqueeze {
                    axes: axes.ok_or_else(|| attributes.error("`axes` is required"))?,
                }
            };
            Ok(Lowered::Op(op, inputs.first(1)))
        }
        "Identity" | "Dropout" => {
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(attributes.error("the mask output of Dropout is not supported"));
            }
            Ok(Lowered::Alias(inputs.first(1)))
        }
        "Shape" => {
            let shape = inputs.shape(0)?;
            let rank = shape.len() as i64;
            let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
            let start = clamp(attributes.int("start", 0));
            let end = clamp(attributes.int("end", rank));
            let dims: Vec<i64> = shape[start..end.max(start)]
                .iter()
                .map(|&d| d as i64)
                .collect();
            Ok(Lowered::Constants(vec![Tensor::from_i64s(&dims)]))
        }
        "Size" => {
            let count: usize = inputs.shape(0)?.iter().product();
            Ok(Lowered::Constants(vec![Tensor::I64(
                ndarray::arr0(count as i64).into_dyn(),
            )]))
        }
        "Constant" => Ok(Lowered::Constants(vec![constant_value(attributes)?])),
        "ConstantOfShape" => {
            let shape: Vec<usize> = inputs
                .constant(0, "shape")?
                .to_i64_vec()
                .iter()
                .map(|&d| d.max(0) as usize)
                .collect();
            let value = attributes
                .tensor("value")?
                .unwrap_or_else(|| scalar(DType::F32, 0.0));
            Ok(Lowered::Constants(vec![fill(&value, &shape)]))
        }
        "Range" => {
            let start = inputs.constant(0, "start")?;
            let limit = inputs.constant(1, "limit")?;
            let delta = inputs.constant(2, "delta")?;
            Ok(Lowered::Constants(vec![
                range(start, limit, delta).map_err(|m| attributes.error(m))?,
            ]))
        }
        "DequantizeLinear" => {
            let x = inputs.constant(0, "x")?.to_f64();
            let scale = inputs.constant(1, "x_scale")?.to_f64();
            let zero = match inputs.name(2) {
                Some(_) => inputs.constant(2, "x_zero_point")?.to_f64(),
                None => ArrayD::zeros(scale.raw_dim()),
            };
            // The axis matters only for per-axis quantisation (a scale with several values).
            let per_axis = |a: &ArrayD<f64>| -> Result<ArrayD<f64>, OnnxError> {
                if a.ndim() == 0 || a.len() == 1 {
                    return Ok(a.clone());
                }
                let axis = normalize_axis(attributes.int("axis", 1), x.ndim())
                    .map_err(|e| attributes.error(e.to_string()))?;
                let mut shape = vec![1; x.ndim()];
                shape[axis] = a.len();
                a.to_shape(IxDyn(&shape))
                    .map(|v| v.to_owned())
                    .map_err(|e| attributes.error(e.to_string()))
            };
            let (scale, zero) = (per_axis(&scale)?, per_axis(&zero)?);
            let y = (&x - &zero) * &scale;
            Ok(Lowered::Constants(vec![Tensor::F32(y.mapv(|v| v as f32))]))
        }
        other => Err(OnnxError::UnsupportedOp {
            node: label.to_string(),
            op_type: other.to_string(),
            domain: "ai.onnx".into(),
            opset,
        }),
    }
}

fn reduce(
    inputs: &Inputs,
    attributes: &Attributes,
    op: ReduceOp,
    axes_as_input: bool,
) -> Result<Lowered, OnnxError> {
    let axes = if axes_as_input {
        inputs.optional_ints(1, "axes")?
    } else {
        attributes.ints("axes")
    }
    .unwrap_or_default();
    if axes.is_empty() && attributes.int("noop_with_empty_axes", 0) != 0 {
        return Ok(Lowered::Alias(inputs.first(1)));
    }
    let keep_dims = attributes.int("keepdims", 1) != 0;
    Ok(Lowered::Op(
        Op::Reduce {
            op,
            axes,
            keep_dims,
        },
        inputs.first(1),
    ))
}

/// A rank-0 tensor of the given type.
fn scalar(dtype: DType, value: f64) -> Tensor {
    match dtype {
        DType::F64 => Tensor::F64(ndarray::arr0(value).into_dyn()),
        DType::I64 => Tensor::I64(ndarray::arr0(value as i64).into_dyn()),
        DType::Bool => Tensor::Bool(ndarray::arr0(value != 0.0).into_dyn()),
        DType::F32 => Tensor::F32(ndarray::arr0(value as f32).into_dyn()),
    }
}

/// `value`'s single element repeated over `shape`.
fn fill(value: &Tensor, shape: &[usize]) -> Tensor {
    let dim = IxDyn(shape);
    match value {
        Tensor::F32(a) => Tensor::F32(ArrayD::from_elem(
            dim,
            a.iter().next().copied().unwrap_or(0.0),
        )),
        Tensor::F64(a) => Tensor::F64(ArrayD::from_elem(
            dim,
            a.iter().next().copied().unwrap_or(0.0),
        )),
        Tensor::I64(a) => Tensor::I64(ArrayD::from_elem(
            dim,
            a.iter().next().copied().unwrap_or(0),
        )),
        Tensor::Bool(a) => Tensor::Bool(ArrayD::from_elem(
            dim,
            a.iter().next().copied().unwrap_or(false),
        )),
    }
}

/// ONNX `Range`: `start, start + delta, …` while below (or above, for negative delta) `limit`.
fn range(start: &Tensor, limit: &Tensor, delta: &Tensor) -> Result<Tensor, String> {
    let get = |t: &Tensor| t.first_f64().ok_or_else(|| "empty scalar".to_string());
    let (s, l, d) = (get(start)?, get(limit)?, get(delta)?);
    if d == 0.0 {
        return Err("delta is 0".into());
    }
    let count = ((l - s) / d).ceil().max(0.0) as usize;
    Ok(match start.dtype() {
        DType::I64 => {
            let (s, d) = (s as i64, d as i64);
            Tensor::I64(ArrayD::from_shape_fn(IxDyn(&[count]), |i| {
                s + d * i[0] as i64
            }))
        }
        DType::F64 => Tensor::F64(ArrayD::from_shape_fn(IxDyn(&[count]), |i| {
            s + d * i[0] as f64
        })),
        _ => Tensor::F32(ArrayD::from_shape_fn(IxDyn(&[count]), |i| {
            (s + d * i[0] as f64) as f32
        })),
    })
}

/// Reshape's target resolved against the input shape: `0` copies the input dimension (unless
/// `allowzero`), one `-1` takes what is left.
fn resolve_reshape(
    input: &[usize],
    target: &[i64],
    allow_zero: bool,
) -> Result<Vec<usize>, String> {
    let total: usize = input.iter().product();
    let mut shape = Vec::with_capacity(target.len());
    let mut infer_at = None;
    for (i, &d) in target.iter().enumerate() {
        match d {
            -1 if infer_at.is_none() => {
                infer_at = Some(i);
                shape.push(1);
            }
            0 if !allow_zero => shape.push(
                *input
                    .get(i)
                    .ok_or_else(|| format!("shape {target:?}: no input dimension {i} to copy"))?,
            ),
            d if d >= 0 => shape.push(d as usize),
            _ => return Err(format!("invalid target shape {target:?}")),
        }
    }
    if let Some(i) = infer_at {
        let known: usize = shape
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, &d)| d)
            .product();
        if known == 0 || !total.is_multiple_of(known) {
            return Err(format!("cannot reshape {input:?} to {target:?}"));
        }
        shape[i] = total / known;
    }
    Ok(shape)
}

fn constant_value(attributes: &Attributes) -> Result<Tensor, OnnxError> {
    if let Some(t) = attributes.tensor("value")? {
        return Ok(t);
    }
    if attributes.has("value_float") {
        return Ok(scalar(DType::F32, attributes.float("value_float", 0.0)));
    }
    if attributes.has("value_int") {
        return Ok(Tensor::I64(
            ndarray::arr0(attributes.int("value_int", 0)).into_dyn(),
        ));
    }
    if let Some(v) = attributes.floats("value_floats") {
        return Ok(Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[v.len()]), v).expect("1-D"),
        ));
    }
    if let Some(v) = attributes.ints("value_ints") {
        return Ok(Tensor::from_i64s(&v));
    }
    Err(attributes.error("no supported value attribute (value, value_float(s), value_int(s))"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reshape_resolves_zero_and_minus_one() {
        assert_eq!(
            resolve_reshape(&[1, 16, 384], &[0, 0, 12, -1], false).unwrap(),
            vec![1, 16, 12, 32]
        );
        assert_eq!(resolve_reshape(&[2, 3], &[-1], false).unwrap(), vec![6]);
        assert!(resolve_reshape(&[2, 3], &[4, -1], false).is_err());
        assert!(resolve_reshape(&[2, 3], &[-1, -1], false).is_err());
    }

    #[test]
    fn range_counts_like_onnx() {
        let t = range(
            &Tensor::from_i64s(&[2]),
            &Tensor::from_i64s(&[9]),
            &Tensor::from_i64s(&[3]),
        )
        .unwrap();
        assert_eq!(t.to_i64_vec(), vec![2, 5, 8]);
    }
}
