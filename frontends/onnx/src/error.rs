//! Typed import errors; each names the file and, where one is involved, the node and op.

use cachemir_ir::IrError;
use thiserror::Error;

/// Why an ONNX file could not be imported.
#[derive(Debug, Error)]
pub enum OnnxError {
    #[error("{path}: {message}")]
    Io { path: String, message: String },
    #[error("not a valid ONNX model (truncated or corrupt protobuf): {0}")]
    Decode(String),
    #[error("the model has no graph")]
    NoGraph,
    #[error(
        "opset {version} of domain `{domain}` is not supported (supported: default domain, opset 13 to 20)"
    )]
    UnsupportedOpset { domain: String, version: i64 },
    #[error("node `{node}`: op `{op_type}` (domain `{domain}`, opset {opset}) is not supported")]
    UnsupportedOp {
        node: String,
        op_type: String,
        domain: String,
        opset: i64,
    },
    #[error("input `{input}`: symbolic dimension `{dim}` is not bound; pass --dim {dim}=N")]
    UnboundDimension { input: String, dim: String },
    #[error("input `{input}`: {message}")]
    InputShape { input: String, message: String },
    #[error(
        "node `{node}` ({op_type}): tensor `{name}` is neither an input, an initializer nor a node output"
    )]
    UnknownTensor {
        node: String,
        op_type: String,
        name: String,
    },
    #[error("node `{node}` ({op_type}): {message}")]
    Node {
        node: String,
        op_type: String,
        message: String,
    },
    #[error("initializer `{name}`: {message}")]
    Initializer { name: String, message: String },
    #[error("graph output `{0}` is not produced by any node, input or initializer")]
    UnknownOutput(String),
    #[error(
        "--outputs/--inputs-at: no run-time value named `{0}` survives import (folded away, or a typo)"
    )]
    UnknownExtractOutput(String),
    #[error(transparent)]
    Ir(#[from] IrError),
}
