//! Peak live ciphertext memory: a register holds its ciphertext from the instruction that writes
//! it to its last read (a `free` counts as a read: the executor releases the register there; a
//! value never read lives at its write only). At each instruction its operands and its results
//! are live together. In a leveled plan each live ciphertext weighs
//! [`Parameters::ciphertext_bytes`](cachemir_ir::plan::Parameters::ciphertext_bytes) at the level
//! it was written at; an unleveled plan has no sizes, only the count.

use cachemir_ir::plan::Plan;
use cachemir_ir::plan::levels::LevelTrace;
use serde::{Deserialize, Serialize};

/// The peak of live ciphertexts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Memory {
    /// The most ciphertexts live at one instruction.
    pub peak_ciphertexts: usize,
    /// The most bytes of live ciphertexts at one instruction (leveled plans).
    pub peak_bytes: Option<u64>,
    /// The first instruction where the peak is reached (of bytes in a leveled plan, else of
    /// ciphertexts).
    pub peak_instruction: usize,
    /// That instruction's site.
    pub peak_site: String,
}

/// The peak memory of `plan` (levels from `levels` where leveled).
pub fn peak(plan: &Plan, levels: Option<&LevelTrace>) -> Memory {
    let n = plan.instructions.len();
    let parameters = plan.parameters.as_ref();
    let bytes_of = |k: usize| -> u64 {
        match (levels, parameters) {
            (Some(t), Some(p)) => t.states[k].map_or(0, |s| p.ciphertext_bytes(s.level)),
            _ => 0,
        }
    };
    // Open intervals per register: (written at, last read at).
    let mut open: Vec<Option<(usize, usize)>> = vec![None; plan.registers as usize];
    let mut count = vec![0i64; n + 1];
    let mut bytes = vec![0i128; n + 1];
    let mut close = |(start, end): (usize, usize)| {
        count[start] += 1;
        count[end + 1] -= 1;
        let b = i128::from(bytes_of(start));
        bytes[start] += b;
        bytes[end + 1] -= b;
    };
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let (reads, writes) = instruction.registers();
        for r in reads {
            if let Some(Some((_, end))) = open.get_mut(r as usize) {
                *end = k;
            }
        }
        for w in writes {
            if let Some(slot) = open.get_mut(w as usize) {
                if let Some(interval) = slot.take() {
                    close(interval);
                }
                *slot = Some((k, k));
            }
        }
    }
    for interval in open.into_iter().flatten() {
        close(interval);
    }
    let (mut live, mut live_bytes) = (0i64, 0i128);
    let (mut peak_count, mut peak_bytes) = ((0i64, 0usize), (0i128, 0usize));
    for k in 0..n {
        live += count[k];
        live_bytes += bytes[k];
        if live > peak_count.0 {
            peak_count = (live, k);
        }
        if live_bytes > peak_bytes.0 {
            peak_bytes = (live_bytes, k);
        }
    }
    let leveled = levels.is_some() && parameters.is_some();
    let peak_instruction = if leveled { peak_bytes.1 } else { peak_count.1 };
    Memory {
        peak_ciphertexts: peak_count.0 as usize,
        peak_bytes: leveled.then_some(peak_bytes.0 as u64),
        peak_instruction,
        peak_site: plan
            .instruction_sites
            .get(peak_instruction)
            .and_then(|&s| plan.sites.get(s as usize))
            .map_or_else(String::new, |s| s.name.clone()),
    }
}
