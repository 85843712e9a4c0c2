//! `.npy` files (NumPy format 1.0/2.0) in and out, for the reference cases in `../shared/models`
//! and the CLI's tensors. Element types f32, f64, i64 and bool are supported.

use crate::error::IrError;
use crate::tensor::Tensor;
use ndarray::ArrayD;
use ndarray_npy::{ReadNpyExt, WriteNpyExt};
use std::io::Cursor;
use std::path::Path;

/// Reads a `.npy` file into a tensor of the element type the file declares.
///
/// # Errors
/// [`IrError::Io`] naming the file when it cannot be read, is not `.npy`, or holds an
/// unsupported element type.
pub fn read_npy(path: &Path) -> Result<Tensor, IrError> {
    let io = |message: String| IrError::Io {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| io(e.to_string()))?;
    read_npy_bytes(&bytes).map_err(io)
}

/// Parses `.npy` bytes (see [`read_npy`]).
pub fn read_npy_bytes(bytes: &[u8]) -> Result<Tensor, String> {
    if let Ok(a) = ArrayD::<f32>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::F32(a));
    }
    if let Ok(a) = ArrayD::<i64>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::I64(a));
    }
    if let Ok(a) = ArrayD::<f64>::read_npy(Cursor::new(bytes)) {
        return Ok(Tensor::F64(a));
    }
    ArrayD::<bool>::read_npy(Cursor::new(bytes))
        .map(Tensor::Bool)
        .map_err(|e| format!("not a .npy file of f32, f64, i64 or bool: {e}"))
}

/// Writes a tensor as a `.npy` file.
///
/// # Errors
/// [`IrError::Io`] naming the file.
pub fn write_npy(path: &Path, tensor: &Tensor) -> Result<(), IrError> {
    let io = |message: String| IrError::Io {
        path: path.display().to_string(),
        message,
    };
    let file = std::fs::File::create(path).map_err(|e| io(e.to_string()))?;
    let writer = std::io::BufWriter::new(file);
    let result = match tensor {
        Tensor::F32(a) => a.write_npy(writer),
        Tensor::F64(a) => a.write_npy(writer),
        Tensor::I64(a) => a.write_npy(writer),
        Tensor::Bool(a) => a.write_npy(writer),
    };
    result.map_err(|e| io(e.to_string()))
}
