//! Parameter selection (`cachemirc compile --params auto`): from what a plan needs — slots,
//! multiplicative depth, whether it needs bootstrapping at all, rotation-key memory — the
//! 128-bit CKKS set to level it for.
//!
//! - **Depth** is the smallest top level at which the placement finds levels for every value
//!   without a bootstrap, KV-cache storage levels included ([`leveled_depth`]): the longest
//!   path of rescales from an encryption to an output when the plan has no cache, more when a
//!   cache entry must be stored at a level every later step can read it at, and `None` when no
//!   chain suffices (a cache that loses a level per step, or a depth beyond `max_level`).
//! - A program that fits a **leveled** chain gets the smallest ring degree N (then the smallest
//!   dnum, the smallest keys) whose chain passes the HE-standard 128-bit bound on log2(QP)
//!   (Albrecht et al., 2018, via `cachemir_ckks::params::security`): q_0 of 60 bits (15 bits of
//!   headroom over Δ = 2^45), one 45-bit prime per level, and α = ⌈(L + 1)/dnum⌉ special primes
//!   of 60 bits (each at least the 45-bit limb it covers, as in `N16BootFull`), with the
//!   rotation keys at the top level within the key budget. The primes are generated and the
//!   bound checked by the CKKS crate ([`CkksParameters::generate`], `check_security`).
//! - Anything deeper gets the bootstrappable set `N16BootFull`.
//!
//! What runs: the `sim` backend runs a leveled plan, but the `cpu` backend builds only the named
//! bootstrappable sets (`CpuParameters::new` resolves `BootParamSet` by name and requires their
//! bootstrap level), so [`select`] takes a leveled set only when asked to
//! ([`Selection::leveled`] always reports the one that fits).

use super::placement::{self, Problem, StatePolicy};
use super::sites::{Role, SiteNode, site_graph};
use super::{LevelPassError, params};
use cachemir_ckks::params::{ChainSpec, CkksParameters, SecretDistribution};
use cachemir_ir::plan::{CostModel, Parameters, Plan};

/// Bits of q_0 and of each special prime of a generated chain.
const FIRST_BITS: u32 = 60;
const SPECIAL_BITS: u32 = 60;
/// Δ = 2^45, each level's prime.
const LOG_SCALE: u32 = 45;
/// The largest ring degree tried for a leveled set: beyond 2^16, bootstrapping at 2^16 keeps
/// ciphertexts 2 to 4 times smaller.
const MAX_LEVELED_LOG_N: u32 = 16;
/// The bootstrappable set taken when no leveled one fits.
const BOOTSTRAPPABLE: &str = "N16BootFull";

/// What a plan needs from its parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// Slots per ciphertext (N/2 at least).
    pub slots: usize,
    /// Levels a chain without bootstrapping needs (see the module docs); `None`: none suffices
    /// up to the largest leveled chain at N = 2^16.
    pub depth: Option<u32>,
    /// Rotation keys (distinct rotation steps) plus the relinearization key.
    pub switching_keys: usize,
}

/// A generated leveled set and its security margin.
#[derive(Debug, Clone, PartialEq)]
pub struct LeveledSet {
    pub parameters: Parameters,
    /// log2(QP) of the generated primes, bits.
    pub log_qp: f64,
    /// The 128-bit bound at this N, bits.
    pub bound: u32,
    /// Bytes of the switching keys at the top level.
    pub key_bytes: u64,
}

/// The chosen set and why.
#[derive(Debug, Clone)]
pub struct Selection {
    pub parameters: Parameters,
    pub needs: Needs,
    /// The smallest leveled set the plan fits, whether chosen or not.
    pub leveled: Option<LeveledSet>,
    /// One sentence: which set and why.
    pub reason: String,
}

/// Selection errors.
#[derive(Debug, thiserror::Error)]
pub enum SelectError {
    #[error(transparent)]
    Levels(#[from] LevelPassError),
    #[error("the plan uses {0} slots; the bootstrappable set holds at most 32768 (N = 2^16)")]
    TooManySlots(usize),
}

/// The smallest top level at which every value of `plan` gets a level with no bootstrap
/// (KV-cache storage levels chosen by the placement), if one ≤ `max_level` does.
///
/// # Errors
/// [`LevelPassError::Sites`] for a plan that is already leveled.
pub fn leveled_depth(
    plan: &Plan,
    cost: &CostModel,
    max_level: u32,
) -> Result<Option<u32>, LevelPassError> {
    let nodes = site_graph(plan, cost)?;
    let feasible = |level: u32| {
        let problem = Problem {
            nodes: &nodes,
            max_level: level,
            bootstrap_level: 0,
            bootstrap_scaling: vec![None; nodes.len()],
            bootstrap_ms: vec![0.0; nodes.len()],
            states: StatePolicy::Optimised,
            max_states: 4096,
        };
        placement::optimal(&problem).is_ok() || placement::greedy(&problem).is_ok()
    };
    let longest = longest_path(&nodes);
    if longest > max_level || !feasible(max_level) {
        return Ok(None);
    }
    // Feasibility is monotone in the top level: a placement at L is one at L + 1 shifted up.
    let (mut low, mut high) = (longest, max_level);
    while low < high {
        let middle = low + (high - low) / 2;
        if feasible(middle) {
            high = middle;
        } else {
            low = middle + 1;
        }
    }
    Ok(Some(low))
}

/// Levels on the longest path from a source to a sink (a lower bound on the depth).
fn longest_path(nodes: &[SiteNode]) -> u32 {
    let mut down = vec![0u32; nodes.len()];
    for (v, node) in nodes.iter().enumerate() {
        down[v] = node
            .preds
            .iter()
            .map(|&(p, d)| down[p] + d)
            .max()
            .unwrap_or(0);
    }
    nodes
        .iter()
        .zip(&down)
        .filter(|(n, _)| matches!(n.role, Role::Sink { .. }))
        .map(|(_, &d)| d)
        .max()
        .unwrap_or(0)
}

/// The description of a generated leveled chain: N = 2^`log_n`, top level `depth`, `dnum`
/// digits (named e.g. `LeveledN14L7D8`).
pub fn leveled_parameters(log_n: u32, depth: u32, dnum: u32) -> Parameters {
    Parameters {
        name: format!("LeveledN{log_n}L{depth}D{dnum}"),
        log_n,
        log_scale: LOG_SCALE,
        max_level: depth,
        bootstrap_level: None,
        special_primes: (depth + 1).div_ceil(dnum),
        dnum,
        toy: false,
    }
}

/// Generates `p`'s primes (the chain of [`leveled_parameters`]) and checks 128-bit security.
///
/// # Errors
/// The CKKS crate's message: invalid parameters, or log2(QP) above the bound.
pub fn generate(p: &Parameters) -> Result<CkksParameters, String> {
    let chain = ChainSpec {
        first_bits: FIRST_BITS,
        level_bits: vec![p.log_scale; p.max_level as usize],
        special_bits: vec![SPECIAL_BITS; p.special_primes as usize],
    };
    let generated = CkksParameters::generate(
        &p.name,
        p.log_n,
        &chain,
        p.dnum as usize,
        p.log_scale,
        SecretDistribution::UniformTernary,
    )
    .map_err(|e| e.to_string())?;
    generated.check_security().map_err(|e| e.to_string())?;
    Ok(generated)
}

/// The 128-bit log2(QP) bound at N = 2^`log_n` (uniform ternary secret).
fn bound(log_n: u32) -> Option<u32> {
    cachemir_ckks::params::security::max_log_qp(log_n, SecretDistribution::UniformTernary).ok()
}

/// The smallest leveled set (smallest N, then smallest dnum) with `slots` slots and `depth`
/// levels whose generated chain passes the 128-bit check and whose `switching_keys` keys fit
/// `key_budget_bytes`.
pub fn smallest_leveled_set(
    slots: usize,
    depth: u32,
    switching_keys: usize,
    key_budget_bytes: u64,
) -> Option<LeveledSet> {
    let min_log_n = (slots.max(1).next_power_of_two().trailing_zeros() + 1).max(10);
    for log_n in min_log_n..=MAX_LEVELED_LOG_N {
        let bound = bound(log_n)?;
        for dnum in 1..=depth + 1 {
            let p = leveled_parameters(log_n, depth, dnum);
            let estimate = FIRST_BITS + LOG_SCALE * depth + SPECIAL_BITS * p.special_primes;
            let key_bytes = p.switching_key_bytes(depth) * switching_keys as u64;
            if estimate > bound + 1 || key_bytes > key_budget_bytes || p.special_primes > 16 {
                continue;
            }
            if let Ok(generated) = generate(&p) {
                return Some(LeveledSet {
                    parameters: p,
                    log_qp: generated.log_qp(),
                    bound,
                    key_bytes,
                });
            }
        }
    }
    None
}

/// The deepest chain a leveled set can have at N = 2^16 (α = 1, one special prime).
fn deepest_leveled_chain() -> u32 {
    let bound = bound(MAX_LEVELED_LOG_N).unwrap_or(0);
    bound.saturating_sub(FIRST_BITS + SPECIAL_BITS) / LOG_SCALE
}

/// What `plan` needs ([`Needs`]), its leveled depth measured with `cost`'s site graph.
///
/// # Errors
/// As [`leveled_depth`].
pub fn needs(plan: &Plan, cost: &CostModel) -> Result<Needs, LevelPassError> {
    Ok(Needs {
        slots: plan.slots,
        depth: leveled_depth(plan, cost, deepest_leveled_chain())?,
        switching_keys: plan.rotations.len() + 1,
    })
}

/// Selects the parameters for `plan` (see the module docs): the smallest 128-bit leveled set
/// when `leveled_runs` and one fits, else the bootstrappable set.
///
/// # Errors
/// [`SelectError::TooManySlots`] beyond N = 2^16, or a plan that is already leveled.
pub fn select(
    plan: &Plan,
    cost: &CostModel,
    key_budget_bytes: u64,
    leveled_runs: bool,
) -> Result<Selection, SelectError> {
    let needs = needs(plan, cost)?;
    let leveled = needs.depth.and_then(|depth| {
        smallest_leveled_set(needs.slots, depth, needs.switching_keys, key_budget_bytes)
    });
    let bootstrappable = params::by_name(BOOTSTRAPPABLE).expect("a named set");
    if plan.slots > 1usize << (bootstrappable.log_n - 1) {
        return Err(SelectError::TooManySlots(plan.slots));
    }
    let (parameters, reason) = match (&leveled, leveled_runs) {
        (Some(l), true) => (
            l.parameters.clone(),
            format!(
                "depth {} fits a leveled chain: the smallest 128-bit one is N = 2^{} with {} \
                 levels, dnum {} (log2 QP {:.0} ≤ {}), no bootstrapping",
                l.parameters.max_level,
                l.parameters.log_n,
                l.parameters.max_level,
                l.parameters.dnum,
                l.log_qp,
                l.bound
            ),
        ),
        (Some(l), false) => (
            bootstrappable.clone(),
            format!(
                "depth {} would fit the leveled set {} (N = 2^{}, log2 QP {:.0} ≤ {}, no \
                 bootstrapping), but the cpu backend builds only the named bootstrappable sets; \
                 {BOOTSTRAPPABLE} runs everywhere",
                l.parameters.max_level, l.parameters.name, l.parameters.log_n, l.log_qp, l.bound
            ),
        ),
        (None, _) => (
            bootstrappable.clone(),
            match needs.depth {
                Some(depth) => format!(
                    "depth {depth} fits no leveled 128-bit set within the key budget: \
                     bootstrapping ({BOOTSTRAPPABLE})"
                ),
                None => format!(
                    "no leveled chain of at most {} levels (the deepest 128-bit one at N = \
                     2^{MAX_LEVELED_LOG_N}) suffices: bootstrapping ({BOOTSTRAPPABLE})",
                    deepest_leveled_chain()
                ),
            },
        ),
    };
    Ok(Selection {
        parameters,
        needs,
        leveled,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::{LowerOptions, lower};
    use cachemir_ir::{
        BinaryOp, DType, Graph, InputRole, Op, OutputRole, Secrecy, SourceLocation, TensorType,
    };

    /// `x^(2^depth)` by `depth` ct-ct squarings of an encrypted `[1, 8]` input: `depth` levels.
    fn squarings(depth: usize) -> Plan {
        let here = || SourceLocation::Synthetic("test".into());
        let mut g = Graph::new("squarings");
        let mut y = g.add_input(
            "x",
            TensorType::new(DType::F64, vec![1, 8], Secrecy::Encrypted),
            InputRole::Input,
            here(),
        );
        for i in 0..depth {
            y = g
                .add_node(
                    Op::Binary(BinaryOp::Mul),
                    &[y, y],
                    vec![format!("y{i}")],
                    here(),
                )
                .unwrap()[0];
        }
        g.add_output("y", y, OutputRole::Output);
        let options = LowerOptions {
            slots: 16,
            period: None,
            weights_file: "w.safetensors".into(),
        };
        lower(&g, &options).unwrap().plan
    }

    fn selected(depth: usize) -> Selection {
        select(&squarings(depth), &CostModel::default_cpu(), u64::MAX, true).unwrap()
    }

    #[test]
    fn a_shallow_program_gets_the_smallest_leveled_ring() {
        let cost = CostModel::default_cpu();
        for depth in [1, 3, 7] {
            let plan = squarings(depth);
            assert_eq!(
                leveled_depth(&plan, &cost, 40).unwrap(),
                Some(depth as u32),
                "depth {depth}"
            );
        }
        // log2 QP = 60 + 45·L + 60·⌈(L + 1)/dnum⌉ against 218 (N = 2^13), 438 (2^14),
        // 881 (2^15): L = 2 fits 2^13 with dnum 3 (210 bits); L = 3 needs 2^14, where dnum 1
        // fits (435); L = 7 fits 2^14 only with dnum 8 (435); L = 8 needs 2^15 and dnum 2 (720).
        for (depth, log_n, dnum) in [(2, 13, 3), (3, 14, 1), (7, 14, 8), (8, 15, 2)] {
            let s = selected(depth);
            let p = &s.parameters;
            assert_eq!(
                (p.log_n, p.max_level, p.dnum, p.bootstrap_level),
                (log_n, depth as u32, dnum, None),
                "depth {depth}: {}",
                s.reason
            );
            let leveled = s.leveled.as_ref().unwrap();
            assert!(leveled.log_qp <= f64::from(leveled.bound), "{leveled:?}");
            assert_eq!(s.needs.depth, Some(depth as u32));
        }
        // The leveled plan levels and passes the level check (what `sim` enforces).
        let plan = squarings(3);
        let s = select(&plan, &CostModel::default_cpu(), u64::MAX, true).unwrap();
        let leveled = super::super::assign_levels(
            &plan,
            &|_| None,
            &super::super::LevelOptions::new(s.parameters.clone()),
        )
        .unwrap();
        assert_eq!(leveled.bootstrapped_ciphertexts, 0);
    }

    #[test]
    fn a_depth_beyond_the_largest_leveled_chain_bootstraps() {
        // 1747 bits at N = 2^16: at most (1747 − 120)/45 = 36 levels.
        assert_eq!(deepest_leveled_chain(), 36);
        let s = selected(37);
        assert_eq!(s.needs.depth, None);
        assert!(s.leveled.is_none());
        assert_eq!(s.parameters.name, "N16BootFull");
        assert!(
            s.reason.contains("no leveled chain of at most 36 levels"),
            "{}",
            s.reason
        );
        // A leveled set that fits but does not run on the cpu backend is reported, not taken.
        let s = select(&squarings(3), &CostModel::default_cpu(), u64::MAX, false).unwrap();
        assert_eq!(s.parameters.name, "N16BootFull");
        assert_eq!(s.leveled.unwrap().parameters.name, "LeveledN14L3D1");
        // The key budget counts: two 2 MB keys (dnum 1, 8 limbs, N = 2^14) do not fit in 1 MB.
        assert!(smallest_leveled_set(16, 3, 2, 1 << 20).is_none());
    }
}
