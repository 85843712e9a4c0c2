//! `cachemirc dot PLAN`: the plan's site-level dataflow as a Graphviz graph. One box per site
//! (instructions of one Tensor IR node) labelled with its operation counts and bootstraps, grouped
//! in one cluster per layer; one ellipse per encrypted input and output; an edge from site A to
//! site B where B reads a register A wrote, labelled with the number of such registers
//! (ciphertexts). In a leveled plan each site also gives the range of levels it operates at.

use super::tally::Tally;
use cachemir_ir::plan::levels::trace;
use cachemir_ir::plan::{Instruction, Plan};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

/// A node of the graph.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Node {
    Input(u32),
    Site(u32),
    Output(u32),
}

impl Node {
    fn id(self) -> String {
        match self {
            Node::Input(i) => format!("in{i}"),
            Node::Site(s) => format!("s{s}"),
            Node::Output(o) => format!("out{o}"),
        }
    }
}

/// The Graphviz (`dot`) text of `plan`'s site-level dataflow.
pub fn dot(plan: &Plan) -> String {
    // A plan that breaks its level rules is still drawn, without levels.
    let levels = trace(plan).ok().flatten();
    let mut tallies: BTreeMap<u32, Tally> = BTreeMap::new();
    // Per site: the lowest and highest operating level.
    let mut ranges: BTreeMap<u32, (u32, u32)> = BTreeMap::new();
    // The site that last wrote each register.
    let mut writer: Vec<Option<u32>> = vec![None; plan.registers as usize];
    // Edges with the distinct registers that cross them.
    let mut edges: BTreeMap<(Node, Node), BTreeSet<u32>> = BTreeMap::new();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let site = plan.instruction_sites[k];
        tallies.entry(site).or_default().add(instruction, 0.0);
        if let Some(level) = levels.as_ref().and_then(|t| t.operating[k]) {
            let range = ranges.entry(site).or_insert((level, level));
            *range = (range.0.min(level), range.1.max(level));
        }
        let (reads, writes) = instruction.registers();
        if !matches!(instruction, Instruction::Free { .. }) {
            for r in reads {
                if let Some(Some(from)) = writer.get(r as usize)
                    && *from != site
                {
                    edges
                        .entry((Node::Site(*from), Node::Site(site)))
                        .or_default()
                        .insert(r);
                }
            }
        }
        match instruction {
            Instruction::Load { dst, input, .. } => {
                edges
                    .entry((Node::Input(input.0), Node::Site(site)))
                    .or_default()
                    .insert(dst.0);
            }
            Instruction::Store { src, output, .. } => {
                edges
                    .entry((Node::Site(site), Node::Output(output.0)))
                    .or_default()
                    .insert(src.0);
            }
            _ => {}
        }
        for w in writes {
            if let Some(slot) = writer.get_mut(w as usize) {
                *slot = Some(site);
            }
        }
    }

    let mut out = String::new();
    let _ = writeln!(out, "digraph \"{}\" {{", escape(&plan.name));
    let _ = writeln!(out, "  rankdir=TB;");
    let _ = writeln!(
        out,
        "  node [shape=box, fontname=\"monospace\", fontsize=10];"
    );
    let _ = writeln!(out, "  edge [fontsize=9];");
    for (i, c) in plan.inputs.iter().enumerate() {
        let state = plan.states.iter().any(|s| s.input == c.name);
        let _ = writeln!(
            out,
            "  in{i} [shape=ellipse, label=\"{}\\n{} ct{}\"];",
            escape(&c.name),
            c.layout.ciphertexts(),
            if state { ", KV cache" } else { "" }
        );
    }
    let mut layers: BTreeMap<Option<u32>, Vec<u32>> = BTreeMap::new();
    for &site in tallies.keys() {
        layers
            .entry(plan.sites[site as usize].layer)
            .or_default()
            .push(site);
    }
    for (layer, sites) in &layers {
        let indent = if let Some(l) = layer {
            let _ = writeln!(out, "  subgraph cluster_layer{l} {{");
            let _ = writeln!(out, "    label=\"layer {l}\";");
            "    "
        } else {
            "  "
        };
        for site in sites {
            let _ = writeln!(
                out,
                "{indent}s{site} [label=\"{}\"{}];",
                site_label(
                    &plan.sites[*site as usize].name,
                    &tallies[site],
                    ranges.get(site).copied()
                ),
                if tallies[site].bootstraps > 0 {
                    ", style=filled, fillcolor=\"#ffd8a8\""
                } else {
                    ""
                }
            );
        }
        if layer.is_some() {
            let _ = writeln!(out, "  }}");
        }
    }
    for (o, c) in plan.outputs.iter().enumerate() {
        let _ = writeln!(
            out,
            "  out{o} [shape=ellipse, label=\"{}\\n{} ct\"];",
            escape(&c.name),
            c.layout.ciphertexts()
        );
    }
    for ((from, to), registers) in &edges {
        let _ = writeln!(
            out,
            "  {} -> {} [label=\"{}\"];",
            from.id(),
            to.id(),
            registers.len()
        );
    }
    out.push_str("}\n");
    out
}

/// `name`, then the site's operation counts (only those it has), its levels (highest to lowest)
/// and bootstraps.
fn site_label(name: &str, t: &Tally, levels: Option<(u32, u32)>) -> String {
    let mut label = escape(name);
    let parts: Vec<String> = [
        (t.operations(), "ops"),
        (t.rotations, "rot"),
        (t.ct_ct_mults, "ct-ct"),
        (t.ct_pt_mults, "ct-pt"),
        (t.rescales, "rescale"),
    ]
    .iter()
    .filter(|(n, _)| *n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    if !parts.is_empty() {
        let _ = write!(label, "\\n{}", parts.join(", "));
    }
    match levels {
        Some((low, high)) if low == high => {
            let _ = write!(label, "\\nlevel {high}");
        }
        Some((low, high)) => {
            let _ = write!(label, "\\nlevels {high}..{low}");
        }
        None => {}
    }
    if t.bootstraps > 0 {
        let _ = write!(label, "\\n{} boot", t.bootstraps);
    }
    label
}

/// `text` inside a double-quoted Graphviz string.
fn escape(text: &str) -> String {
    text.replace('\\', "\\\\").replace('"', "\\\"")
}
