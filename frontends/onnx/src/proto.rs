//! Conversions from ONNX protobuf messages: tensors (initializers, `Constant` values) and
//! attributes.

use crate::error::OnnxError;
use cachemir_ir::{DType, Tensor};
use ndarray::{ArrayD, IxDyn};
use onnx_protobuf::{AttributeProto, NodeProto, TensorProto, tensor_proto::DataType};
use protobuf::Enum as _;

/// Maps an ONNX element type to ours. Integers of every width become i64 and floats of every
/// width at most 32 bits become f32.
pub fn dtype_from_onnx(code: i32) -> Option<DType> {
    let t = DataType::from_i32(code)?;
    Some(match t {
        DataType::FLOAT | DataType::FLOAT16 | DataType::BFLOAT16 => DType::F32,
        DataType::DOUBLE => DType::F64,
        DataType::INT64
        | DataType::INT32
        | DataType::INT16
        | DataType::INT8
        | DataType::UINT8
        | DataType::UINT16
        | DataType::UINT32 => DType::I64,
        DataType::BOOL => DType::Bool,
        _ => return None,
    })
}

fn half_to_f32(bits: u16) -> f32 {
    let sign = ((bits >> 15) as u32) << 31;
    let exponent = ((bits >> 10) & 0x1f) as u32;
    let mantissa = (bits & 0x3ff) as u32;
    let value = match exponent {
        0 => (mantissa as f32) * 2f32.powi(-24),
        31 => {
            if mantissa == 0 {
                f32::INFINITY
            } else {
                f32::NAN
            }
        }
        _ => f32::from_bits(((exponent + 112) << 23) | (mantissa << 13)),
    };
    f32::from_bits(value.to_bits() | sign)
}

/// Converts a `TensorProto` (raw or typed data) into a tensor.
///
/// # Errors
/// [`OnnxError::Initializer`] for external data, an unsupported element type, negative dims,
/// or a data length that does not match the dims.
pub fn tensor_from_proto(t: &TensorProto) -> Result<Tensor, OnnxError> {
    let err = |message: String| OnnxError::Initializer {
        name: t.name.clone(),
        message,
    };
    if !t.external_data.is_empty() {
        return Err(err("external data files are not supported; save the model with weights inside the .onnx file".into()));
    }
    let shape = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| err(format!("negative dimension {d}"))))
        .collect::<Result<Vec<usize>, _>>()?;
    let count = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(|| err(format!("shape {shape:?} has too many elements")))?;
    let data_type = DataType::from_i32(t.data_type)
        .ok_or_else(|| err(format!("unknown data type {}", t.data_type)))?;
    let raw = &t.raw_data;
    let check = |len: usize| {
        if len == count {
            Ok(())
        } else {
            Err(err(format!(
                "{len} values for shape {shape:?} ({count} expected)"
            )))
        }
    };
    let dim = IxDyn(&shape);
    let array_err = |e: ndarray::ShapeError| err(e.to_string());
    macro_rules! from_raw {
        ($ty:ty, $width:expr) => {{
            if raw.len() % $width != 0 {
                return Err(err(format!(
                    "raw data of {} bytes is not a multiple of {}",
                    raw.len(),
                    $width
                )));
            }
            raw.chunks_exact($width)
                .map(|c| <$ty>::from_le_bytes(c.try_into().expect("chunk width")))
                .collect::<Vec<$ty>>()
        }};
    }
    let tensor = match data_type {
        DataType::FLOAT => {
            let v = if raw.is_empty() {
                t.float_data.clone()
            } else {
                from_raw!(f32, 4)
            };
            check(v.len())?;
            Tensor::F32(ArrayD::from_shape_vec(dim, v).map_err(array_err)?)
        }
        DataType::FLOAT16 => {
            let v: Vec<f32> = if raw.is_empty() {
                t.int32_data
                    .iter()
                    .map(|&b| half_to_f32(b as u16))
                    .collect()
            } else {
                from_raw!(u16, 2).into_iter().map(half_to_f32).collect()
            };
            check(v.len())?;
            Tensor::F32(ArrayD::from_shape_vec(dim, v).map_err(array_err)?)
        }
        DataType::DOUBLE => {
            let v = if raw.is_empty() {
                t.double_data.clone()
            } else {
                from_raw!(f64, 8)
            };
            check(v.len())?;
            Tensor::F64(ArrayD::from_shape_vec(dim, v).map_err(array_err)?)
        }
        DataType::INT64 => {
            let v = if raw.is_empty() {
                t.int64_data.clone()
            } else {
                from_raw!(i64, 8)
            };
            check(v.len())?;
            Tensor::I64(ArrayD::from_shape_vec(dim, v).map_err(array_err)?)
        }
        DataType::INT32
        | DataType::INT16
        | DataType::INT8
        | DataType::UINT8
        | DataType::UINT16
        | DataType::BOOL => {
            let v: Vec<i64> = if raw.is_empty() {
                t.int32_data.iter().map(|&v| v as i64).collect()
            } else {
                match data_type {
                    DataType::INT32 => from_raw!(i32, 4).into_iter().map(i64::from).collect(),
                    DataType::INT16 => from_raw!(i16, 2).into_iter().map(i64::from).collect(),
                    DataType::UINT16 => from_raw!(u16, 2).into_iter().map(i64::from).collect(),
                    DataType::INT8 => raw.iter().map(|&b| b as i8 as i64).collect(),
                    _ => raw.iter().map(|&b| b as i64).collect(),
                }
            };
            check(v.len())?;
            if data_type == DataType::BOOL {
                Tensor::Bool(
                    ArrayD::from_shape_vec(dim, v.into_iter().map(|x| x != 0).collect())
                        .map_err(array_err)?,
                )
            } else {
                Tensor::I64(ArrayD::from_shape_vec(dim, v).map_err(array_err)?)
            }
        }
        other => return Err(err(format!("element type {other:?} is not supported"))),
    };
    Ok(tensor)
}

/// Typed access to a node's attributes, with errors that name the node.
pub struct Attributes<'a> {
    node: &'a NodeProto,
    label: &'a str,
}

impl<'a> Attributes<'a> {
    pub fn new(node: &'a NodeProto, label: &'a str) -> Self {
        Self { node, label }
    }

    fn find(&self, name: &str) -> Option<&'a AttributeProto> {
        self.node.attribute.iter().find(|a| a.name == name)
    }

    pub fn error(&self, message: impl Into<String>) -> OnnxError {
        OnnxError::Node {
            node: self.label.to_string(),
            op_type: self.node.op_type.clone(),
            message: message.into(),
        }
    }

    pub fn has(&self, name: &str) -> bool {
        self.find(name).is_some()
    }

    pub fn int(&self, name: &str, default: i64) -> i64 {
        self.find(name).map_or(default, |a| a.i)
    }

    pub fn float(&self, name: &str, default: f64) -> f64 {
        self.find(name).map_or(default, |a| f64::from(a.f))
    }

    pub fn ints(&self, name: &str) -> Option<Vec<i64>> {
        self.find(name).map(|a| a.ints.clone())
    }

    pub fn floats(&self, name: &str) -> Option<Vec<f32>> {
        self.find(name).map(|a| a.floats.clone())
    }

    pub fn string(&self, name: &str) -> Option<String> {
        self.find(name)
            .map(|a| String::from_utf8_lossy(&a.s).into_owned())
    }

    pub fn tensor(&self, name: &str) -> Result<Option<Tensor>, OnnxError> {
        match self.find(name) {
            Some(a) if a.t.is_some() => tensor_from_proto(&a.t).map(Some),
            Some(_) => Err(self.error(format!("attribute `{name}` is not a tensor"))),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn half_precision_values_convert() {
        assert_eq!(half_to_f32(0x3c00), 1.0);
        assert_eq!(half_to_f32(0xc000), -2.0);
        assert_eq!(half_to_f32(0x0001), 2f32.powi(-24));
        assert!(half_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn raw_int64_tensor() {
        let mut t = TensorProto::new();
        t.dims = vec![2];
        t.data_type = DataType::INT64 as i32;
        t.raw_data = [7i64, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        assert_eq!(tensor_from_proto(&t).unwrap().to_i64_vec(), vec![7, -1]);
        t.raw_data.pop();
        assert!(tensor_from_proto(&t).is_err());
    }
}
