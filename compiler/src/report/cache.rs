//! A decode plan's per-token latency as a function of the cache length, extrapolated from the
//! plan's own length.
//!
//! # The split
//!
//! A decode step depends on the cache length only through the work done per cache ciphertext:
//! the products with the cached keys and values (`qKᵀ`, `softmax·V`), the softmax over the
//! scores, the bootstraps of score ciphertexts and, in generation plans, the masked KV write
//! (see `lower::select::decode_product` for the kernel counts). Measured on the tiny Llama
//! generation plans at N16BootFull (2,048 slots, 16 tokens per ciphertext): extrapolated from
//! the 16-token context (cache length 15) to cache length 39, 3,073 s per token against 3,022 s
//! for the plan compiled at 40 tokens (+1.7%); from 39 down to 15, 1,939 s against 1,880 s
//! (+3.1%). The KV-cache layout
//! (`lower::select::kv_cache`) puts cache position `j` in ciphertext `⌊j/t⌋`, in the slots `s`
//! with `s mod t = j mod t` (`t` tokens per ciphertext). A forward pass over the instruction
//! stream tags every register:
//!
//! - *free*: does not depend on the cache (weights, the token's activations);
//! - *lane (c, r)*: slot `s` holds a value of cache position `c·t + (s + r) mod t` — a state
//!   `load` of part `c` starts at `r = 0`, a rotation by `k` adds `k` to `r`, an operation on
//!   operands of one lane (or of one lane and free or reduced values) stays in that lane;
//! - *reduced*: combines positions (operands of two different lanes): a sum over the cache, and
//!   everything computed from it alone (the softmax denominator, its reciprocal).
//!
//! In a generation plan, a product with the public write mask (`ir::kv_window`) is a *write*
//! value: the new key or value placed at every cache ciphertext, one per ciphertext. An
//! instruction whose result is in a lane or a write value, or that combines lanes of two
//! different cache ciphertexts (the `C − 1` additions across ciphertexts of a sum over the cache), is repeated
//! for every cache ciphertext: its latency is the *attention* part. Everything else — the
//! projections, norms and MLP, and the reductions' in-ciphertext steps and what follows them —
//! is the *fixed* part. The estimate at cache length `P` is then
//! `fixed + attention · C(P) / C(P₀)` with `C(P) = ⌈P/t⌉` cache ciphertexts per state and `P₀`
//! the plan's own length.
//!
//! # What it does not capture
//!
//! A plan compiled for another length places its bootstraps anew (the KV-aware placement
//! weighs the cache ciphertexts against the rest), so the compiled plan's latency differs from
//! the extrapolation by the bootstraps that moved; and the few cache-length terms that grow
//! with `log2 min(t, P)` (the doubling sum over the tokens of one ciphertext) are counted as
//! fixed. `compiler/tests/cache_cost.rs` measures the difference against compiled plans.

use cachemir_ir::layout::EMPTY;
use cachemir_ir::plan::{Instruction, Plaintext, Plan, TensorRef};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The cache lengths the report tabulates by default (with the plan's own).
pub const DEFAULT_CACHE_LENGTHS: [usize; 3] = [128, 512, 2048];

/// A decode plan's latency split into the part that grows with the cache length and the part
/// that does not, and the extrapolated latency at other cache lengths.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CacheScaling {
    /// Cache positions per ciphertext of the KV-cache layout (`t`).
    pub tokens_per_ciphertext: usize,
    /// Ciphertexts per KV-cache state at the plan's cache length, `⌈P₀/t⌉`.
    pub cache_ciphertexts: usize,
    /// Milliseconds per token that do not depend on the cache length.
    pub fixed_ms: f64,
    /// Milliseconds per token repeated for every cache ciphertext, at the plan's length.
    pub attention_ms: f64,
    /// The attention part per layer (`null`: outside layers, e.g. the KV writes), ascending.
    pub attention_by_layer: Vec<LayerAttention>,
    /// Estimated latency per token at each tabulated cache length, ascending.
    pub table: Vec<CachePoint>,
}

/// The attention part of one layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerAttention {
    pub layer: Option<u32>,
    pub attention_ms: f64,
}

/// The estimated latency at one cache length.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CachePoint {
    /// Past positions the cache holds.
    pub cache_length: usize,
    /// Ciphertexts per KV-cache state, `⌈cache_length / t⌉`.
    pub cache_ciphertexts: usize,
    /// `fixed_ms + attention_ms · cache_ciphertexts / CacheScaling::cache_ciphertexts`.
    pub latency_ms: f64,
    /// Whether this is the plan's own cache length (the latency is then the plan's total).
    pub compiled: bool,
}

/// Tag of a register in the forward pass (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tag {
    Free,
    Lane {
        part: u32,
        offset: usize,
    },
    /// Masked by the write mask of a generation plan: one value per cache ciphertext, not
    /// aligned to a lane.
    Write,
    Reduced,
}

impl CacheScaling {
    /// The split of `plan`'s latency (`latency_of(k)`: milliseconds of instruction `k`), or
    /// `None` when the plan has no KV-cache state in the token-interleaved cache layout.
    pub(crate) fn new(
        plan: &Plan,
        cache_length: usize,
        latency_of: impl Fn(usize) -> f64,
        layer_of: impl Fn(usize) -> Option<u32>,
    ) -> Option<Self> {
        let state_inputs: Vec<u32> = plan
            .states
            .iter()
            .filter_map(|s| plan.inputs.iter().position(|i| i.name == s.input))
            .map(|i| i as u32)
            .collect();
        // Every state of a plan shares one cache layout: the first is checked slot by slot.
        let first = &plan.inputs[*state_inputs.first()? as usize].layout;
        let t = tokens_per_ciphertext(&first.shape, first.slots, &first.map)?;
        let write_mask = plan
            .generation
            .as_ref()
            .map(|g| g.write_mask_input.as_str());
        let mut tags = vec![Tag::Free; plan.registers as usize];
        let (mut fixed_ms, mut attention_ms) = (0.0, 0.0);
        let mut by_layer: BTreeMap<Option<u32>, f64> = BTreeMap::new();
        for (k, instruction) in plan.instructions.iter().enumerate() {
            let (reads, writes) = instruction.registers();
            let (tag, across_ciphertexts) = match instruction {
                Instruction::Load { input, part, .. } if state_inputs.contains(&input.0) => (
                    Tag::Lane {
                        part: part.0,
                        offset: 0,
                    },
                    false,
                ),
                Instruction::Load { .. } => (Tag::Free, false),
                Instruction::MultiplyPlain { plaintext, .. }
                    if write_mask.is_some_and(|m| reads_public(plan, plaintext.0, m)) =>
                {
                    (Tag::Write, false)
                }
                Instruction::Rotate { step, .. } => {
                    (rotated(tags[reads[0] as usize], step.0, t), false)
                }
                Instruction::RotateHoisted { .. } => (tags[reads[0] as usize], false),
                _ => combine(reads.iter().map(|&r| tags[r as usize])),
            };
            match instruction {
                // Each result is the operand rotated by its own step.
                Instruction::RotateHoisted { dsts, steps, .. } => {
                    for (dst, step) in dsts.0.iter().zip(&steps.0) {
                        tags[*dst as usize] = rotated(tag, *step, t);
                    }
                }
                _ => {
                    for w in writes {
                        tags[w as usize] = tag;
                    }
                }
            }
            let ms = latency_of(k);
            if matches!(tag, Tag::Lane { .. } | Tag::Write) || across_ciphertexts {
                attention_ms += ms;
                *by_layer.entry(layer_of(k)).or_default() += ms;
            } else {
                fixed_ms += ms;
            }
        }
        let mut attention_by_layer: Vec<LayerAttention> = by_layer
            .into_iter()
            .map(|(layer, attention_ms)| LayerAttention {
                layer,
                attention_ms,
            })
            .collect();
        // Layers first, then the instructions outside layers (as the report's rows).
        attention_by_layer.sort_by_key(|l| (l.layer.is_none(), l.layer));
        let mut scaling = Self {
            tokens_per_ciphertext: t,
            cache_ciphertexts: cache_length.div_ceil(t).max(1),
            fixed_ms,
            attention_ms,
            attention_by_layer,
            table: Vec::new(),
        };
        scaling.tabulate(cache_length, &DEFAULT_CACHE_LENGTHS);
        Some(scaling)
    }

    /// Estimated milliseconds per token at `cache_length` past positions.
    pub fn latency_at(&self, cache_length: usize) -> f64 {
        let c = cache_length.div_ceil(self.tokens_per_ciphertext).max(1);
        self.fixed_ms + self.attention_ms * c as f64 / self.cache_ciphertexts as f64
    }

    /// Replaces the table by the estimates at `lengths` and at `own` (the plan's length),
    /// ascending, each length once.
    pub fn tabulate(&mut self, own: usize, lengths: &[usize]) {
        let mut all: Vec<usize> = lengths.iter().copied().chain([own]).collect();
        all.sort_unstable();
        all.dedup();
        self.table = all
            .into_iter()
            .map(|n| CachePoint {
                cache_length: n,
                cache_ciphertexts: n.div_ceil(self.tokens_per_ciphertext).max(1),
                latency_ms: self.latency_at(n),
                compiled: n == own,
            })
            .collect();
    }
}

/// The tag of `tag` rotated left by `step` slots.
fn rotated(tag: Tag, step: i32, t: usize) -> Tag {
    match tag {
        Tag::Lane { part, offset } => Tag::Lane {
            part,
            offset: (offset as i64 + i64::from(step)).rem_euclid(t as i64) as usize,
        },
        other => other,
    }
}

/// The tag of a result computed from operands tagged `tags`, and whether it combines lanes of
/// two different cache ciphertexts.
fn combine(tags: impl Iterator<Item = Tag>) -> (Tag, bool) {
    let mut lane: Option<Tag> = None;
    let (mut reduced, mut write, mut split, mut across) = (false, false, false, false);
    for tag in tags {
        match tag {
            Tag::Free => {}
            Tag::Reduced => reduced = true,
            Tag::Write => write = true,
            Tag::Lane { part, .. } => match lane {
                None => lane = Some(tag),
                Some(Tag::Lane { part: p, .. }) if Some(tag) != lane => {
                    split = true;
                    across |= p != part;
                }
                Some(_) => {}
            },
        }
    }
    let tag = match lane {
        Some(_) if split => Tag::Reduced,
        // A lane value scaled by a reduced one (e.g. scores by the reciprocal of their sum)
        // stays in its lane, as does the cache plus the masked new entry.
        Some(lane) => lane,
        None if write => Tag::Write,
        None if reduced => Tag::Reduced,
        None => Tag::Free,
    };
    (tag, across)
}

/// Whether plaintext `index` of `plan` reads the public input `name`.
fn reads_public(plan: &Plan, index: u32, name: &str) -> bool {
    matches!(
        plan.plaintexts.get(index as usize),
        Some(Plaintext::Gather { tensor: TensorRef::Public(n), .. }) if n == name
    )
}

/// Tokens per ciphertext `t` of a KV-cache state layout (`[batch, heads, positions, head_dim]`,
/// elements row-major in `map`): the largest power of two for which every position `j` sits in
/// ciphertext `⌊j/t⌋` at slots `s ≡ j (mod t)` (with few positions a smaller power of two fits
/// too); `None` for another layout.
fn tokens_per_ciphertext(shape: &[usize], slots: usize, map: &[Vec<u32>]) -> Option<usize> {
    let [_, _, positions, head_dim] = *shape else {
        return None;
    };
    if positions == 0 || head_dim == 0 {
        return None;
    }
    let fits = |t: usize| {
        map.iter().enumerate().all(|(c, ciphertext)| {
            ciphertext.iter().enumerate().all(|(s, &e)| {
                if e == EMPTY {
                    return true;
                }
                let j = (e as usize / head_dim) % positions;
                j / t == c && j % t == s % t
            })
        })
    };
    (0..=slots.trailing_zeros())
        .rev()
        .map(|b| 1usize << b)
        .find(|&t| fits(t))
}
