//! Typed errors of the IR: shape inference, graph construction and interpretation.

use crate::dtype::DType;
use thiserror::Error;

/// A shape or type rule of an op was violated. Always wrapped with the node it happened at by
/// [`IrError::Shape`].
#[derive(Debug, Clone, PartialEq, Error)]
pub enum ShapeError {
    #[error("expected {expected} operand(s), got {got}")]
    Arity { expected: String, got: usize },
    #[error("operand {operand} has rank {got}, expected {expected}")]
    Rank {
        operand: usize,
        expected: String,
        got: usize,
    },
    #[error("shapes {left:?} and {right:?} do not broadcast")]
    Broadcast { left: Vec<usize>, right: Vec<usize> },
    #[error("operand {operand} has element type {got}, expected {expected}")]
    DType {
        operand: usize,
        expected: String,
        got: DType,
    },
    #[error("axis {axis} is out of range for rank {rank}")]
    Axis { axis: i64, rank: usize },
    #[error("{0}")]
    Invalid(String),
}

/// Errors from building, checking or interpreting a graph.
#[derive(Debug, Error)]
pub enum IrError {
    #[error("node `{node}` ({op}): {source}")]
    Shape {
        node: String,
        op: String,
        #[source]
        source: ShapeError,
    },
    #[error("graph input `{0}` was not given")]
    MissingInput(String),
    #[error("input `{name}`: expected {expected}, got {got}")]
    InputMismatch {
        name: String,
        expected: String,
        got: String,
    },
    #[error("no graph value is named `{0}`")]
    UnknownValue(String),
    #[error("node `{node}` ({op}) failed at run time: {message}")]
    Eval {
        node: String,
        op: String,
        message: String,
    },
    #[error("graph is malformed: {0}")]
    Malformed(String),
    #[error("{path}: {message}")]
    Io { path: String, message: String },
}
