//! The level pass: turns a plan from the lowering into a leveled plan — parameters chosen or
//! checked, rescales and level drops inserted, bootstraps placed (KV-cache aware), every level
//! explicit and checked by `cachemir_ir::plan::levels::trace`.
//!
//! Steps: the [`sites`] graph with levels consumed per edge (max-plus composition of the
//! instruction-level rules in [`rules`]), the [`placement`] (dynamic program over levels of live
//! values, KV-cache storage levels as decisions), then [`emit`], then the rotation-key set under
//! a memory budget ([`keys`]), then relinearization placement ([`relinearize`]: sums of products
//! relinearized once).

pub mod emit;
pub mod keys;
pub mod params;
pub mod placement;
pub mod relinearize;
pub mod rules;
pub mod select;
pub mod sites;

use cachemir_ir::plan::{CostModel, Parameters, Plan};
use cachemir_ir::{Graph, ValueRef};
pub use placement::{Placement, StatePolicy};

/// Margin on calibrated bounds when pre-scaling a bootstrap input into [−1, 1]: calibration
/// sees finitely many samples.
pub const BOOTSTRAP_MARGIN: f64 = 1.25;

/// How to place bootstraps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Strategy {
    /// [`placement::optimal`].
    Optimal(StatePolicy),
    /// [`placement::greedy`] (the waterline baseline).
    Greedy,
}

/// Options of the level pass.
#[derive(Debug, Clone)]
pub struct LevelOptions {
    pub parameters: Parameters,
    pub cost: CostModel,
    pub strategy: Strategy,
    /// Most states the placement keeps per site (exact below it).
    pub max_states: usize,
    /// Bytes the rotation keys may take ([`keys::minimise_keys`]); `None`: a key per step.
    pub key_budget_bytes: Option<u64>,
    /// Relinearize sums of ciphertext products once ([`relinearize::lazy`]); `false`: every
    /// product relinearized (`mul`).
    pub lazy_relinearization: bool,
}

/// The default rotation-key budget: 16 GB (about a hundred N = 2^16 keys at the levels they are
/// used at).
pub const DEFAULT_KEY_BUDGET_BYTES: u64 = 16_000_000_000;

impl LevelOptions {
    /// Defaults for `parameters`: KV-aware optimal placement, the default CPU cost model, 4,096
    /// states per site, a 16 GB rotation-key budget, lazy relinearization.
    pub fn new(parameters: Parameters) -> Self {
        Self {
            parameters,
            cost: CostModel::default_cpu(),
            strategy: Strategy::Optimal(StatePolicy::Optimised),
            max_states: 4096,
            key_budget_bytes: Some(DEFAULT_KEY_BUDGET_BYTES),
            lazy_relinearization: true,
        }
    }
}

/// A leveled plan and how it was placed.
#[derive(Debug, Clone)]
pub struct Leveled {
    pub plan: Plan,
    pub placement: Placement,
    /// Bootstrapped ciphertexts (a site's bootstrap counts each of its output ciphertexts).
    pub bootstrapped_ciphertexts: usize,
    /// The rotation-key set.
    pub keys: keys::KeyChoice,
    /// Relinearizations before and after [`relinearize::lazy`] (equal when it is off).
    pub relinearization: relinearize::RelinearizationCounts,
}

/// Level pass errors.
#[derive(Debug, thiserror::Error)]
pub enum LevelPassError {
    #[error("parameter set {name}: {reason}")]
    Parameters { name: String, reason: String },
    #[error(transparent)]
    Sites(#[from] sites::SiteError),
    #[error(transparent)]
    Placement(#[from] placement::PlacementError),
    #[error("no bootstrap placement fits at site {site}: {why}")]
    Infeasible { site: String, why: String },
    #[error(transparent)]
    Emit(#[from] emit::EmitError),
    #[error(
        "a placement that ignores the cache state is a baseline to compare costs with; it is not emitted"
    )]
    Baseline,
    #[error("leveled plan fails its own check: {0}")]
    Check(#[from] cachemir_ir::plan::levels::LevelError),
}

/// The largest magnitude the values of plan site `site` reach, from the graph's calibrated
/// ranges: the node's outputs when they were calibrated; otherwise (values the approximation
/// pass created after calibration, such as a Newton iteration's `NAME:newton3.y`, or a kernel's
/// internal site) the longest `:`-prefix naming a calibrated value — the approximated result
/// they converge to — and at least [`NEWTON_INTERMEDIATE_BOUND`]. `None` if no range is known.
/// The `sim` backend checks every bootstrap input at run time, so a bound calibration got wrong
/// is an error, not a silently wrong result.
pub fn calibrated_bound(graph: &Graph, site: &str) -> Option<f64> {
    let own = |name: &str| {
        let value = graph.find_value(name)?;
        (0..graph.node(value.node).outputs.len())
            .map(|output| {
                graph
                    .calibrated_range(ValueRef {
                        node: value.node,
                        output,
                    })
                    .map(|(low, high)| low.abs().max(high.abs()))
            })
            .try_fold(0.0f64, |m, b| b.map(|b| m.max(b)))
    };
    if let Some(b) = own(site) {
        return Some(b);
    }
    let mut prefix = site;
    loop {
        prefix = &prefix[..prefix.rfind(':')?];
        if let Some(b) = own(prefix) {
            return Some(b.max(NEWTON_INTERMEDIATE_BOUND));
        }
    }
}

/// A bound on the products and corrections inside Newton iterations for 1/x and 1/√x
/// (`x·y → 1`, `2 − x·y` and `(3 − x·y²)/2` near convergence).
const NEWTON_INTERMEDIATE_BOUND: f64 = 2.0;

/// Levels `plan` (straight from the lowering). `bound(site name)`: the largest magnitude the
/// site's values reach (calibrated), `None` if unknown (then its outputs are never
/// bootstrapped).
///
/// # Errors
/// [`LevelPassError`]: parameters that do not fit the plan, no feasible placement, or a leveled
/// plan that breaks a level rule (a compiler bug, caught here rather than at run time).
pub fn assign_levels(
    plan: &Plan,
    bound: &dyn Fn(&str) -> Option<f64>,
    options: &LevelOptions,
) -> Result<Leveled, LevelPassError> {
    let p = &options.parameters;
    let Placed {
        nodes,
        placement,
        scaling,
    } = place(plan, bound, options)?;
    if options.strategy == Strategy::Optimal(StatePolicy::IgnoreCache) {
        return Err(LevelPassError::Baseline);
    }
    let bounds: Vec<Option<f64>> = scaling.iter().map(|b| b.filter(|&b| b > 1.0)).collect();
    let leveled = emit::emit(plan, &nodes, &placement, p, &bounds)?;
    let (leveled, keys) =
        keys::minimise_keys(&leveled, options.key_budget_bytes.unwrap_or(u64::MAX));
    let relinearized = if options.lazy_relinearization {
        relinearize::lazy(&leveled)
    } else {
        let n = relinearize::relinearizations(&leveled);
        relinearize::Relinearized {
            plan: leveled,
            counts: relinearize::RelinearizationCounts {
                before: n,
                after: n,
                lazy_sums: 0,
            },
        }
    };
    let (leveled, relinearization) = (relinearized.plan, relinearized.counts);
    cachemir_ir::plan::levels::trace(&leveled)?;
    let bootstrapped_ciphertexts = nodes
        .iter()
        .zip(&placement.bootstrapped)
        .filter(|(_, b)| **b)
        .map(|(n, _)| n.exports.len())
        .sum();
    Ok(Leveled {
        plan: leveled,
        placement,
        bootstrapped_ciphertexts,
        keys,
        relinearization,
    })
}

/// A placement before emission.
#[derive(Debug, Clone)]
pub struct Placed {
    pub nodes: Vec<sites::SiteNode>,
    pub placement: Placement,
    /// Per site: the factor a bootstrap input is divided by (calibrated bound with margin).
    pub scaling: Vec<Option<f64>>,
}

/// The site graph, the placement and each site's bootstrap scaling factor, without emitting
/// (baselines are compared by their estimated cost).
///
/// # Errors
/// As [`assign_levels`].
pub fn place(
    plan: &Plan,
    bound: &dyn Fn(&str) -> Option<f64>,
    options: &LevelOptions,
) -> Result<Placed, LevelPassError> {
    let p = &options.parameters;
    let fail = |reason: String| LevelPassError::Parameters {
        name: p.name.clone(),
        reason,
    };
    if plan.slots > 1usize << (p.log_n - 1) {
        return Err(fail(format!(
            "the plan uses {} slots; N = 2^{} holds at most {}",
            plan.slots,
            p.log_n,
            1usize << (p.log_n - 1)
        )));
    }
    // A leveled set (no bootstrapping keys): no value can be bootstrapped, and the placement
    // only chooses levels (KV-cache storage levels included) or finds none.
    let bootstrap_level = p.bootstrap_level.unwrap_or(0);
    let nodes = sites::site_graph(plan, &options.cost)?;
    let scaling: Vec<Option<f64>> = nodes
        .iter()
        .map(|n| {
            p.bootstrap_level?;
            bound(&plan.sites[n.site].name).map(|b| b * BOOTSTRAP_MARGIN)
        })
        .collect();
    let bootstrap_scaling: Vec<Option<(u32, u32)>> = scaling
        .iter()
        .map(|b| b.map(|b| if b > 1.0 { (1, 0) } else { (0, 0) }))
        .collect();
    let bootstrap_ms: Vec<f64> = nodes
        .iter()
        .zip(&bootstrap_scaling)
        .map(|(n, s)| {
            let (pre, post) = s.unwrap_or((0, 0));
            let scale = |level: u32| {
                options.cost.instruction("mul.s", level)
                    + options.cost.instruction("rescale", level)
            };
            let one = options.cost.bootstrap(plan.slots)
                + if pre > 0 { scale(pre) } else { 0.0 }
                + if post > 0 {
                    scale(bootstrap_level)
                } else {
                    0.0
                };
            one * n.ciphertexts() as f64
        })
        .collect();
    let problem = placement::Problem {
        nodes: &nodes,
        max_level: p.max_level,
        bootstrap_level,
        bootstrap_scaling: bootstrap_scaling.clone(),
        bootstrap_ms,
        states: match options.strategy {
            Strategy::Optimal(s) => s,
            Strategy::Greedy => StatePolicy::Optimised,
        },
        max_states: options.max_states,
    };
    let placement = match options.strategy {
        // The state-capped search can drop every state that leads to a feasible placement: a
        // search with four times the states, then the waterline placement, take over.
        Strategy::Optimal(_) => placement::optimal(&problem).or_else(|first| {
            let wider = placement::Problem {
                bootstrap_scaling: problem.bootstrap_scaling.clone(),
                bootstrap_ms: problem.bootstrap_ms.clone(),
                max_states: problem.max_states.saturating_mul(4),
                ..problem
            };
            placement::optimal(&wider).or_else(|_| {
                placement::greedy(&problem)
                    .map(|p| placement::Placement {
                        exact: false,
                        greedy_fallback: true,
                        ..p
                    })
                    .map_err(|_| first)
            })
        }),
        Strategy::Greedy => placement::greedy(&problem),
    }
    .map_err(
        |placement::PlacementError::Infeasible(site)| LevelPassError::Infeasible {
            site: plan.sites[site].name.clone(),
            why: explain_infeasible(plan, &problem, site),
        },
    )?;
    Ok(Placed {
        nodes,
        placement,
        scaling,
    })
}

/// Why no placement reaches plan site `site`, from the most levels each value can have (an
/// optimistic bound: every value bootstrapped wherever that helps, KV-cache storage levels free).
fn explain_infeasible(plan: &Plan, problem: &placement::Problem<'_>, site: usize) -> String {
    use sites::Role;
    let nodes = problem.nodes;
    let name = |v: usize| plan.sites[nodes[v].site].name.as_str();
    // natural[v]: the highest level v's outputs can land at; best[v]: its value's, bootstrapped.
    let mut natural = vec![0i64; nodes.len()];
    let mut best = vec![0i64; nodes.len()];
    let top = i64::from(problem.max_level);
    for (v, node) in nodes.iter().enumerate() {
        natural[v] = match node.role {
            Role::Source { .. } => top,
            _ => node
                .preds
                .iter()
                .map(|&(p, d)| best[p] - i64::from(d))
                .min()
                .unwrap_or(top),
        };
        best[v] = natural[v];
        if let Some((pre, post)) = problem.bootstrap_scaling[v]
            && natural[v] >= i64::from(pre)
            && !matches!(node.role, Role::Sink { .. })
        {
            best[v] = best[v].max(i64::from(problem.bootstrap_level.saturating_sub(post)));
        }
    }
    let after_boot = |p: usize| {
        let post = problem.bootstrap_scaling[p].map_or(0, |s| s.1);
        format!(
            "a bootstrap returns level {} less {post} to scale it back up",
            problem.bootstrap_level
        )
    };
    let limiting = |p: usize| {
        nodes[p]
            .preds
            .iter()
            .min_by_key(|&&(q, d)| best[q] - i64::from(d))
            .map_or(String::new(), |&(q, d)| {
                format!(
                    " (it consumes {d} levels of `{}`, at level {} at most)",
                    name(q),
                    best[q]
                )
            })
    };
    let Some(v) = nodes.iter().position(|n| n.site == site) else {
        return "no state survives it".into();
    };
    let reasons: Vec<String> = nodes[v]
        .preds
        .iter()
        .filter(|&&(p, d)| best[p] < i64::from(d))
        .map(|&(p, d)| {
            let why = match problem.bootstrap_scaling[p] {
                _ if matches!(nodes[p].role, Role::Source { .. }) => {
                    format!("is encrypted at level {} at most", best[p])
                }
                None => format!(
                    "reaches level {} at most{} and cannot be bootstrapped (no calibrated range)",
                    best[p],
                    limiting(p)
                ),
                Some((pre, _)) if natural[p] < i64::from(pre) => format!(
                    "lands at level {} at most{}, below the {pre} that scaling it into [−1, 1] \
                     for a bootstrap needs",
                    natural[p],
                    limiting(p)
                ),
                Some(_) => format!("is at level {} at most ({})", best[p], after_boot(p)),
            };
            format!("it consumes {d} levels of `{}`, which {why}", name(p))
        })
        .collect();
    if reasons.is_empty() {
        "every placement that reaches it breaks a KV-cache storage level (the levels its new \
         entries reach differ from the level the cache is read at)"
            .into()
    } else {
        reasons.join("; ")
    }
}
