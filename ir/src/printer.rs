//! A stable, readable text form of a graph, for `--emit ir` and `insta` snapshots.
//!
//! ```text
//! graph tiny {
//!   input  %x: enc f32[1,4]
//!   state  %past: enc f32[1,2] -> present
//!   %w = Constant f32[4,4] (64 B)
//!   %y = MatMul(%x, %w): enc f32[1,4]  @ /layer/MatMul
//!   output y = %y
//! }
//! ```
//! Constants print their type and size, never their data. Nodes appear in topological order.

use crate::graph::{Graph, InputRole, OutputRole};
use crate::op::Op;
use std::fmt::Write as _;

/// Prints `graph` in the text form above.
pub fn print_graph(graph: &Graph) -> String {
    let mut out = String::new();
    writeln!(out, "graph {} {{", graph.name).expect("string write");
    for input in graph.inputs() {
        let name = graph.input_name(input);
        let ty = graph.input_type(input);
        match &input.role {
            InputRole::Input => writeln!(out, "  input  %{name}: {ty}"),
            InputRole::State { output } => writeln!(out, "  state  %{name}: {ty} -> {output}"),
        }
        .expect("string write");
    }
    for node in graph.topological_order() {
        let n = graph.node(node);
        match &n.op {
            Op::Input => continue,
            Op::SyntheticWeight { .. } => {
                writeln!(
                    out,
                    "  %{} = SyntheticWeight {} ({})",
                    n.output_names[0],
                    n.outputs[0],
                    format_bytes(n.outputs[0].size_bytes())
                )
                .expect("string write");
            }
            Op::Constant(t) => {
                writeln!(
                    out,
                    "  %{} = Constant {} ({})",
                    n.output_names[0],
                    n.outputs[0],
                    format_bytes(t.size_bytes())
                )
                .expect("string write");
            }
            op => {
                let results: Vec<String> = n
                    .output_names
                    .iter()
                    .map(|name| format!("%{name}"))
                    .collect();
                let operands: Vec<String> = graph
                    .operands(node)
                    .iter()
                    .map(|v| format!("%{}", graph.value_name(*v).unwrap_or("?")))
                    .collect();
                let attributes = op.attributes();
                let attributes = if attributes.is_empty() {
                    String::new()
                } else {
                    format!("[{}]", attributes.join(", "))
                };
                let types: Vec<String> = n.outputs.iter().map(ToString::to_string).collect();
                let mut hints = String::new();
                if let Some((low, high)) = n.hints.range {
                    hints.push_str(&format!(" range=[{low}, {high}]"));
                }
                if let Some(bits) = n.hints.precision_bits {
                    hints.push_str(&format!(" precision={bits}b"));
                }
                writeln!(
                    out,
                    "  {} = {}{}({}): {}{hints}  @ {}",
                    results.join(", "),
                    op.name(),
                    attributes,
                    operands.join(", "),
                    types.join(", "),
                    n.source
                )
                .expect("string write");
            }
        }
    }
    for output in graph.outputs() {
        let value = graph.value_name(output.value).unwrap_or("?");
        match &output.role {
            OutputRole::Output => writeln!(out, "  output {} = %{value}", output.name),
            OutputRole::State { input } => {
                writeln!(
                    out,
                    "  output {} = %{value} (state of {input})",
                    output.name
                )
            }
        }
        .expect("string write");
    }
    out.push_str("}\n");
    out
}

/// A summary of a graph: op histogram, inputs and outputs with types and secrecy, KV-cache
/// state pairs, weight bytes.
pub fn summary(graph: &Graph) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "ops:");
    for (op, n) in graph.op_histogram() {
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
        let ty = graph.value_type(output.value).expect("outputs exist");
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

/// Human-readable byte count (B, KiB, MiB, GiB).
pub fn format_bytes(bytes: usize) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
