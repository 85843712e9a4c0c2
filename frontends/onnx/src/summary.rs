//! What an import did: ops before and after folding, and what the graph reads and writes.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// Facts about one import (the IR summary `cachemirc import` prints).
#[derive(Debug, Clone)]
pub struct ImportSummary {
    /// `producer_name producer_version` from the file.
    pub producer: String,
    /// Default-domain opset.
    pub opset: i64,
    /// ONNX op types in the file, with counts.
    pub onnx_ops: BTreeMap<String, usize>,
    /// Nodes computed at import time (constant folding).
    pub folded_nodes: usize,
}

impl crate::Imported {
    /// The text summary: op histogram before and after folding, inputs and outputs with shapes
    /// and secrecy, state tensors, weight bytes.
    pub fn summary_text(&self) -> String {
        let graph = &self.graph;
        let s = &self.summary;
        let mut out = String::new();
        let before: usize = s.onnx_ops.values().sum();
        let count_after = graph.node_count();
        let _ = writeln!(
            out,
            "model {} (opset {}, {})",
            graph.name, s.opset, s.producer
        );
        let _ = writeln!(
            out,
            "nodes: {before} ONNX nodes -> {count_after} IR nodes ({} folded at import)",
            s.folded_nodes
        );
        let _ = writeln!(out, "ops before folding:");
        for (op, n) in &s.onnx_ops {
            let _ = writeln!(out, "  {op:<22} {n}");
        }
        out.push_str(&cachemir_ir::printer::summary(graph).replacen(
            "ops:",
            "ops after folding:",
            1,
        ));
        out
    }
}
