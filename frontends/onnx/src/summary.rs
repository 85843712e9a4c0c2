//! What an import did: ops before and after folding, and what the graph reads and writes.

use cachemir_ir::graph::InputRole;
use cachemir_ir::printer::format_bytes;
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
        let after = graph.op_histogram();
        let count_after: usize = after.values().sum();
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
        let _ = writeln!(out, "ops after folding:");
        for (op, n) in &after {
            let _ = writeln!(out, "  {op:<22} {n}");
        }
        let _ = writeln!(out, "inputs:");
        for input in graph.inputs() {
            let role = match &input.role {
                InputRole::Input => String::new(),
                InputRole::State { output } => format!("  state -> {output}"),
            };
            let _ = writeln!(
                out,
                "  {:<28} {}{role}",
                graph.input_name(input),
                graph.input_type(input)
            );
        }
        let _ = writeln!(out, "outputs:");
        for output in graph.outputs() {
            let ty = graph.value_type(output.value).expect("verified");
            let _ = writeln!(out, "  {:<28} {ty}", output.name);
        }
        let states = graph
            .inputs()
            .iter()
            .filter(|i| matches!(i.role, InputRole::State { .. }))
            .count();
        let _ = writeln!(out, "state tensors (KV cache): {states}");
        let _ = writeln!(
            out,
            "weights and constants: {}",
            format_bytes(graph.constant_bytes())
        );
        out
    }
}
