//! Composite-op recognition: rewrites the subgraphs exporters decompose transformer building
//! blocks into back into the IR's composite ops ([`Op::Silu`], [`Op::Gelu`], [`Op::RmsNorm`],
//! [`Op::Rope`], [`Op::Attention`]), which later passes approximate and lower as a whole.
//!
//! A pattern fires only when
//! - every value inside it (all but its inputs and its result) has no user outside the pattern
//!   and is not a graph output, so nothing is computed twice;
//! - its constants equal the formula's to a relative [`CONSTANT_TOLERANCE`](matcher::CONSTANT_TOLERANCE);
//! - the composite's shape rule ([`crate::infer::infer`]) gives exactly the replaced value's type.
//!
//! The replacement takes the replaced value's name and the source location of the pattern's last
//! node. The rewrite preserves what the graph computes up to float reassociation, and running it
//! again finds nothing (it is idempotent). Constants that parametrise a composite (RMSNorm's
//! epsilon, attention's scale) are taken from the graph as stored; GELU's are fixed by the op, so
//! the exporter's f32 roundings of `√2`, `√(2/π)`, `0.044715` (< 1e-7 relative) are dropped.
//!
//! One file per pattern family: [`activation`] (SiLU, GELU), [`norm`] (RMSNorm), [`rope`],
//! [`attention`]; [`algebra`] reads element-wise arithmetic as monomials and polynomials so the
//! families need not enumerate operand orders and associations; [`matcher`] and
//! [`replacement`] are the shared matching and rewriting machinery.
//!
//! [`Op::Silu`]: crate::Op::Silu
//! [`Op::Gelu`]: crate::Op::Gelu
//! [`Op::RmsNorm`]: crate::Op::RmsNorm
//! [`Op::Rope`]: crate::Op::Rope
//! [`Op::Attention`]: crate::Op::Attention

pub mod activation;
pub mod algebra;
pub mod attention;
pub mod matcher;
pub mod norm;
pub mod replacement;
pub mod rope;

use crate::graph::{Graph, ValueRef};
use matcher::Matcher;
use petgraph::stable_graph::NodeIndex;
use replacement::Replacement;
use std::collections::BTreeMap;
use std::fmt;

/// A pattern family: from a candidate root, the replacement if the pattern matches there.
type Pattern = fn(&mut Matcher) -> Option<Replacement>;

/// Tried in this order at every node. No two families match the same root (their formulas
/// differ), so the order does not change the result.
const PATTERNS: [Pattern; 5] = [
    activation::silu,
    activation::gelu,
    norm::rms_norm,
    rope::rope,
    attention::attention,
];

/// How many of each composite op [`recognize`] formed, by label (`Attention`, `Gelu(Erf)`,
/// `Gelu(Tanh)`, `RmsNorm`, `Rope`, `Silu`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecognizeReport {
    pub formed: BTreeMap<String, usize>,
}

impl RecognizeReport {
    /// Number formed with this label (0 when none).
    pub fn count(&self, label: &str) -> usize {
        self.formed.get(label).copied().unwrap_or(0)
    }

    /// Number of composites formed in all.
    pub fn total(&self) -> usize {
        self.formed.values().sum()
    }

    pub fn is_empty(&self) -> bool {
        self.total() == 0
    }
}

impl fmt::Display for RecognizeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_empty() {
            return write!(f, "no composite ops recognised");
        }
        let parts: Vec<String> = self
            .formed
            .iter()
            .map(|(label, count)| format!("{label} ×{count}"))
            .collect();
        write!(f, "recognised {}", parts.join(", "))
    }
}

/// Rewrites every recognised pattern in `graph` into its composite op and removes the nodes that
/// are no longer needed ([`Graph::prune`], keeping unused graph inputs). A graph with no pattern
/// is left exactly as it was.
pub fn recognize(graph: &mut Graph) -> RecognizeReport {
    let mut report = RecognizeReport::default();
    // One sweep in topological order finds everything (a pattern's inner nodes come before its
    // root); sweep again until nothing changes in case a rewrite enables another. Every rewrite
    // removes more nodes than it adds, so this ends.
    loop {
        let mut changed = false;
        for node in graph.topological_order() {
            if !exists(graph, node) {
                continue;
            }
            for pattern in PATTERNS {
                let mut m = Matcher::new(graph, node);
                let Some(replacement) = pattern(&mut m).filter(|_| m.is_closed()) else {
                    continue;
                };
                if replacement.apply(graph) {
                    *report.formed.entry(replacement.label).or_insert(0) += 1;
                    // Drop the replaced nodes now, so that later matches see true use counts.
                    graph.prune(false);
                    changed = true;
                    break;
                }
            }
        }
        if !changed {
            return report;
        }
    }
}

/// Whether `node` is still in the graph (an earlier rewrite may have pruned it).
fn exists(graph: &Graph, node: NodeIndex) -> bool {
    graph.value_type(ValueRef { node, output: 0 }).is_some()
}
