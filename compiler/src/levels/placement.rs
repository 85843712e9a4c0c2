//! Bootstrap placement over the site graph: for every site, the level its outputs land at
//! (inputs are lowered to just what it needs, so higher levels never cost more later) and whether
//! they are bootstrapped; for every input, the level the client encrypts it at; for every KV-cache
//! state, the level the cache is stored at — one decision shared by the step that writes an entry
//! and every later step that reads it (Cachemir's augmented placement, §5).
//!
//! [`optimal`] is a dynamic program over the sites in a topological order whose state is the level
//! of every live value (a value with consumers still to come); states with no more cost and no
//! lower levels than another are kept, the rest dropped (Pareto), which is exact because a level
//! can always be lowered for free. On series-parallel graphs the live set is the few values that
//! cross a cut (the residual stream, a branch, the cache of the layer), so the state space stays
//! small; a cap on states makes long general DAGs tractable and is reported (`exact = false`)
//! when it binds. [`exhaustive`] enumerates every decision (tests), [`greedy`] is the waterline
//! baseline (bootstrap a value as soon as a consumer would run out of levels).

use super::sites::{Role, SiteNode};
use std::collections::HashMap;

/// How KV-cache states are treated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatePolicy {
    /// The storage level is a decision; the step's new entries must reach it (Cachemir).
    Optimised,
    /// The cache is an ordinary input and output: read at the level a refreshed ciphertext has
    /// and, to be read so again at the next step, every stored ciphertext is bootstrapped — what
    /// a placement without state nodes has to do (a baseline: costed, not emitted).
    IgnoreCache,
}

/// The placement problem.
#[derive(Debug, Clone)]
pub struct Problem<'a> {
    pub nodes: &'a [SiteNode],
    /// Level of a fresh encryption.
    pub max_level: u32,
    /// Level a bootstrap returns.
    pub bootstrap_level: u32,
    /// Per node: levels the pre-scaling before and the post-scaling after a bootstrap of its
    /// outputs consume; `None` where its outputs cannot be bootstrapped (no calibrated range).
    pub bootstrap_scaling: Vec<Option<(u32, u32)>>,
    /// Per node: ms of bootstrapping all its outputs (scaling included).
    pub bootstrap_ms: Vec<f64>,
    pub states: StatePolicy,
    /// Most states kept per step.
    pub max_states: usize,
}

/// The decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct Placement {
    /// Per node: the level its outputs land at (sources: the level the input arrives at).
    pub levels: Vec<u32>,
    /// Per node: whether its outputs are bootstrapped.
    pub bootstrapped: Vec<bool>,
    /// Estimated latency, ms.
    pub cost_ms: f64,
    /// Whether no state was dropped by the cap.
    pub exact: bool,
    /// Whether the state-capped search found no feasible placement and the greedy waterline
    /// placement stands in ([`super::place`]).
    pub greedy_fallback: bool,
}

impl Placement {
    /// Sites whose outputs are bootstrapped.
    pub fn bootstraps(&self) -> usize {
        self.bootstrapped.iter().filter(|&&b| b).count()
    }
}

/// No placement exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    #[error(
        "no bootstrap placement fits: site {0} needs more levels than any placement leaves \
         (its inputs cannot be bootstrapped, or one site consumes more levels than a bootstrap gives)"
    )]
    Infeasible(usize),
}

/// One choice for a node: its output level, whether it bootstraps, the level its value has
/// afterwards, and its cost.
#[derive(Debug, Clone, Copy)]
struct Choice {
    level: u32,
    boot: bool,
    value: u32,
    cost: f64,
}

impl Problem<'_> {
    /// Predecessors with the extra dependency of a state sink on its state source (the stored
    /// level must equal the level the cache was read at).
    fn preds(&self) -> Vec<Vec<(usize, u32)>> {
        let source_of = |input: u32| {
            self.nodes
                .iter()
                .position(|n| matches!(n.role, Role::Source { input: i, .. } if i == input))
        };
        self.nodes
            .iter()
            .map(|n| {
                let mut preds = n.preds.clone();
                if let Role::Sink {
                    state_input: Some(input),
                    ..
                } = n.role
                    && self.states == StatePolicy::Optimised
                    && let Some(source) = source_of(input)
                    && !preds.iter().any(|p| p.0 == source)
                {
                    preds.push((source, 0));
                }
                preds
            })
            .collect()
    }

    /// The choices of node `v` given its predecessors' levels (`None`: infeasible).
    fn choices(
        &self,
        v: usize,
        levels: &dyn Fn(usize) -> u32,
        preds: &[(usize, u32)],
    ) -> Vec<Choice> {
        let node = &self.nodes[v];
        match node.role {
            Role::Source { state, .. } => {
                let fixed = |l: u32| {
                    vec![Choice {
                        level: l,
                        boot: false,
                        value: l,
                        cost: 0.0,
                    }]
                };
                if state && self.states == StatePolicy::IgnoreCache {
                    let post = self.bootstrap_scaling.iter().flatten().map(|s| s.1).max();
                    return fixed(self.bootstrap_level.saturating_sub(post.unwrap_or(0)));
                }
                (0..=self.max_level)
                    .map(|l| Choice {
                        level: l,
                        boot: false,
                        value: l,
                        cost: 0.0,
                    })
                    .collect()
            }
            _ => {
                let natural = preds
                    .iter()
                    .map(|&(p, d)| i64::from(levels(p)) - i64::from(d))
                    .min()
                    .unwrap_or(i64::from(self.max_level));
                if natural < 0 {
                    return Vec::new();
                }
                let natural = natural as u32;
                let at = |l: u32| node.cost.0 + node.cost.1 * f64::from(l);
                if let Role::Sink {
                    state_input: Some(input),
                    ..
                } = node.role
                    && self.states == StatePolicy::Optimised
                {
                    // Stored at exactly the level the cache is read at.
                    let source = self.nodes.iter().position(
                        |n| matches!(n.role, Role::Source { input: i, .. } if i == input),
                    );
                    let s = source.map_or(natural, levels);
                    return if natural >= s {
                        vec![Choice {
                            level: s,
                            boot: false,
                            value: s,
                            cost: at(s),
                        }]
                    } else {
                        Vec::new()
                    };
                }
                if let Role::Sink {
                    state_input: Some(_),
                    ..
                } = node.role
                {
                    // Ignoring the cache: every stored ciphertext refreshed.
                    let pre = self.bootstrap_scaling[v].map_or(0, |s| s.0);
                    return if natural >= pre {
                        vec![Choice {
                            level: pre,
                            boot: true,
                            value: pre,
                            cost: at(pre) + self.bootstrap_ms[v],
                        }]
                    } else {
                        Vec::new()
                    };
                }
                let mut out: Vec<Choice> = (0..=natural)
                    .map(|l| Choice {
                        level: l,
                        boot: false,
                        value: l,
                        cost: at(l),
                    })
                    .collect();
                if let Some((pre, post)) = self.bootstrap_scaling[v]
                    && natural >= pre
                    && !matches!(node.role, Role::Sink { .. })
                {
                    out.push(Choice {
                        level: pre,
                        boot: true,
                        value: self.bootstrap_level.saturating_sub(post),
                        cost: at(pre) + self.bootstrap_ms[v],
                    });
                }
                out
            }
        }
    }

    /// Consumers per node.
    fn consumers(&self, preds: &[Vec<(usize, u32)>]) -> Vec<usize> {
        let mut count = vec![0; self.nodes.len()];
        for ps in preds {
            for &(p, _) in ps {
                count[p] += 1;
            }
        }
        count
    }
}

/// A topological order that keeps the live set small: each sink as soon as its inputs are ready
/// (KV-cache states leave the live set at the end of their layer, not at the end of the plan),
/// then the ready value whose first consumer comes first (a V projection waits for the attention
/// that reads it instead of crossing the QKᵀ and softmax chain live), and each source only when
/// nothing else is ready, the one whose first consumer comes first (a layer's cache enters the
/// live set when that layer reaches its attention).
fn order(preds: &[Vec<(usize, u32)>]) -> Vec<usize> {
    let n = preds.len();
    let mut successors: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut waiting: Vec<usize> = vec![0; n];
    for (v, ps) in preds.iter().enumerate() {
        for &(p, _) in ps {
            successors[p].push(v);
            waiting[v] += 1;
        }
    }
    let key = |v: usize| {
        let first_use = successors[v].iter().copied().min().unwrap_or(v);
        if successors[v].is_empty() {
            (0, v)
        } else if preds[v].is_empty() {
            (2, first_use)
        } else {
            (1, first_use)
        }
    };
    let mut ready: std::collections::BTreeSet<((u8, usize), usize)> = (0..n)
        .filter(|&v| waiting[v] == 0)
        .map(|v| (key(v), v))
        .collect();
    let mut out = Vec::with_capacity(n);
    while let Some((_, v)) = ready.pop_first() {
        out.push(v);
        for &s in &successors[v] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                ready.insert((key(s), s));
            }
        }
    }
    out
}

/// The cheapest placement (see the module documentation).
///
/// # Errors
/// [`PlacementError::Infeasible`] naming the first site no state can reach.
pub fn optimal(problem: &Problem<'_>) -> Result<Placement, PlacementError> {
    let preds = problem.preds();
    let order = order(&preds);
    let mut remaining = problem.consumers(&preds);
    let n = problem.nodes.len();
    // Live values (node ids) and, per state, their levels in that order.
    let mut live: Vec<usize> = Vec::new();
    let mut states: Vec<(Vec<u32>, f64)> = vec![(Vec::new(), 0.0)];
    // Per step: (parent state, choice) of every state.
    let mut history: Vec<Vec<(usize, Choice)>> = Vec::with_capacity(n);
    let mut exact = true;
    // `CACHEMIR_TRACE_PLACEMENT=1` prints the state count at every site.
    let trace = std::env::var_os("CACHEMIR_TRACE_PLACEMENT").is_some();
    for &v in &order {
        let position: HashMap<usize, usize> =
            live.iter().enumerate().map(|(i, &u)| (u, i)).collect();
        // The live set after this step.
        for &(p, _) in &preds[v] {
            remaining[p] -= 1;
        }
        let mut next_live: Vec<usize> =
            live.iter().copied().filter(|&u| remaining[u] > 0).collect();
        let keeps_value = remaining[v] > 0;
        if keeps_value {
            next_live.push(v);
        }
        let mut best: HashMap<Vec<u32>, (f64, usize, Choice)> = HashMap::new();
        for (index, (levels, cost)) in states.iter().enumerate() {
            let level_of = |u: usize| levels[position[&u]];
            for choice in problem.choices(v, &level_of, &preds[v]) {
                let key: Vec<u32> = next_live
                    .iter()
                    .map(|&u| if u == v { choice.value } else { level_of(u) })
                    .collect();
                let total = cost + choice.cost;
                match best.get(&key) {
                    Some(&(c, _, _)) if c <= total => {}
                    _ => {
                        best.insert(key, (total, index, choice));
                    }
                }
            }
        }
        if trace {
            let highest: Vec<(usize, u32)> = next_live
                .iter()
                .enumerate()
                .map(|(i, &u)| {
                    (
                        problem.nodes[u].site,
                        best.keys().map(|k| k[i]).max().unwrap_or(0),
                    )
                })
                .collect();
            eprintln!("  highest live levels (site, level): {highest:?}");
            eprintln!(
                "placement: site {} ({:?}) preds {:?}: {} states in, {} out, live {}",
                problem.nodes[v].site,
                problem.nodes[v].role,
                preds[v]
                    .iter()
                    .map(|p| (problem.nodes[p.0].site, p.1))
                    .collect::<Vec<_>>(),
                states.len(),
                best.len(),
                next_live.len()
            );
        }
        if best.is_empty() {
            return Err(PlacementError::Infeasible(problem.nodes[v].site));
        }
        // Pareto: drop states with no lower cost and no higher level than a kept one. A cache's
        // storage level is not better higher (its new entries must reach it): equal only.
        let exact_only: Vec<bool> = next_live
            .iter()
            .map(|&u| {
                problem.states == StatePolicy::Optimised
                    && matches!(problem.nodes[u].role, Role::Source { state: true, .. })
            })
            .collect();
        let mut candidates: Vec<(Vec<u32>, f64, usize, Choice)> = best
            .into_iter()
            .map(|(k, (c, i, ch))| (k, c, i, ch))
            .collect();
        candidates.sort_by(|a, b| a.1.total_cmp(&b.1).then_with(|| b.0.cmp(&a.0)));
        // Buckets by the cache levels (compared for equality only), a Pareto front in each; over
        // the cap, each bucket keeps its share, half the cheapest and half the highest levels.
        type Candidate = (Vec<u32>, f64, usize, Choice);
        let mut buckets: HashMap<Vec<u32>, Vec<Candidate>> = HashMap::new();
        for candidate in candidates {
            let bucket: Vec<u32> = candidate
                .0
                .iter()
                .zip(&exact_only)
                .filter(|(_, e)| **e)
                .map(|(l, _)| *l)
                .collect();
            buckets.entry(bucket).or_default().push(candidate);
        }
        let share = (problem.max_states / buckets.len().max(1)).max(2);
        let mut kept: Vec<Candidate> = Vec::new();
        let mut bucket_keys: Vec<Vec<u32>> = buckets.keys().cloned().collect();
        bucket_keys.sort_unstable();
        for key in bucket_keys {
            let members = buckets.remove(&key).expect("listed");
            let mut front: Vec<Candidate> = Vec::new();
            let mut levels = Dominance::new(next_live.len());
            for candidate in members {
                if !levels.dominated(&candidate.0) {
                    levels.insert(&candidate.0);
                    front.push(candidate);
                    if front.len() >= 4 * share {
                        exact = false;
                        break;
                    }
                }
            }
            if front.len() > share {
                exact = false;
                let mut highest: Vec<usize> = (0..front.len()).collect();
                highest.sort_by_key(|&i| std::cmp::Reverse(front[i].0.iter().sum::<u32>()));
                let mut chosen: Vec<usize> = (0..share / 2).collect();
                // The cheapest state with the highest level of each live value: a value that
                // must reach a high level much later (a V projection waiting for its cache
                // append) keeps a way to get there.
                for coordinate in 0..next_live.len() {
                    let top = (0..front.len())
                        .max_by(|&a, &b| {
                            front[a].0[coordinate]
                                .cmp(&front[b].0[coordinate])
                                .then_with(|| front[b].1.total_cmp(&front[a].1))
                        })
                        .expect("a non-empty front");
                    if !chosen.contains(&top) {
                        chosen.push(top);
                    }
                }
                for i in highest {
                    if chosen.len() >= share {
                        break;
                    }
                    if !chosen.contains(&i) {
                        chosen.push(i);
                    }
                }
                chosen.sort_unstable();
                front = chosen.into_iter().map(|i| front[i].clone()).collect();
            }
            kept.extend(front);
        }
        history.push(kept.iter().map(|k| (k.2, k.3)).collect());
        states = kept.into_iter().map(|k| (k.0, k.1)).collect();
        live = next_live;
    }
    // The cheapest final state, walked back.
    let (mut index, cost) = states
        .iter()
        .enumerate()
        .min_by(|a, b| a.1.1.total_cmp(&b.1.1))
        .map(|(i, s)| (i, s.1))
        .ok_or(PlacementError::Infeasible(0))?;
    let mut levels = vec![0; n];
    let mut bootstrapped = vec![false; n];
    for (step, &v) in order.iter().enumerate().rev() {
        let (parent, choice) = history[step][index];
        levels[v] = choice.level;
        bootstrapped[v] = choice.boot;
        index = parent;
    }
    Ok(Placement {
        levels,
        bootstrapped,
        cost_ms: cost,
        exact,
        greedy_fallback: false,
    })
}

/// The level vectors of a Pareto front, for the question the front is built by: is a new vector
/// dominated, i.e. some kept vector at least as high in every coordinate? Kept vectors are
/// grouped by their coordinate sum (a dominating vector's sum is at least the new one's) and
/// each group keeps its coordinate-wise maximum (a group whose maximum is below the new vector
/// somewhere holds no dominating vector), so most groups are skipped without a comparison: fronts
/// of thousands of states over dozens of live values are checked against every candidate.
struct Dominance {
    width: usize,
    /// Per coordinate sum: the vectors (flat, `width` each), their count and coordinate maxima.
    by_sum: Vec<(Vec<u32>, usize, Vec<u32>)>,
}

impl Dominance {
    fn new(width: usize) -> Self {
        Self {
            width,
            by_sum: Vec::new(),
        }
    }

    fn sum(levels: &[u32]) -> usize {
        levels.iter().map(|&l| l as usize).sum()
    }

    /// Whether a kept vector is at least `levels` in every coordinate.
    fn dominated(&self, levels: &[u32]) -> bool {
        let sum = Self::sum(levels);
        self.by_sum.iter().skip(sum).any(|(flat, count, maxima)| {
            *count > 0
                && maxima.iter().zip(levels).all(|(m, l)| m >= l)
                && (self.width == 0
                    || flat
                        .chunks_exact(self.width)
                        .any(|kept| kept.iter().zip(levels).all(|(k, l)| k >= l)))
        })
    }

    fn insert(&mut self, levels: &[u32]) {
        let sum = Self::sum(levels);
        let width = self.width;
        if self.by_sum.len() <= sum {
            self.by_sum
                .resize_with(sum + 1, || (Vec::new(), 0, vec![0; width]));
        }
        let (flat, count, maxima) = &mut self.by_sum[sum];
        flat.extend_from_slice(levels);
        *count += 1;
        for (m, &l) in maxima.iter_mut().zip(levels) {
            *m = (*m).max(l);
        }
    }
}

/// Every combination of decisions, depth first with a cost bound (tests: a few nodes only).
pub fn exhaustive(problem: &Problem<'_>) -> Option<Placement> {
    let preds = problem.preds();
    let order = order(&preds);
    let n = problem.nodes.len();
    struct Search<'p, 'a> {
        problem: &'p Problem<'a>,
        preds: Vec<Vec<(usize, u32)>>,
        order: Vec<usize>,
        value: Vec<u32>,
        choice: Vec<Option<Choice>>,
        best: Option<(f64, Vec<Option<Choice>>)>,
    }
    fn go(s: &mut Search<'_, '_>, step: usize, cost: f64) {
        if s.best.as_ref().is_some_and(|b| b.0 <= cost) {
            return;
        }
        if step == s.order.len() {
            s.best = Some((cost, s.choice.clone()));
            return;
        }
        let v = s.order[step];
        let value = s.value.clone();
        let choices = s.problem.choices(v, &|u| value[u], &s.preds[v]);
        for c in choices {
            s.value[v] = c.value;
            s.choice[v] = Some(c);
            go(s, step + 1, cost + c.cost);
        }
        s.choice[v] = None;
    }
    let mut search = Search {
        problem,
        preds,
        order,
        value: vec![0; n],
        choice: vec![None; n],
        best: None,
    };
    go(&mut search, 0, 0.0);
    let (cost, choices) = search.best?;
    Some(Placement {
        levels: choices.iter().map(|c| c.map_or(0, |c| c.level)).collect(),
        bootstrapped: choices.iter().map(|c| c.is_some_and(|c| c.boot)).collect(),
        cost_ms: cost,
        exact: true,
        greedy_fallback: false,
    })
}

/// The waterline baseline: inputs at the top level, caches stored at the level a bootstrapped
/// new entry has after the append, every site at its natural level, and a value bootstrapped when it is produced if a
/// consumer (or its cache) would otherwise run out of levels.
///
/// # Errors
/// [`PlacementError::Infeasible`] where a value too low to bootstrap meets such a consumer.
pub fn greedy(problem: &Problem<'_>) -> Result<Placement, PlacementError> {
    let preds = problem.preds();
    let order = order(&preds);
    let n = problem.nodes.len();
    // A value must leave each consumer enough levels to bootstrap its own outputs.
    let mut needed = vec![0u32; n];
    for (c, ps) in preds.iter().enumerate() {
        let pre = problem.bootstrap_scaling[c].map_or(0, |s| s.0);
        for &(p, d) in ps {
            needed[p] = needed[p].max(d + pre);
        }
    }
    let post = problem
        .bootstrap_scaling
        .iter()
        .flatten()
        .map(|s| s.1)
        .max()
        .unwrap_or(0);
    // Caches are stored as low as a bootstrapped new entry reaches after the append.
    let append = problem
        .nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            matches!(
                n.role,
                Role::Sink {
                    state_input: Some(_),
                    ..
                }
            )
        })
        .flat_map(|(v, _)| preds[v].iter())
        .filter(|&&(p, _)| !matches!(problem.nodes[p].role, Role::Source { .. }))
        .map(|&(_, d)| d)
        .max()
        .unwrap_or(0);
    let stored = problem.bootstrap_level.saturating_sub(post + append);
    // A value feeding a cache must arrive at the stored level.
    for (v, node) in problem.nodes.iter().enumerate() {
        if let Role::Sink {
            state_input: Some(_),
            ..
        } = node.role
        {
            for &(p, d) in &preds[v] {
                if !matches!(problem.nodes[p].role, Role::Source { .. }) {
                    needed[p] = needed[p].max(d + stored);
                }
            }
        }
    }
    let mut levels = vec![0u32; n];
    let mut value = vec![0u32; n];
    let mut bootstrapped = vec![false; n];
    let mut cost = 0.0;
    for &v in &order {
        let node = &problem.nodes[v];
        match node.role {
            Role::Source { state, .. } => {
                let l = if state { stored } else { problem.max_level };
                levels[v] = l;
                value[v] = l;
            }
            _ => {
                let natural = preds[v]
                    .iter()
                    .map(|&(p, d)| i64::from(value[p]) - i64::from(d))
                    .min()
                    .unwrap_or(i64::from(problem.max_level));
                if natural < 0 {
                    return Err(PlacementError::Infeasible(node.site));
                }
                let natural = natural as u32;
                let mut level = natural;
                if let Role::Sink {
                    state_input: Some(_),
                    ..
                } = node.role
                {
                    level = stored.min(natural);
                }
                levels[v] = level;
                value[v] = level;
                if level < needed[v] && !matches!(node.role, Role::Sink { .. }) {
                    let Some((pre, post)) = problem.bootstrap_scaling[v] else {
                        return Err(PlacementError::Infeasible(node.site));
                    };
                    if level < pre {
                        return Err(PlacementError::Infeasible(node.site));
                    }
                    bootstrapped[v] = true;
                    value[v] = problem.bootstrap_level.saturating_sub(post);
                    cost += problem.bootstrap_ms[v];
                    if value[v] < needed[v] {
                        return Err(PlacementError::Infeasible(node.site));
                    }
                }
                cost += node.cost.0 + node.cost.1 * f64::from(level);
            }
        }
    }
    Ok(Placement {
        levels,
        bootstrapped,
        cost_ms: cost,
        exact: true,
        greedy_fallback: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A random DAG of `n` sites: sources first, each later site reading one or two earlier
    /// values with 0–2 levels consumed, a sink at the end; with `cache`, a KV-cache state source
    /// whose sink stores a new entry appended to it.
    fn graph(
        n: usize,
        edges: &[(usize, usize, u32, u32)],
        costs: &[(f64, f64)],
        cache: bool,
    ) -> Vec<SiteNode> {
        let mut nodes: Vec<SiteNode> = Vec::new();
        let node = |role: Role, preds: Vec<(usize, u32)>, cost: (f64, f64)| SiteNode {
            site: 0,
            first: 0,
            end: 0,
            role,
            preds,
            exports: vec![0],
            stores: 1,
            cost,
        };
        nodes.push(node(
            Role::Source {
                input: 0,
                state: false,
            },
            vec![],
            (0.0, 0.0),
        ));
        if cache {
            nodes.push(node(
                Role::Source {
                    input: 1,
                    state: true,
                },
                vec![],
                (0.0, 0.0),
            ));
        }
        while nodes.len() < n - usize::from(cache) - 1 {
            let v = nodes.len();
            let (a, b, da, db) = edges[v % edges.len()];
            let mut preds = vec![(a % v, da)];
            if b % 3 != 0 && b % v != a % v {
                preds.push((b % v, db));
            }
            nodes[v.saturating_sub(1)].site = v - 1;
            let cost = costs[v % costs.len()];
            nodes.push(node(Role::Compute, preds, cost));
        }
        let last = nodes.len() - 1;
        if cache {
            // The new entry (the last value) appended to the cache read at source 1.
            nodes.push(node(
                Role::Sink {
                    output: 1,
                    state_input: Some(1),
                },
                vec![(last, 1), (1, 0)],
                (1.0, 0.5),
            ));
            // Attention reads the cache.
            nodes[last].preds.push((1, 1));
        }
        nodes.push(node(
            Role::Sink {
                output: 0,
                state_input: None,
            },
            vec![(last, 0)],
            (1.0, 0.1),
        ));
        for (i, n) in nodes.iter_mut().enumerate() {
            n.site = i;
        }
        nodes
    }

    fn problem<'a>(nodes: &'a [SiteNode], boot: &[bool], states: StatePolicy) -> Problem<'a> {
        Problem {
            nodes,
            max_level: 3,
            bootstrap_level: 3,
            bootstrap_scaling: nodes
                .iter()
                .enumerate()
                .map(|(i, _)| {
                    boot[i % boot.len()].then_some((u32::from(i % 2 == 0), u32::from(i % 2 == 0)))
                })
                .collect(),
            bootstrap_ms: nodes
                .iter()
                .enumerate()
                .map(|(i, _)| 50.0 + i as f64)
                .collect(),
            states,
            max_states: 1 << 16,
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(96))]

        /// On graphs of at most 12 sites the dynamic program finds the cost of the exhaustive
        /// search (both infeasible, or equal within rounding), and the greedy baseline never
        /// beats it.
        #[test]
        fn optimal_equals_exhaustive_search(
            n in 4usize..=12,
            edges in proptest::collection::vec((0usize..12, 0usize..12, 0u32..=2, 0u32..=2), 12),
            costs in proptest::collection::vec((0.0f64..10.0, 0.0f64..5.0), 12),
            boot in proptest::collection::vec(proptest::bool::weighted(0.8), 1..6),
            cache in proptest::bool::ANY,
        ) {
            let nodes = graph(n, &edges, &costs, cache);
            let p = problem(&nodes, &boot, StatePolicy::Optimised);
            let dp = optimal(&p);
            let all = exhaustive(&p);
            match (&dp, &all) {
                (Ok(dp), Some(all)) => {
                    prop_assert!(dp.exact);
                    prop_assert!((dp.cost_ms - all.cost_ms).abs() < 1e-6, "dp {} exhaustive {}", dp.cost_ms, all.cost_ms);
                    if let Ok(g) = greedy(&p) {
                        prop_assert!(g.cost_ms >= dp.cost_ms - 1e-6);
                    }
                }
                (Err(_), None) => {}
                _ => prop_assert!(false, "dp {dp:?} exhaustive {all:?}"),
            }
        }
    }

    proptest! {
        /// The grouped dominance check answers as a scan over every kept vector would, on
        /// fronts built the way [`optimal`] builds them (a vector kept when not dominated).
        #[test]
        fn dominance_equals_a_scan(
            width in 0usize..=5,
            vectors in proptest::collection::vec(proptest::collection::vec(0u32..6, 5), 0..300),
        ) {
            let mut grouped = Dominance::new(width);
            let mut kept: Vec<Vec<u32>> = Vec::new();
            for v in &vectors {
                let v = &v[..width];
                let scan = kept.iter().any(|k| k.iter().zip(v).all(|(a, b)| a >= b));
                prop_assert_eq!(grouped.dominated(v), scan);
                if !scan {
                    grouped.insert(v);
                    kept.push(v.to_vec());
                }
            }
        }
    }

    #[test]
    fn a_chain_deeper_than_one_bootstrap_is_infeasible() {
        let nodes = graph(5, &[(0, 0, 2, 0)], &[(1.0, 1.0)], false);
        let mut p = problem(&nodes, &[true], StatePolicy::Optimised);
        p.bootstrap_level = 1;
        p.max_level = 1;
        assert!(matches!(optimal(&p), Err(PlacementError::Infeasible(_))));
        assert!(exhaustive(&p).is_none());
    }
}
