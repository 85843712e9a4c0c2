//! Dense tensors: constants in the graph (weights, folded shape arithmetic) and the values the
//! reference interpreter computes.
//!
//! In JSON a tensor is `{"dtype", "shape", "data"}` with `data` the little-endian bytes in base64,
//! so that a dumped graph with its weights stays about 1.4x the weights' size.

use crate::dtype::DType;
use base64::Engine as _;
use ndarray::{ArrayD, IxDyn};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A dense tensor in C order. Float data is kept in its declared precision.
#[derive(Debug, Clone, PartialEq)]
pub enum Tensor {
    F32(ArrayD<f32>),
    F64(ArrayD<f64>),
    I64(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

impl Tensor {
    pub fn dtype(&self) -> DType {
        match self {
            Tensor::F32(_) => DType::F32,
            Tensor::F64(_) => DType::F64,
            Tensor::I64(_) => DType::I64,
            Tensor::Bool(_) => DType::Bool,
        }
    }

    pub fn shape(&self) -> &[usize] {
        match self {
            Tensor::F32(a) => a.shape(),
            Tensor::F64(a) => a.shape(),
            Tensor::I64(a) => a.shape(),
            Tensor::Bool(a) => a.shape(),
        }
    }

    pub fn len(&self) -> usize {
        self.shape().iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size of the data in bytes.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype().size_bytes()
    }

    /// A rank-0 or rank-1 i64 tensor from a list (used for folded shape arithmetic).
    pub fn from_i64s(values: &[i64]) -> Tensor {
        Tensor::I64(ArrayD::from_shape_vec(IxDyn(&[values.len()]), values.to_vec()).expect("1-D"))
    }

    /// The float data widened to f64 (integers and booleans are converted by value).
    pub fn to_f64(&self) -> ArrayD<f64> {
        match self {
            Tensor::F32(a) => a.mapv(f64::from),
            Tensor::F64(a) => a.clone(),
            Tensor::I64(a) => a.mapv(|v| v as f64),
            Tensor::Bool(a) => a.mapv(|v| if v { 1.0 } else { 0.0 }),
        }
    }

    /// Integer data, if this tensor holds integers.
    pub fn as_i64(&self) -> Option<&ArrayD<i64>> {
        match self {
            Tensor::I64(a) => Some(a),
            _ => None,
        }
    }

    /// The values as a flat list of i64 (for shape-like constants); floats are truncated.
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self {
            Tensor::I64(a) => a.iter().copied().collect(),
            Tensor::F32(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::F64(a) => a.iter().map(|&v| v as i64).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as i64).collect(),
        }
    }

    /// The first element as f64, for scalar constants. `None` for an empty tensor.
    pub fn first_f64(&self) -> Option<f64> {
        match self {
            Tensor::F32(a) => a.iter().next().map(|&v| f64::from(v)),
            Tensor::F64(a) => a.iter().next().copied(),
            Tensor::I64(a) => a.iter().next().map(|&v| v as f64),
            Tensor::Bool(a) => a.iter().next().map(|&v| v as u8 as f64),
        }
    }

    /// Little-endian bytes of the data in C order.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        match self {
            Tensor::F32(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::F64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::I64(a) => a.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Tensor::Bool(a) => a.iter().map(|&v| v as u8).collect(),
        }
    }

    /// Builds a tensor from little-endian bytes in C order.
    ///
    /// # Errors
    /// When `bytes` is not exactly `product(shape) * dtype.size_bytes()` long.
    pub fn from_le_bytes(dtype: DType, shape: &[usize], bytes: &[u8]) -> Result<Tensor, String> {
        let count = shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(d))
            .ok_or_else(|| format!("shape {shape:?} has too many elements"))?;
        if bytes.len() != count * dtype.size_bytes() {
            return Err(format!(
                "{} bytes for a {dtype} tensor of shape {shape:?} ({} expected)",
                bytes.len(),
                count * dtype.size_bytes()
            ));
        }
        let dim = IxDyn(shape);
        let tensor = match dtype {
            DType::F32 => Tensor::F32(
                ArrayD::from_shape_vec(
                    dim,
                    bytes
                        .chunks_exact(4)
                        .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
                        .collect(),
                )
                .map_err(|e| e.to_string())?,
            ),
            DType::F64 => Tensor::F64(
                ArrayD::from_shape_vec(
                    dim,
                    bytes
                        .chunks_exact(8)
                        .map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                )
                .map_err(|e| e.to_string())?,
            ),
            DType::I64 => Tensor::I64(
                ArrayD::from_shape_vec(
                    dim,
                    bytes
                        .chunks_exact(8)
                        .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
                        .collect(),
                )
                .map_err(|e| e.to_string())?,
            ),
            DType::Bool => Tensor::Bool(
                ArrayD::from_shape_vec(dim, bytes.iter().map(|&b| b != 0).collect())
                    .map_err(|e| e.to_string())?,
            ),
        };
        Ok(tensor)
    }
}

#[derive(Serialize, Deserialize)]
struct TensorRepr {
    dtype: DType,
    shape: Vec<usize>,
    data: String,
}

impl Serialize for Tensor {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        TensorRepr {
            dtype: self.dtype(),
            shape: self.shape().to_vec(),
            data: base64::engine::general_purpose::STANDARD.encode(self.to_le_bytes()),
        }
        .serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Tensor {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let repr = TensorRepr::deserialize(deserializer)?;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(repr.data.as_bytes())
            .map_err(serde::de::Error::custom)?;
        Tensor::from_le_bytes(repr.dtype, &repr.shape, &bytes).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_keeps_every_bit() {
        let t = Tensor::F32(
            ArrayD::from_shape_vec(IxDyn(&[2, 2]), vec![1.5, -0.0, f32::MIN_POSITIVE, 3e38])
                .unwrap(),
        );
        let json = serde_json::to_string(&t).unwrap();
        let back: Tensor = serde_json::from_str(&json).unwrap();
        assert_eq!(t.to_le_bytes(), back.to_le_bytes());
        assert_eq!(back.shape(), &[2, 2]);
    }

    #[test]
    fn wrong_byte_count_is_an_error() {
        assert!(Tensor::from_le_bytes(DType::I64, &[3], &[0; 16]).is_err());
    }
}
