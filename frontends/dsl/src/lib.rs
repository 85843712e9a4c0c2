//! The Cachemir model language: write a transformer by hand — its parameters, which inputs are
//! encrypted, where the KV cache lives, range and precision hints — and compile it like an
//! imported ONNX model. Shape-only models (`weights none`) build their graph without
//! allocating any weight.
//!
//! - [`parse`]: text → syntax tree (pest grammar in `cachemir.pest`).
//! - [`elaborate`]: syntax tree → Tensor IR (loops unrolled, parameters evaluated, weights bound).
//! - [`print`]: Tensor IR → model text plus its weights (the inverse, used by
//!   `cachemirc import --emit dsl`).
//! - Errors are [`DslError`]s that show `file:line:col`, the line and a caret.

pub mod ast;
mod calls;
pub mod diagnostic;
pub mod elaborate;
pub mod parse;
pub mod print;
pub mod weights;

pub use diagnostic::{DslError, ErrorKind};
pub use elaborate::{LoadOptions, load_file, load_source};
