//! Element types, secrecy and the static type of a tensor value.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Element type of a tensor. Floats are computed in f64 by the reference interpreter; `F32`
/// values are rounded to f32 after each op when the interpreter runs in f32 precision.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DType {
    F32,
    F64,
    I64,
    Bool,
}

impl DType {
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// Size of one element in bytes.
    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::Bool => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::I64 => "i64",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Who may see a value. `Encrypted` values exist only as ciphertexts on the server; a value is
/// encrypted as soon as one of its operands is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Secrecy {
    Public,
    Encrypted,
}

impl Secrecy {
    /// The secrecy of a value computed from operands of these secrecies.
    pub fn join(operands: impl IntoIterator<Item = Secrecy>) -> Secrecy {
        operands.into_iter().max().unwrap_or(Secrecy::Public)
    }
}

impl fmt::Display for Secrecy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Secrecy::Public => "public",
            Secrecy::Encrypted => "encrypted",
        })
    }
}

/// Static type of a tensor value: element type, shape (all dimensions known) and secrecy.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
    pub secrecy: Secrecy,
}

impl TensorType {
    pub fn new(dtype: DType, shape: Vec<usize>, secrecy: Secrecy) -> Self {
        Self {
            dtype,
            shape,
            secrecy,
        }
    }

    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Size in bytes of the cleartext tensor.
    pub fn size_bytes(&self) -> usize {
        self.len() * self.dtype.size_bytes()
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        let marker = match self.secrecy {
            Secrecy::Public => "",
            Secrecy::Encrypted => "enc ",
        };
        write!(f, "{marker}{}[{}]", self.dtype, dims.join(","))
    }
}
