//! The plan report (`cachemirc report PLAN`): per layer and in total, what a plan costs under
//! CKKS — instruction counts, rotations and key switches, multiplications, multiplicative depth,
//! the level profile, every bootstrap, the rotation-key set and its bytes, plaintext-weight bytes,
//! peak ciphertext memory and the latency a [`CostModel`] estimates — and, for decode plans, the
//! cost of one token at the plan's cache length.
//!
//! Everything is computed statically from the plan (no execution): levels from
//! [`levels::trace`](cachemir_ir::plan::levels::trace), depth and liveness from the instruction
//! stream. [`PlanReport`] serialises to the JSON form `docs/report.md` documents (field order is
//! the struct order, maps are sorted); [`PlanReport::text`] is the human-readable form and
//! [`dot::dot`] the site-level dataflow graph.

pub mod cache;
pub mod depth;
pub mod dot;
pub mod keys;
pub mod memory;
pub mod tally;
pub mod text;

use cachemir_ir::plan::levels::{LevelError, LevelTrace, trace};
use cachemir_ir::plan::{CostModel, Instruction, Parameters, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub use cache::{CachePoint, CacheScaling, LayerAttention};
pub use keys::{KeySet, RelinearizationKey, RotationKey};
pub use memory::Memory;
pub use tally::Tally;

/// How the report treats what the plan does not say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReportOptions {
    /// The level every instruction of an unleveled plan (no parameters) is costed at.
    pub assumed_level: u32,
}

impl Default for ReportOptions {
    /// Level 0 (one limb): an unleveled plan's latency is then a lower bound.
    fn default() -> Self {
        Self { assumed_level: 0 }
    }
}

/// A plan that cannot be reported on: it breaks the level rules of its parameters.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{0}")]
    Levels(#[from] LevelError),
}

/// The report of one plan (see the module documentation and `docs/report.md`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlanReport {
    /// The plan's name.
    pub plan: String,
    /// Slots per ciphertext.
    pub slots: usize,
    /// The CKKS parameters of a leveled plan; `None` for an unleveled plan.
    pub parameters: Option<Parameters>,
    /// Instructions in the stream (a hoisted group counts once).
    pub instructions: usize,
    pub registers: u32,
    /// How latency was estimated.
    pub latency: LatencyBasis,
    /// One entry per layer in ascending order, then the instructions outside layers
    /// (`layer: null`: embedding, head, output gathers), where there are any.
    pub layers: Vec<LayerReport>,
    /// The whole plan (`layer: null`).
    pub total: LayerReport,
    /// Every `boot` instruction, in stream order.
    pub bootstraps: Vec<BootstrapReport>,
    pub keys: KeySet,
    pub weights: Weights,
    pub memory: Memory,
    /// For decode plans (plans with KV-cache states): the cost of one token.
    pub decode: Option<Decode>,
    /// Anything the reader should know about the estimate (e.g. a cost model for another ring
    /// degree).
    pub warnings: Vec<String>,
}

/// The basis of the latency estimate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LatencyBasis {
    /// The cost model's `source` line.
    pub cost_model: String,
    /// log2 N the cost model was measured for.
    pub cost_model_log_n: u32,
    /// `None` for a leveled plan (each instruction at its operating level); for an unleveled plan
    /// the level every instruction was costed at.
    pub assumed_level: Option<u32>,
}

/// Counts, depth, levels and latency of one layer (or of the whole plan).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerReport {
    /// The layer (`Site::layer`); `None` outside layers, and for the total.
    pub layer: Option<u32>,
    #[serde(flatten)]
    pub tally: Tally,
    /// Multiplicative depth within this group: the most depth-consuming instructions on a path
    /// through its own instructions (values from elsewhere start at 0).
    pub depth: u32,
    /// The largest depth since a load or a bootstrap of any value this group writes.
    pub cumulative_depth: u32,
    /// Instructions and milliseconds per operating level, highest level first (leveled plans
    /// only).
    pub level_profile: Option<Vec<LevelCount>>,
}

/// Instructions at one operating level.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LevelCount {
    pub level: u32,
    /// Instructions in the stream at this level (a hoisted group counts once).
    pub instructions: usize,
    pub latency_ms: f64,
}

/// One bootstrap.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BootstrapReport {
    /// Index of the `boot` instruction.
    pub instruction: usize,
    pub site: String,
    pub layer: Option<u32>,
    /// Slots the bootstrapped ciphertext uses.
    pub slots: u32,
    /// The calibrated range `[low, high]` of the bootstrapped value, where a range check covers
    /// its site.
    pub input_range: Option<[f64; 2]>,
    /// The level of the input (leveled plans).
    pub input_level: Option<u32>,
    /// The level the bootstrap returns.
    pub output_level: u32,
    /// `output_level − input_level` (leveled plans).
    pub levels_restored: Option<u32>,
    pub latency_ms: f64,
}

/// Plaintext weights.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Weights {
    /// Weight tensors the plaintexts read.
    pub tensors: usize,
    /// Their elements.
    pub elements: u64,
    /// Their bytes as f32 (4 per element), as stored in the weights file.
    pub bytes: u64,
    /// Entries of the plan's plaintext table (each encoded when an instruction uses it).
    pub plaintexts: usize,
}

/// The cost of one decode step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decode {
    /// KV-cache state pairs.
    pub states: usize,
    /// Past positions the cache holds when this step runs (the state inputs' sequence length).
    pub cache_length: usize,
    /// Ciphertexts of all state inputs.
    pub state_ciphertexts: usize,
    /// Their bytes at their stored levels (leveled plans).
    pub state_bytes: Option<u64>,
    /// Estimated latency of one token at `cache_length`.
    pub latency_ms_per_token: f64,
    /// The latency split into its fixed and cache-length-dependent parts, and extrapolated to
    /// other cache lengths ([`cache`]); `None` when the states are not in the token-interleaved
    /// KV-cache layout.
    pub cache_scaling: Option<CacheScaling>,
}

impl PlanReport {
    /// The report of `plan` with latency from `cost`.
    ///
    /// # Errors
    /// A leveled plan that breaks its level rules.
    pub fn new(
        plan: &Plan,
        cost: &CostModel,
        options: &ReportOptions,
    ) -> Result<Self, ReportError> {
        let levels = trace(plan)?;
        let parameters = plan.parameters.as_ref();
        let leveled = levels.is_some();
        let level_at = |k: usize| operating_level(levels.as_ref(), k, options);
        let latency_of = |k: usize| instruction_latency(cost, &plan.instructions[k], level_at(k));
        let depths = depth::depths(plan);

        // Per layer and in total: counts, latency, levels.
        let mut groups: BTreeMap<Group, LayerReport> = BTreeMap::new();
        let mut total = LayerReport::empty(None, leveled);
        for (k, instruction) in plan.instructions.iter().enumerate() {
            let layer = layer_of(plan, k);
            let ms = latency_of(k);
            let level = levels.as_ref().map(|_| level_at(k));
            for group in [
                groups
                    .entry(Group(layer))
                    .or_insert_with(|| LayerReport::empty(layer, leveled)),
                &mut total,
            ] {
                group.tally.add(instruction, ms);
                if let Some(level) = level {
                    group.profile_add(level, ms);
                }
            }
        }
        for (group, report) in &mut groups {
            report.depth = depths.local.get(&group.0).copied().unwrap_or(0);
            report.cumulative_depth = depths.cumulative.get(&group.0).copied().unwrap_or(0);
        }
        total.depth = depths.total;
        total.cumulative_depth = depths.total;

        let bootstraps = plan
            .instructions
            .iter()
            .enumerate()
            .filter_map(|(k, instruction)| match instruction {
                Instruction::Bootstrap {
                    a, slots, level, ..
                } => {
                    let input_level = levels.as_ref().map(|_| level_at(k));
                    Some(BootstrapReport {
                        instruction: k,
                        site: site_name(plan, k),
                        layer: layer_of(plan, k),
                        slots: slots.0,
                        input_range: input_range(plan, k, a.0),
                        input_level,
                        output_level: level.0,
                        levels_restored: input_level.map(|l| level.0.saturating_sub(l)),
                        latency_ms: latency_of(k),
                    })
                }
                _ => None,
            })
            .collect();

        let weight_elements: u64 = plan
            .weight_shapes
            .values()
            .map(|s| s.iter().product::<usize>() as u64)
            .sum();
        let weights = Weights {
            tensors: plan.weight_shapes.len(),
            elements: weight_elements,
            bytes: weight_elements * 4,
            plaintexts: plan.plaintexts.len(),
        };

        let decode = decode(plan, parameters, total.tally.latency_ms).map(|mut d| {
            d.cache_scaling =
                CacheScaling::new(plan, d.cache_length, latency_of, |k| layer_of(plan, k));
            d
        });
        let mut warnings = Vec::new();
        match parameters {
            Some(p) if p.log_n != cost.log_n => warnings.push(format!(
                "the cost model is for N = 2^{}, the plan's parameters for N = 2^{}: latencies \
                 are off by about the ratio of ring degrees",
                cost.log_n, p.log_n
            )),
            None => warnings.push(format!(
                "unleveled plan (no parameters): every instruction costed at level {}, no \
                 rescales or bootstraps, so the latency is a lower bound; no key or ciphertext \
                 bytes",
                options.assumed_level
            )),
            Some(_) => {}
        }

        Ok(Self {
            plan: plan.name.clone(),
            slots: plan.slots,
            parameters: parameters.cloned(),
            instructions: plan.instructions.len(),
            registers: plan.registers,
            latency: LatencyBasis {
                cost_model: cost.source.clone(),
                cost_model_log_n: cost.log_n,
                assumed_level: (!leveled).then_some(options.assumed_level),
            },
            layers: groups.into_values().collect(),
            total,
            bootstraps,
            keys: keys::key_set(plan, levels.as_ref()),
            weights,
            memory: memory::peak(plan, levels.as_ref()),
            decode,
            warnings,
        })
    }

    /// Tabulates the decode latency at `cache_lengths` (and the plan's own) instead of
    /// [`cache::DEFAULT_CACHE_LENGTHS`]; nothing for a plan without a cache scaling.
    pub fn set_cache_lengths(&mut self, cache_lengths: &[usize]) {
        if let Some(d) = &mut self.decode
            && let Some(scaling) = &mut d.cache_scaling
        {
            scaling.tabulate(d.cache_length, cache_lengths);
        }
    }

    /// The JSON form (`docs/report.md`), pretty-printed.
    pub fn json(&self) -> String {
        serde_json::to_string_pretty(self).expect("a report serialises")
    }
}

impl LayerReport {
    fn empty(layer: Option<u32>, leveled: bool) -> Self {
        Self {
            layer,
            tally: Tally::default(),
            depth: 0,
            cumulative_depth: 0,
            level_profile: leveled.then(Vec::new),
        }
    }

    fn profile_add(&mut self, level: u32, ms: f64) {
        let Some(profile) = &mut self.level_profile else {
            return;
        };
        // Highest level first.
        match profile.binary_search_by(|c| level.cmp(&c.level)) {
            Ok(i) => {
                profile[i].instructions += 1;
                profile[i].latency_ms += ms;
            }
            Err(i) => profile.insert(
                i,
                LevelCount {
                    level,
                    instructions: 1,
                    latency_ms: ms,
                },
            ),
        }
    }
}

/// A layer, ordered with the layers first and the instructions outside layers last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Group(Option<u32>);

impl Ord for Group {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        match (self.0, other.0) {
            (Some(a), Some(b)) => a.cmp(&b),
            (Some(_), None) => std::cmp::Ordering::Less,
            (None, Some(_)) => std::cmp::Ordering::Greater,
            (None, None) => std::cmp::Ordering::Equal,
        }
    }
}

impl PartialOrd for Group {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// The layer of instruction `k`'s site.
pub(crate) fn layer_of(plan: &Plan, k: usize) -> Option<u32> {
    plan.instruction_sites
        .get(k)
        .and_then(|&s| plan.sites.get(s as usize))
        .and_then(|s| s.layer)
}

fn site_name(plan: &Plan, k: usize) -> String {
    plan.instruction_sites
        .get(k)
        .and_then(|&s| plan.sites.get(s as usize))
        .map_or_else(String::new, |s| s.name.clone())
}

/// The level instruction `k` runs at: its operating level in a leveled plan (a `load`'s: the
/// level it loads at), the assumed level otherwise.
fn operating_level(levels: Option<&LevelTrace>, k: usize, options: &ReportOptions) -> u32 {
    match levels {
        Some(t) => t.operating[k]
            .or_else(|| t.states[k].map(|s| s.level))
            .unwrap_or(0),
        None => options.assumed_level,
    }
}

/// Milliseconds of one instruction at `level`: hoisted groups by [`CostModel::hoisted`],
/// bootstraps by [`CostModel::bootstrap`], the rest by [`CostModel::instruction`].
pub fn instruction_latency(cost: &CostModel, instruction: &Instruction, level: u32) -> f64 {
    match instruction {
        Instruction::RotateHoisted { steps, .. } => cost.hoisted(steps.0.len(), level),
        Instruction::Bootstrap { slots, .. } => cost.bootstrap(slots.0 as usize),
        other => cost.instruction(other.mnemonic(), level),
    }
}

/// The calibrated range of register `register` read by the `boot` at instruction `k`: the last
/// range check on that register before `k`, else the hull of the checks at the same site.
fn input_range(plan: &Plan, k: usize, register: u32) -> Option<[f64; 2]> {
    let site = *plan.instruction_sites.get(k)?;
    let on_register = plan
        .checks
        .iter()
        .filter(|c| c.register == register && (c.after as usize) < k)
        .max_by_key(|c| c.after);
    if let Some(c) = on_register {
        return Some([c.low, c.high]);
    }
    plan.checks
        .iter()
        .filter(|c| c.site == site)
        .map(|c| [c.low, c.high])
        .reduce(|a, b| [a[0].min(b[0]), a[1].max(b[1])])
}

/// The decode-step summary of a plan with KV-cache states.
fn decode(plan: &Plan, parameters: Option<&Parameters>, latency_ms: f64) -> Option<Decode> {
    if plan.states.is_empty() {
        return None;
    }
    let input = |name: &str| plan.inputs.iter().find(|c| c.name == name);
    let output = |name: &str| plan.outputs.iter().find(|c| c.name == name);
    let mut cache_length = 0;
    let mut state_ciphertexts = 0;
    let mut state_bytes = parameters.map(|_| 0u64);
    for state in &plan.states {
        let Some(past) = input(&state.input) else {
            continue;
        };
        let present = output(&state.output).map(|o| o.layout.shape.as_slice());
        cache_length = cache_length.max(sequence_length(&past.layout.shape, present));
        let parts = past.layout.ciphertexts();
        state_ciphertexts += parts;
        if let (Some(bytes), Some(p)) = (&mut state_bytes, parameters) {
            *bytes += parts as u64 * p.ciphertext_bytes(past.level.unwrap_or(p.max_level));
        }
    }
    Some(Decode {
        states: plan.states.len(),
        cache_length,
        state_ciphertexts,
        state_bytes,
        latency_ms_per_token: latency_ms,
        cache_scaling: None,
    })
}

/// The cache length of a state input of shape `past`: its length along the axis where the state
/// output (`present`) is longer, else along the second-to-last axis (`[batch, heads, sequence,
/// head_dim]`).
fn sequence_length(past: &[usize], present: Option<&[usize]>) -> usize {
    if let Some(present) = present
        && present.len() == past.len()
        && let Some(axis) = (0..past.len()).find(|&i| present[i] > past[i])
    {
        return past[axis];
    }
    match past.len() {
        0 => 0,
        1 => past[0],
        n => past[n - 2],
    }
}
