//! Multiplicative depth from the instruction stream.
//!
//! The depth of a value is the largest number of depth-consuming instructions on any path to it
//! since a `load` or a `boot` (both give depth 0). In a leveled plan the depth-consuming
//! instruction is `rescale` (each one spends a level); in an unleveled plan, which has no
//! rescales, it is every multiplication (`mul`, `mul.p`, `mul.s`), as the `sim` backend counts
//! it. Registers may be rewritten; each write gets the depth computed at that point.

use super::layer_of;
use cachemir_ir::plan::{Instruction, Plan};
use std::collections::HashMap;

/// Depths of a plan, per layer and overall.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Depths {
    /// Per layer (`None`: outside layers): the depth of paths through the layer's own
    /// instructions, values written elsewhere starting at 0.
    pub local: HashMap<Option<u32>, u32>,
    /// Per layer: the largest depth (since a load or a bootstrap) of a value the layer writes.
    pub cumulative: HashMap<Option<u32>, u32>,
    /// The largest depth of any value.
    pub total: u32,
}

/// Whether `instruction` consumes one level of depth (see the module documentation).
pub fn consumes_depth(instruction: &Instruction, leveled: bool) -> bool {
    if leveled {
        matches!(instruction, Instruction::Rescale { .. })
    } else {
        matches!(
            instruction,
            Instruction::Multiply { .. }
                | Instruction::MultiplyNoRelinearize { .. }
                | Instruction::MultiplyPlain { .. }
                | Instruction::MultiplyScalar { .. }
        )
    }
}

/// The depths of every layer of `plan`.
pub fn depths(plan: &Plan) -> Depths {
    let leveled = plan.parameters.is_some();
    let n = plan.registers as usize;
    let mut global = vec![0u32; n];
    let mut local = vec![0u32; n];
    let mut writer: Vec<Option<Option<u32>>> = vec![None; n];
    let mut result = Depths::default();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let (reads, writes) = instruction.registers();
        if writes.is_empty() {
            continue;
        }
        let layer = layer_of(plan, k);
        let fresh = matches!(
            instruction,
            Instruction::Load { .. } | Instruction::Bootstrap { .. }
        );
        let step = u32::from(consumes_depth(instruction, leveled));
        let (g, l) = if fresh {
            (0, 0)
        } else {
            let g = reads.iter().map(|&r| global[r as usize]).max().unwrap_or(0);
            let l = reads
                .iter()
                .filter(|&&r| writer[r as usize] == Some(layer))
                .map(|&r| local[r as usize])
                .max()
                .unwrap_or(0);
            (g + step, l + step)
        };
        for w in writes {
            let w = w as usize;
            global[w] = g;
            local[w] = l;
            writer[w] = Some(layer);
        }
        let entry = result.local.entry(layer).or_insert(0);
        *entry = (*entry).max(l);
        let entry = result.cumulative.entry(layer).or_insert(0);
        *entry = (*entry).max(g);
        result.total = result.total.max(g);
    }
    result
}
