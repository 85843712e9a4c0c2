//! Common-subexpression elimination on a lowered plan: an instruction that repeats an earlier
//! one on the same operand values (same opcode, sources, plaintext, step, scalar …) is dropped
//! and its results read from the earlier instruction's registers. The gathers of a broadcast
//! (a KV-cache write replicating the new entry across the cache slots) emit the same masked
//! product once per destination run; one is enough. Applied to generation plans
//! (`cachemirc compile --generation`), whose cache writes are such broadcasts (44,365 → 5,453
//! instructions for the tiny Llama at a 40-token context); the per-kernel count formulas of the
//! decode-step tests describe the lowering before it.
//!
//! Plans whose registers are written more than once are returned unchanged. Loads, stores and
//! frees are kept. Registers are then numbered again in order of first write,
//! so a plan declares exactly the registers it writes; range checks follow their values and
//! instruction sites their instructions.

use cachemir_ir::plan::{Instruction, Plan, Register};
use std::collections::HashMap;

/// `plan` without repeated instructions (see the module documentation) and how many were
/// dropped.
pub fn dedupe(plan: &Plan) -> (Plan, usize) {
    // Aliases are sound when every register is written once, as the lowering writes them.
    let mut written = std::collections::HashSet::new();
    let single_assignment = plan
        .instructions
        .iter()
        .flat_map(|i| i.registers().1)
        .all(|w| written.insert(w));
    if !single_assignment {
        return (plan.clone(), 0);
    }
    let mut alias: HashMap<Register, Register> = HashMap::new();
    let mut seen: HashMap<String, Vec<Register>> = HashMap::new();
    let mut kept: Vec<Instruction> = Vec::with_capacity(plan.instructions.len());
    let mut sites = Vec::with_capacity(plan.instructions.len());
    // New index of each old instruction (a dropped one: the instruction it repeats).
    let mut position: Vec<usize> = Vec::with_capacity(plan.instructions.len());
    let mut writer: HashMap<Register, usize> = HashMap::new();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let mut instruction = instruction.clone();
        instruction.rename_registers(&mut |r| *alias.get(&r).unwrap_or(&r), &mut |r| r);
        let (_, writes) = instruction.registers();
        let pure = !writes.is_empty()
            && !matches!(
                instruction,
                Instruction::Load { .. } | Instruction::Store { .. } | Instruction::Free { .. }
            );
        if pure {
            let mut shape = instruction.clone();
            shape.rename_registers(&mut |r| r, &mut |_| Register::MAX);
            let key = shape.to_string();
            if let Some(earlier) = seen.get(&key) {
                for (w, e) in writes.iter().zip(earlier) {
                    alias.insert(*w, *e);
                }
                position.push(writer[&earlier[0]]);
                continue;
            }
            seen.insert(key, writes.clone());
        }
        for w in &writes {
            writer.insert(*w, kept.len());
        }
        position.push(kept.len());
        kept.push(instruction);
        sites.push(plan.instruction_sites[k]);
    }
    let dropped = plan.instructions.len() - kept.len();
    // Dense register numbers in order of first write.
    let mut number: HashMap<Register, Register> = HashMap::new();
    for instruction in &kept {
        for w in instruction.registers().1 {
            let next = number.len() as Register;
            number.entry(w).or_insert(next);
        }
    }
    for instruction in &mut kept {
        instruction.rename_registers(&mut |r| number[&r], &mut |r| number[&r]);
    }
    let mut out = plan.clone();
    out.registers = number.len() as Register;
    out.instructions = kept;
    out.instruction_sites = sites;
    for check in &mut out.checks {
        let register = *alias.get(&check.register).unwrap_or(&check.register);
        check.after = position[check.after as usize] as u32;
        check.register = number[&register];
    }
    (out, dropped)
}
