//! What a rewrite did: the rules that fired, the e-graph's size, why saturation stopped, and the
//! FHE cost ([`FheCost`]) of the graph before and after.

use super::cost::FheCost;
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// Why equality saturation stopped.
#[derive(Debug, Clone, PartialEq)]
pub enum StopReason {
    /// No rule could add anything new: every equal form was found.
    Saturated,
    /// The iteration limit was reached.
    IterationLimit(usize),
    /// The e-node limit was reached.
    NodeLimit(usize),
    /// The time limit was reached.
    TimeLimit(Duration),
    /// Anything else egg reports.
    Other(String),
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StopReason::Saturated => write!(f, "saturated"),
            StopReason::IterationLimit(n) => write!(f, "iteration limit ({n})"),
            StopReason::NodeLimit(n) => write!(f, "e-node limit ({n})"),
            StopReason::TimeLimit(t) => write!(f, "time limit ({:.1} s)", t.as_secs_f64()),
            StopReason::Other(why) => write!(f, "{why}"),
        }
    }
}

impl From<&egg::StopReason> for StopReason {
    fn from(reason: &egg::StopReason) -> Self {
        match reason {
            egg::StopReason::Saturated => StopReason::Saturated,
            egg::StopReason::IterationLimit(n) => StopReason::IterationLimit(*n),
            egg::StopReason::NodeLimit(n) => StopReason::NodeLimit(*n),
            egg::StopReason::TimeLimit(s) => StopReason::TimeLimit(Duration::from_secs_f64(*s)),
            egg::StopReason::Other(why) => StopReason::Other(why.clone()),
        }
    }
}

/// The outcome of [`super::rewrite`].
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteReport {
    /// Composite ops formed by the recognition pass run first
    /// ([`cachemir_ir::recognize::recognize`]), by label.
    pub recognised: BTreeMap<String, usize>,
    /// Rule name → number of times it changed the e-graph (unions that merged two classes).
    pub rules_fired: BTreeMap<String, usize>,
    /// Saturation iterations run.
    pub iterations: usize,
    /// E-nodes and e-classes when saturation stopped.
    pub egraph_nodes: usize,
    pub egraph_classes: usize,
    pub stop_reason: StopReason,
    /// Wall time of the whole rewrite.
    pub elapsed: Duration,
    /// FHE cost of the input graph, after recognition (what saturation starts from), and of the
    /// result.
    pub cost_before: FheCost,
    pub cost_recognised: FheCost,
    pub cost_after: FheCost,
    /// Ops on weights evaluated into new constants (scales, transposes, products, RoPE's
    /// rotate-half folded into weights); ops on synthetic weights stay ops.
    pub constants_folded: usize,
    /// IR nodes of the input graph and of the result.
    pub nodes_before: usize,
    pub nodes_after: usize,
    /// Whether the extracted graph was kept; `false` when it cost more than the recognised
    /// graph (extraction's tree cost over-counts shared terms), which is then returned.
    pub extracted: bool,
}

impl RewriteReport {
    /// Times a rule fired (0 when it did not).
    pub fn fired(&self, rule: &str) -> usize {
        self.rules_fired.get(rule).copied().unwrap_or(0)
    }
}

impl fmt::Display for RewriteReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "rewrite: {} iterations, {}; e-graph {} nodes in {} classes; {:.2} s",
            self.iterations,
            self.stop_reason,
            self.egraph_nodes,
            self.egraph_classes,
            self.elapsed.as_secs_f64()
        )?;
        if !self.recognised.is_empty() {
            let parts: Vec<String> = self
                .recognised
                .iter()
                .map(|(label, n)| format!("{label} ×{n}"))
                .collect();
            writeln!(f, "  recognised first: {}", parts.join(", "))?;
        }
        if self.rules_fired.is_empty() {
            writeln!(f, "  no rule fired")?;
        }
        for (rule, count) in &self.rules_fired {
            writeln!(f, "  {rule:<40} {count:>6}")?;
        }
        writeln!(
            f,
            "  nodes: {} -> {}; constants folded: {}",
            self.nodes_before, self.nodes_after, self.constants_folded
        )?;
        writeln!(f, "  cost before:     {}", self.cost_before)?;
        writeln!(f, "  cost recognised: {}", self.cost_recognised)?;
        write!(f, "  cost after:      {}", self.cost_after)?;
        if !self.extracted {
            write!(f, "\n  (extraction cost more; kept the recognised graph)")?;
        }
        Ok(())
    }
}
