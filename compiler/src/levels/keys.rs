//! The rotation-key set under a memory budget: every rotation step the plan uses either gets its
//! own Galois key or is composed from steps that have one (`rot` by 13 = `rot` by 8, 4, 1). The
//! powers of two are always kept (any step is a sum of them, at most log2(slots) hops); the rest
//! of the budget goes to the steps whose own key saves the most key switches per byte. Each key
//! is sized at the highest level any rotation by it runs at (a key serves every lower level).

use cachemir_ir::plan::{Dst, Dsts, Instruction, Plan, RangeCheck, Register, Src, Step, Steps};
use std::collections::{BTreeMap, BTreeSet};

/// What the key pass chose.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyChoice {
    /// Steps with their own key.
    pub keys: BTreeSet<i32>,
    /// Bytes of those keys (at the levels they are used at).
    pub bytes: u64,
    /// Rotations before and after composition.
    pub rotations_before: usize,
    pub rotations_after: usize,
}

/// Steps of `step` (normalised to `0..slots`) over `keys`: largest key first, so the hop count
/// is at most the binary weight of the step.
fn hops(step: usize, keys: &BTreeSet<i32>) -> Vec<i32> {
    let mut left = step;
    let mut out = Vec::new();
    while left > 0 {
        let k = *keys
            .range(..=left as i32)
            .next_back()
            .expect("the powers of two are always keys");
        out.push(k);
        left -= k as usize;
    }
    out
}

/// Chooses the key set for `plan` within `budget_bytes` (never fewer than the powers of two) and
/// rewrites rotations by other steps as chains over it. Plans without parameters are returned
/// unchanged (key sizes need levels).
pub fn minimise_keys(plan: &Plan, budget_bytes: u64) -> (Plan, KeyChoice) {
    let Some(parameters) = &plan.parameters else {
        let n = plan.rotations.len();
        return (
            plan.clone(),
            KeyChoice {
                keys: plan.rotations.iter().copied().collect(),
                bytes: 0,
                rotations_before: n,
                rotations_after: n,
            },
        );
    };
    let slots = plan.slots;
    let norm = |s: i32| s.rem_euclid(slots as i32);
    // Uses and highest level per step.
    let levels = cachemir_ir::plan::levels::trace(plan)
        .ok()
        .flatten()
        .map(|t| t.operating)
        .unwrap_or_default();
    let mut usage: BTreeMap<i32, (usize, u32)> = BTreeMap::new();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let level = levels
            .get(k)
            .copied()
            .flatten()
            .unwrap_or(parameters.max_level);
        let steps: Vec<i32> = match instruction {
            Instruction::Rotate { step, .. } => vec![step.0],
            Instruction::RotateHoisted { steps, .. } => steps.0.clone(),
            _ => continue,
        };
        for s in steps {
            let s = norm(s);
            if s == 0 {
                continue;
            }
            let e = usage.entry(s).or_insert((0, 0));
            e.0 += 1;
            e.1 = e.1.max(level);
        }
    }
    let key_bytes = |level: u32| parameters.switching_key_bytes(level);
    let powers: BTreeSet<i32> = (0..slots.trailing_zeros()).map(|b| 1i32 << b).collect();
    let mut keys: BTreeSet<i32> = powers
        .iter()
        .copied()
        .filter(|p| usage.contains_key(p) || *p == 1)
        .collect();
    // Powers of two are needed as hops even where no rotation uses them directly.
    keys.extend(powers.iter().copied());
    let level_of = |s: i32| usage.get(&s).map_or(parameters.max_level, |u| u.1);
    let mut bytes: u64 = keys.iter().map(|&s| key_bytes(level_of(s))).sum();
    // The rest by key switches saved per byte.
    let mut candidates: Vec<(f64, i32)> = usage
        .iter()
        .filter(|(s, _)| !keys.contains(s))
        .map(|(&s, &(uses, level))| {
            let saved = uses * (hops(s as usize, &powers).len() - 1);
            (saved as f64 / key_bytes(level) as f64, s)
        })
        .collect();
    candidates.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, s) in candidates {
        let b = key_bytes(level_of(s));
        if bytes + b <= budget_bytes {
            keys.insert(s);
            bytes += b;
        }
    }
    let (rewritten, after) = rewrite(plan, &keys, norm);
    let before = plan
        .instructions
        .iter()
        .map(|i| match i {
            Instruction::Rotate { .. } => 1,
            Instruction::RotateHoisted { steps, .. } => steps.0.len(),
            _ => 0,
        })
        .sum();
    let used: BTreeSet<i32> = rewritten.rotations.iter().copied().collect();
    let bytes = used.iter().map(|&s| key_bytes(level_of(s))).sum();
    (
        rewritten,
        KeyChoice {
            keys: used,
            bytes,
            rotations_before: before,
            rotations_after: after,
        },
    )
}

/// Emits a chain of rotations of `a` by `step` over `keys` into `dst`; returns its length.
fn chain(
    a: Register,
    dst: Register,
    step: usize,
    keys: &BTreeSet<i32>,
    registers: &mut u32,
    used: &mut BTreeSet<i32>,
    emit: &mut dyn FnMut(Instruction),
) -> usize {
    let path = hops(step, keys);
    let mut from = a;
    for (h, &hop) in path.iter().enumerate() {
        let to = if h + 1 == path.len() {
            dst
        } else {
            *registers += 1;
            *registers - 1
        };
        emit(Instruction::Rotate {
            dst: Dst(to),
            a: Src(from),
            step: Step(hop),
        });
        used.insert(hop);
        from = to;
    }
    path.len()
}

/// The plan with rotations by steps outside `keys` composed from steps inside it, and the
/// rotation count after.
fn rewrite(plan: &Plan, keys: &BTreeSet<i32>, norm: impl Fn(i32) -> i32) -> (Plan, usize) {
    let mut registers = plan.registers;
    let mut instructions = Vec::with_capacity(plan.instructions.len());
    let mut sites = Vec::with_capacity(plan.instructions.len());
    let mut new_index = vec![0u32; plan.instructions.len()];
    let mut rotations = 0;
    let mut used: BTreeSet<i32> = BTreeSet::new();
    // Step 0 needs no key; steps with a key stay as they are.
    let direct = |s: i32| norm(s) == 0 || keys.contains(&norm(s));
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let site = plan.instruction_sites[k];
        let mut emit = |i: Instruction| {
            instructions.push(i);
            sites.push(site);
        };
        match instruction {
            Instruction::Rotate { dst, a, step } if !direct(step.0) => {
                rotations += chain(
                    a.0,
                    dst.0,
                    norm(step.0) as usize,
                    keys,
                    &mut registers,
                    &mut used,
                    &mut emit,
                );
            }
            Instruction::RotateHoisted { dsts, a, steps } => {
                let (kept, composed): (Vec<_>, Vec<_>) =
                    dsts.0.iter().zip(&steps.0).partition(|(_, s)| direct(**s));
                if !kept.is_empty() {
                    used.extend(kept.iter().map(|(_, s)| norm(**s)).filter(|&s| s != 0));
                    rotations += kept.len();
                    emit(Instruction::RotateHoisted {
                        dsts: Dsts(kept.iter().map(|(d, _)| **d).collect()),
                        a: *a,
                        steps: Steps(kept.iter().map(|(_, s)| **s).collect()),
                    });
                }
                for (d, s) in composed {
                    rotations += chain(
                        a.0,
                        *d,
                        norm(*s) as usize,
                        keys,
                        &mut registers,
                        &mut used,
                        &mut emit,
                    );
                }
            }
            other => {
                if let Instruction::Rotate { step, .. } = other
                    && norm(step.0) != 0
                {
                    used.insert(norm(step.0));
                    rotations += 1;
                }
                emit(other.clone());
            }
        }
        new_index[k] = (instructions.len() - 1) as u32;
    }
    let checks = plan
        .checks
        .iter()
        .map(|c| RangeCheck {
            after: new_index[c.after as usize],
            ..c.clone()
        })
        .collect();
    (
        Plan {
            registers,
            rotations: used.into_iter().collect(),
            instructions,
            instruction_sites: sites,
            checks,
            ..plan.clone()
        },
        rotations,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::levels::params::by_name;
    use cachemir_ir::layout::Layout;
    use cachemir_ir::plan::{Ciphertexts, Io, PLAN_FORMAT_VERSION, Part, Site};
    use std::collections::HashMap;

    fn plan() -> Plan {
        let slots = 64;
        let layout = Layout::row_major(&[slots], slots);
        let io = |name: &str, level| Ciphertexts {
            name: name.into(),
            layout: layout.clone(),
            level: Some(level),
        };
        let rot = |dst, a, step| Instruction::Rotate {
            dst: Dst(dst),
            a: Src(a),
            step: Step(step),
        };
        Plan {
            version: PLAN_FORMAT_VERSION,
            name: "keys".into(),
            slots,
            parameters: by_name("ToyBootN12"),
            weights: String::new(),
            weight_shapes: Default::default(),
            client_program: String::new(),
            public_program: String::new(),
            public_inputs: vec![],
            inputs: vec![io("x", 3)],
            outputs: vec![io("y", 3)],
            states: vec![],
            generation: None,
            plaintexts: vec![],
            rotations: vec![2, 5, 13, 32],
            registers: 7,
            instructions: vec![
                Instruction::Load {
                    dst: Dst(0),
                    input: Io(0),
                    part: Part(0),
                },
                rot(1, 0, 13),
                Instruction::RotateHoisted {
                    dsts: Dsts(vec![2, 3]),
                    a: Src(0),
                    steps: Steps(vec![5, 2]),
                },
                Instruction::Add {
                    dst: Dst(4),
                    a: Src(1),
                    b: Src(2),
                },
                Instruction::Add {
                    dst: Dst(5),
                    a: Src(4),
                    b: Src(3),
                },
                rot(6, 5, -32),
                Instruction::Store {
                    src: Src(6),
                    output: Io(0),
                    part: Part(0),
                },
            ],
            sites: vec![Site {
                name: "y".into(),
                source: "test".into(),
                layer: None,
            }],
            instruction_sites: vec![0; 7],
            checks: vec![],
        }
    }

    fn run(plan: &Plan) -> Vec<f64> {
        let x: Vec<f64> = (0..plan.slots).map(|i| (i as f64 * 0.37).sin()).collect();
        let out = cachemir_vm::sim::execute(plan, &HashMap::new(), &[vec![x]]).unwrap();
        out[0][0].clone()
    }

    #[test]
    fn composed_rotations_compute_the_same_and_use_only_chosen_keys() {
        let original = plan();
        original.validate().unwrap();
        // No budget: powers of two only; 13 = 8 + 4 + 1, 5 = 4 + 1, 2 and 32 direct.
        let (tight, choice) = minimise_keys(&original, 0);
        tight.validate().unwrap();
        assert!(choice.keys.iter().all(|k| k.count_ones() == 1));
        assert_eq!((choice.rotations_before, choice.rotations_after), (4, 7));
        assert_eq!(run(&tight), run(&original));
        // A budget for everything: nothing composed.
        let (loose, choice) = minimise_keys(&original, u64::MAX);
        assert_eq!(choice.rotations_after, 4);
        assert_eq!(loose.rotations, vec![2, 5, 13, 32]);
        assert_eq!(run(&loose), run(&original));
    }
}
