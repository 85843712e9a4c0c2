//! The compiler's passes over the Tensor IR, run in order by a [`Pipeline`] that times each one,
//! can dump the IR after any of them (`--dump-after PASS`) and stop early (`--stop-after PASS`).
//!
//! Tensor-level pipeline (issue 6): `recognize` (composite ops from exporter patterns) →
//! `decompose` (encrypted softmax, norms and attention into FHE-friendly primitives) →
//! `calibrate` (value ranges over calibration inputs) → `approximate` (polynomials and Newton
//! iterations for every non-polynomial op on encrypted data).

pub mod approximate;
pub mod calibrate;
pub mod decompose;
pub mod depth;
pub mod rotate_residual;
pub mod squarings;

use cachemir_ir::{DType, Graph, IrError, Op, SourceLocation, Tensor, ValueRef};
use std::time::{Duration, Instant};
use thiserror::Error;

/// Why a pass failed.
#[derive(Debug, Error)]
pub enum CompileError {
    #[error("pass `{pass}`: {source}")]
    Ir {
        pass: &'static str,
        #[source]
        source: IrError,
    },
    #[error("node `{node}` ({op}): {message}")]
    Node {
        node: String,
        op: String,
        message: String,
    },
    #[error("calibration: {0}")]
    Calibration(String),
    #[error("rewrite: {0}")]
    Rewrite(#[from] crate::rewrite::RewriteError),
    #[error("unknown pass `{0}` (passes: {1})")]
    UnknownPass(String, String),
}

impl CompileError {
    pub(crate) fn at(graph: &Graph, value: ValueRef, message: impl Into<String>) -> Self {
        let node = graph.node(value.node);
        CompileError::Node {
            node: node.source.to_string(),
            op: node.op.name(),
            message: message.into(),
        }
    }
}

/// One pass over the graph.
pub trait Pass {
    /// The name `--stop-after` and `--dump-after` use.
    fn name(&self) -> &'static str;
    /// Transforms the graph; returns a one-line summary of what it did.
    ///
    /// # Errors
    /// A [`CompileError`] naming the node where the pass cannot proceed.
    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError>;
}

/// What one pass did and how long it took.
#[derive(Debug, Clone)]
pub struct PassRecord {
    pub name: &'static str,
    pub elapsed: Duration,
    pub nodes_before: usize,
    pub nodes_after: usize,
    pub summary: String,
}

/// An ordered list of passes.
#[derive(Default)]
pub struct Pipeline {
    passes: Vec<Box<dyn Pass>>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.passes.iter().map(|p| p.name()))
            .finish()
    }
}

impl Pipeline {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends a pass.
    pub fn with(mut self, pass: impl Pass + 'static) -> Self {
        self.passes.push(Box::new(pass));
        self
    }

    pub fn names(&self) -> Vec<&'static str> {
        self.passes.iter().map(|p| p.name()).collect()
    }

    /// Runs the passes in order, calling `dump(pass, graph)` after each pass named in
    /// `dump_after`, and stopping after `stop_after` if given.
    ///
    /// # Errors
    /// [`CompileError::UnknownPass`] for a name that is not in the pipeline, or the first
    /// failing pass's error.
    pub fn run(
        &mut self,
        graph: &mut Graph,
        stop_after: Option<&str>,
        dump_after: &[String],
        dump: &mut dyn FnMut(&str, &Graph),
    ) -> Result<Vec<PassRecord>, CompileError> {
        let names = self.names();
        for name in stop_after
            .into_iter()
            .chain(dump_after.iter().map(String::as_str))
        {
            if !names.contains(&name) {
                return Err(CompileError::UnknownPass(
                    name.to_string(),
                    names.join(", "),
                ));
            }
        }
        let mut records = Vec::new();
        for pass in &mut self.passes {
            let nodes_before = graph.node_count();
            let start = Instant::now();
            let summary = pass.run(graph)?;
            records.push(PassRecord {
                name: pass.name(),
                elapsed: start.elapsed(),
                nodes_before,
                nodes_after: graph.node_count(),
                summary,
            });
            if dump_after.iter().any(|d| d == pass.name()) {
                dump(pass.name(), graph);
            }
            if stop_after == Some(pass.name()) {
                break;
            }
        }
        Ok(records)
    }
}

/// Adds a node for a pass; errors name the pass.
pub(crate) fn emit(
    graph: &mut Graph,
    pass: &'static str,
    op: Op,
    operands: &[ValueRef],
    name: String,
    source: &SourceLocation,
) -> Result<ValueRef, CompileError> {
    graph
        .add_node(op, operands, vec![name], source.clone())
        .map(|v| v[0])
        .map_err(|source| CompileError::Ir { pass, source })
}

/// Adds a scalar constant of `dtype`.
pub(crate) fn scalar(
    graph: &mut Graph,
    value: f64,
    dtype: DType,
    name: String,
    source: &SourceLocation,
) -> ValueRef {
    let tensor = match dtype {
        DType::F64 => Tensor::F64(ndarray::arr0(value).into_dyn()),
        DType::I64 => Tensor::I64(ndarray::arr0(value as i64).into_dyn()),
        DType::Bool => Tensor::Bool(ndarray::arr0(value != 0.0).into_dyn()),
        DType::F32 => Tensor::F32(ndarray::arr0(value as f32).into_dyn()),
    };
    graph.add_constant(name, tensor, source.clone())
}

/// Whether the server computes `value` on ciphertexts: it is encrypted and so is one of its
/// operands (a value encrypted by `--encrypt-from` is computed by the client in the clear).
pub(crate) fn computed_on_ciphertexts(graph: &Graph, value: ValueRef) -> bool {
    encrypted(graph, value)
        && graph
            .operands(value.node)
            .iter()
            .any(|v| encrypted(graph, *v))
}

/// Whether a value is encrypted.
pub(crate) fn encrypted(graph: &Graph, value: ValueRef) -> bool {
    graph
        .value_type(value)
        .is_some_and(|t| t.secrecy == cachemir_ir::Secrecy::Encrypted)
}

/// `recognize`: composite ops (RMSNorm, GELU, SiLU, RoPE, attention) from the patterns
/// exporters emit (see [`cachemir_ir::recognize`]).
#[derive(Debug, Default)]
pub struct Recognize;

impl Pass for Recognize {
    fn name(&self) -> &'static str {
        "recognize"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        Ok(cachemir_ir::recognize::recognize(graph).to_string())
    }
}

/// `rewrite`: equality saturation with FHE-cost extraction (see [`crate::rewrite`]); the full
/// report of the last run is kept in `report`.
#[derive(Debug, Default)]
pub struct Rewrite {
    pub options: crate::rewrite::RewriteOptions,
    pub report: Option<crate::rewrite::RewriteReport>,
}

impl Pass for Rewrite {
    fn name(&self) -> &'static str {
        "rewrite"
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        let (rewritten, report) = crate::rewrite::rewrite(graph, &self.options)?;
        *graph = rewritten;
        let summary = report
            .to_string()
            .lines()
            .next()
            .unwrap_or_default()
            .to_string();
        self.report = Some(report);
        Ok(summary)
    }
}
