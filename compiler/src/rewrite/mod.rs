//! The equality-saturation rewrite pass (egg: Willsey et al., "egg: Fast and Extensible
//! Equality Saturation", POPL 2021).
//!
//! [`rewrite`] runs composite-op recognition ([`cachemir_ir::recognize::recognize`]) first,
//! puts the graph into an e-graph ([`convert::encode`]), saturates it with [`rules::rules`]
//! under node, iteration and time limits, extracts the cheapest equal graph under the FHE cost
//! model ([`cost`]) and converts it back ([`convert::decode`]), folding public constants into
//! weights on the way.
//!
//! Modules: [`language`] (the e-graph language over Tensor IR ops), [`analysis`] (type,
//! secrecy, constant-ness, scalar value, range per e-class), [`canonical`] (one e-class per
//! product of weights and scalars, however associated), [`rules`] and [`patterns`] (the
//! rewrite rules), [`cost`] (the FHE cost model, also applied to whole IR graphs), [`convert`]
//! (IR graph ⇄ e-graph), [`report`].
//!
//! The result verifies, keeps every graph input and output (name, type, role, order), and
//! computes what the input graph computes up to float reassociation (and the f32 rounding of
//! folded `f32` constants).

pub mod analysis;
pub mod canonical;
pub mod convert;
pub mod cost;
pub mod language;
pub mod patterns;
pub mod report;
pub mod rules;

pub use cost::{FheCost, graph_cost};
pub use report::{RewriteReport, StopReason};

use analysis::{TensorAnalysis, TensorGraph};
use cachemir_ir::recognize::recognize;
use cachemir_ir::{Graph, IrError};
use egg::Runner;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use thiserror::Error;

/// Limits of equality saturation; it stops at the first one reached (the report says which).
#[derive(Debug, Clone, PartialEq)]
pub struct RewriteOptions {
    /// Most e-nodes in the e-graph.
    pub node_limit: usize,
    /// Most saturation iterations (each searches every rule, then applies the matches).
    pub iteration_limit: usize,
    /// Most wall time spent saturating (conversion and extraction come on top).
    pub time_limit: Duration,
    /// Run composite-op recognition on the graph first (it handles exporters' spellings the
    /// rules do not enumerate).
    pub recognize_first: bool,
}

impl Default for RewriteOptions {
    fn default() -> Self {
        Self {
            node_limit: 200_000,
            iteration_limit: 30,
            time_limit: Duration::from_secs(10),
            recognize_first: true,
        }
    }
}

/// Why a rewrite failed. The input graph is never modified.
#[derive(Debug, Error)]
pub enum RewriteError {
    /// The input graph does not verify.
    #[error("the input graph is invalid: {0}")]
    InvalidInput(#[from] IrError),
    /// The graph holds something the e-graph cannot represent.
    #[error("cannot rewrite this graph: {0}")]
    Unsupported(String),
    /// No valid graph could be rebuilt from the e-graph (a bug in a rule or in the converter).
    #[error("extraction failed: {0}")]
    Extraction(String),
}

/// Rewrites `graph` into an equal graph of lower FHE cost.
///
/// # Errors
/// [`RewriteError::InvalidInput`] when `graph` does not verify; [`RewriteError::Unsupported`]
/// and [`RewriteError::Extraction`] as described there.
pub fn rewrite(
    graph: &Graph,
    options: &RewriteOptions,
) -> Result<(Graph, RewriteReport), RewriteError> {
    let start = Instant::now();
    graph.verify()?;
    let cost_before = graph_cost(graph);
    let mut recognised_graph = graph.clone();
    let recognised = if options.recognize_first {
        recognize(&mut recognised_graph).formed
    } else {
        BTreeMap::new()
    };
    let mut encoded = convert::encode(&recognised_graph)?;
    let egraph = std::mem::replace(
        &mut encoded.egraph,
        TensorGraph::new(TensorAnalysis::default()),
    );
    let runner: Runner<_, _, ()> = Runner::default()
        .with_egraph(egraph)
        .with_node_limit(options.node_limit)
        .with_iter_limit(options.iteration_limit)
        .with_time_limit(options.time_limit)
        .run(&rules::rules());
    let mut rules_fired = BTreeMap::new();
    for iteration in &runner.iterations {
        for (rule, count) in &iteration.applied {
            if *count > 0 {
                *rules_fired.entry(rule.to_string()).or_insert(0) += count;
            }
        }
    }
    let stop_reason = runner
        .stop_reason
        .as_ref()
        .map_or(StopReason::Other("not run".into()), StopReason::from);
    let decoded = convert::decode(&recognised_graph, &encoded, &runner.egraph)?;
    let cost_recognised = graph_cost(&recognised_graph);
    let extracted = graph_cost(&decoded.graph) <= cost_recognised;
    let (result, constants_folded) = if extracted {
        (decoded.graph, decoded.folded)
    } else {
        (recognised_graph, 0)
    };
    let report = RewriteReport {
        recognised,
        rules_fired,
        iterations: runner.iterations.len(),
        egraph_nodes: runner.egraph.total_size(),
        egraph_classes: runner.egraph.number_of_classes(),
        stop_reason,
        elapsed: start.elapsed(),
        cost_before,
        cost_recognised,
        cost_after: graph_cost(&result),
        constants_folded,
        nodes_before: graph.node_count(),
        nodes_after: result.node_count(),
        extracted,
    };
    Ok((result, report))
}
