//! Cachemir Tensor IR: the typed transformer graph every frontend produces and every compiler pass
//! reads, and the f64/f32 reference interpreter that is the ground truth for tests and calibration.
//!
//! - [`Graph`]: a DAG (petgraph `StableDiGraph`) of [`Op`]s with static shapes, element types,
//!   [`Secrecy`] and a source location per node. KV-cache tensors are explicit [`state`](InputRole::State):
//!   a `past_*` input paired with the `present_*` output that replaces it after a decode step.
//! - [`infer`]: shape and type inference per op, with typed [`ShapeError`]s.
//! - [`interp`]: the reference interpreter on `ndarray`.
//! - [`printer`]: a stable text form for snapshots; the graph also round-trips through JSON (serde).
//! - [`layout`]: which tensor element sits in which ciphertext slot; [`plan`]: the versioned plan
//!   format the runtime executes (instruction set, plaintexts by reference, layouts).
//! - [`npy`]: `.npy` files in and out (the format of `../shared/models`).

pub mod case;
pub mod dtype;
pub mod error;
pub mod graph;
pub mod infer;
pub mod interp;
pub mod kv_window;
pub mod layout;
pub mod npy;
pub mod op;
pub mod plan;
pub mod printer;
pub mod recognize;
pub mod tensor;

pub use dtype::{DType, Secrecy, TensorType};
pub use error::{IrError, ShapeError};
pub use graph::{Graph, GraphOutput, Hints, InputRole, Node, OutputRole, SourceLocation, ValueRef};
pub use interp::{Interpreter, Precision};
pub use op::{BinaryOp, CompareOp, GeluApproximation, Op, ReduceOp, UnaryOp};
/// Index of a node in a [`Graph`].
pub use petgraph::stable_graph::NodeIndex;
pub use tensor::Tensor;
