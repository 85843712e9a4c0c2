//! Weights in safetensors files: reading the tensors a model file binds, and writing the
//! weights of an imported graph (`cachemirc import --emit dsl --weights-out`).

use cachemir_ir::{DType, Tensor};
use safetensors::tensor::{Dtype, TensorView};
use std::collections::HashMap;
use std::path::Path;

/// A safetensors file held in memory, with its tensors looked up by name.
#[derive(Debug)]
pub struct WeightsFile {
    bytes: Vec<u8>,
}

impl WeightsFile {
    /// Reads and validates a safetensors file.
    ///
    /// # Errors
    /// A message when the file cannot be read or is not safetensors.
    pub fn open(path: &Path) -> Result<Self, String> {
        let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
        safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| format!("{}: not a safetensors file: {e}", path.display()))?;
        Ok(Self { bytes })
    }

    /// The tensor called `name`, or `None` if the file has none.
    ///
    /// # Errors
    /// A message for an element type Cachemir does not use (only F32, F64, I64 and BOOL).
    pub fn get(&self, name: &str) -> Result<Option<Tensor>, String> {
        let tensors =
            safetensors::SafeTensors::deserialize(&self.bytes).map_err(|e| e.to_string())?;
        let view = match tensors.tensor(name) {
            Ok(view) => view,
            Err(_) => return Ok(None),
        };
        let dtype = match view.dtype() {
            Dtype::F32 => DType::F32,
            Dtype::F64 => DType::F64,
            Dtype::I64 => DType::I64,
            Dtype::BOOL => DType::Bool,
            other => return Err(format!("tensor `{name}` has element type {other:?}")),
        };
        Tensor::from_le_bytes(dtype, view.shape(), view.data()).map(Some)
    }
}

/// Writes named tensors as a safetensors file.
///
/// # Errors
/// A message when the file cannot be written.
pub fn save(path: &Path, tensors: &[(String, Tensor)]) -> Result<(), String> {
    let bytes: Vec<(String, Vec<u8>, Dtype, Vec<usize>)> = tensors
        .iter()
        .map(|(name, t)| {
            let dtype = match t.dtype() {
                DType::F32 => Dtype::F32,
                DType::F64 => Dtype::F64,
                DType::I64 => Dtype::I64,
                DType::Bool => Dtype::BOOL,
            };
            (name.clone(), t.to_le_bytes(), dtype, t.shape().to_vec())
        })
        .collect();
    let views: HashMap<String, TensorView> = bytes
        .iter()
        .map(|(name, data, dtype, shape)| {
            TensorView::new(*dtype, shape.clone(), data)
                .map(|view| (name.clone(), view))
                .map_err(|e| format!("tensor `{name}`: {e}"))
        })
        .collect::<Result<_, _>>()?;
    safetensors::serialize_to_file(&views, None, path)
        .map_err(|e| format!("{}: {e}", path.display()))
}
