//! Rewrites an unleveled plan under a [`Placement`]: inputs from other sites lowered to the level
//! the site needs (`level.down`), rescales where [`super::rules`] asks for them, operands of binary
//! ops brought to one level, Δ² outputs rescaled at the end of their site, bootstraps with their
//! pre- and post-scaling, stores at the declared levels. Registers are renumbered (every write is
//! a fresh register); sites, plaintexts and rotations are kept; range checks follow their
//! instruction. A bootstrap input beyond [−1, 1] is divided by its bound first (one level) and
//! the bootstrap multiplies it back in SlotsToCoeffs (no level).

use super::placement::Placement;
use super::rules::{Needs, aligns_levels, needs, result_degree};
use super::sites::{Role, SiteNode};
use cachemir_ir::plan::{
    Dst, Dsts, Instruction, Level, Parameters, Plan, RangeCheck, Register, Scalar, Slots, Src,
};

/// A broken invariant between analysis and emission (a compiler bug, reported, not a panic).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EmitError {
    #[error(
        "site {site}: register r{register} arrives at level {found}, below the {needed} planned"
    )]
    Below {
        site: String,
        register: Register,
        found: u32,
        needed: u32,
    },
}

/// A register's current version: new register, level, scale degree.
#[derive(Debug, Clone, Copy)]
struct Version {
    register: Register,
    level: u32,
    degree: u8,
}

struct Emitter {
    instructions: Vec<Instruction>,
    sites: Vec<u32>,
    registers: u32,
    site: u32,
}

impl Emitter {
    fn fresh(&mut self) -> Register {
        self.registers += 1;
        self.registers - 1
    }

    fn push(&mut self, instruction: Instruction) {
        self.instructions.push(instruction);
        self.sites.push(self.site);
    }

    fn rescale(&mut self, v: Version) -> Version {
        let dst = self.fresh();
        self.push(Instruction::Rescale {
            dst: Dst(dst),
            a: Src(v.register),
        });
        Version {
            register: dst,
            level: v.level - 1,
            degree: 1,
        }
    }

    fn level_down(&mut self, v: Version, level: u32) -> Version {
        if v.level == level {
            return v;
        }
        let dst = self.fresh();
        self.push(Instruction::LevelDown {
            dst: Dst(dst),
            a: Src(v.register),
            level: Level(level),
        });
        Version {
            register: dst,
            level,
            degree: v.degree,
        }
    }

    fn scale(&mut self, v: Version, by: f64) -> Version {
        let dst = self.fresh();
        self.push(Instruction::MultiplyScalar {
            dst: Dst(dst),
            a: Src(v.register),
            value: Scalar(by),
        });
        self.rescale(Version {
            register: dst,
            level: v.level,
            degree: 2,
        })
    }
}

/// The leveled plan. `bounds[v]`: the factor node `v`'s outputs are divided by before a
/// bootstrap (and multiplied by after), `None` when they are already within [−1, 1].
///
/// # Errors
/// [`EmitError`] if a value arrives below its planned level (an analysis bug).
pub fn emit(
    plan: &Plan,
    nodes: &[SiteNode],
    placement: &Placement,
    parameters: &Parameters,
    bounds: &[Option<f64>],
) -> Result<Plan, EmitError> {
    let mut writer = vec![usize::MAX; plan.registers as usize];
    for (v, node) in nodes.iter().enumerate() {
        for instruction in &plan.instructions[node.first..node.end] {
            for w in instruction.registers().1 {
                writer[w as usize] = v;
            }
        }
    }
    let bootstrap_level = parameters.bootstrap_level.unwrap_or(0);
    let mut current: Vec<Option<Version>> = vec![None; plan.registers as usize];
    let mut e = Emitter {
        instructions: Vec::with_capacity(plan.instructions.len() * 5 / 4),
        sites: Vec::with_capacity(plan.instructions.len() * 5 / 4),
        registers: 0,
        site: 0,
    };
    let mut new_index = vec![0u32; plan.instructions.len()];
    let mut new_dst: Vec<Option<Register>> = vec![None; plan.instructions.len()];
    let mut inputs = plan.inputs.clone();
    let mut outputs = plan.outputs.clone();
    for (v, node) in nodes.iter().enumerate() {
        e.site = node.site as u32;
        let level = placement.levels[v];
        match node.role {
            Role::Source { input, .. } => inputs[input as usize].level = Some(level),
            Role::Sink { output, .. } => outputs[output as usize].level = Some(level),
            Role::Compute => {}
        }
        let mut lowered: std::collections::HashMap<Register, Version> =
            std::collections::HashMap::new();
        for k in node.first..node.end {
            let instruction = &plan.instructions[k];
            let (reads, _) = instruction.registers();
            let mut operands: Vec<Version> = Vec::with_capacity(reads.len());
            for &r in &reads {
                let w = writer[r as usize];
                let version = if w == v {
                    current[r as usize].expect("written earlier in the site")
                } else if let Some(&l) = lowered.get(&r) {
                    l
                } else {
                    let available = current[r as usize].expect("written by an earlier site");
                    let depth = node.preds.iter().find(|p| p.0 == w).map_or(0, |p| p.1);
                    let needed = level + depth;
                    if available.level < needed {
                        return Err(EmitError::Below {
                            site: plan.sites[node.site].name.clone(),
                            register: r,
                            found: available.level,
                            needed,
                        });
                    }
                    let l = e.level_down(available, needed);
                    lowered.insert(r, l);
                    l
                };
                operands.push(version);
            }
            // Scales, then levels.
            let want = needs(instruction);
            let mixed =
                operands.iter().any(|o| o.degree == 2) && operands.iter().any(|o| o.degree == 1);
            for (o, &r) in operands.iter_mut().zip(&reads) {
                let must = match want {
                    Needs::DegreeOne => o.degree == 2,
                    Needs::EqualDegrees => mixed && o.degree == 2,
                    Needs::Nothing => false,
                };
                if must {
                    *o = e.rescale(*o);
                    if writer[r as usize] == v {
                        current[r as usize] = Some(*o);
                    } else {
                        lowered.insert(r, *o);
                    }
                }
            }
            if aligns_levels(instruction) {
                let low = operands.iter().map(|o| o.level).min().unwrap_or(0);
                for o in operands.iter_mut() {
                    *o = e.level_down(*o, low);
                }
            }
            if let Instruction::Store { output, .. } = instruction {
                let declared = outputs[output.0 as usize].level.unwrap_or(level);
                operands[0] = e.level_down(operands[0], declared);
            }
            let degrees: Vec<u8> = operands.iter().map(|o| o.degree).collect();
            let result_level = match instruction {
                Instruction::Load { .. } => level,
                _ => operands.iter().map(|o| o.level).min().unwrap_or(level),
            };
            let result = |register| Version {
                register,
                level: result_level,
                degree: result_degree(instruction, &degrees),
            };
            let src = |i: usize| Src(operands[i].register);
            use Instruction as I;
            let rewritten = match instruction {
                I::Load { input, part, .. } => {
                    let dst = e.fresh();
                    (
                        I::Load {
                            dst: Dst(dst),
                            input: *input,
                            part: *part,
                        },
                        vec![dst],
                    )
                }
                I::Store { output, part, .. } => (
                    I::Store {
                        src: src(0),
                        output: *output,
                        part: *part,
                    },
                    vec![],
                ),
                I::Free { .. } => (I::Free { a: src(0) }, vec![]),
                I::RotateHoisted { dsts, steps, .. } => {
                    let fresh: Vec<Register> = dsts.0.iter().map(|_| e.fresh()).collect();
                    (
                        I::RotateHoisted {
                            dsts: Dsts(fresh.clone()),
                            a: src(0),
                            steps: steps.clone(),
                        },
                        fresh,
                    )
                }
                other => {
                    let dst = e.fresh();
                    (rename(other, dst, &operands), vec![dst])
                }
            };
            let (_, writes) = instruction.registers();
            for (&old, &new) in writes.iter().zip(&rewritten.1) {
                current[old as usize] = Some(result(new));
            }
            new_dst[k] = rewritten.1.first().copied();
            e.push(rewritten.0);
            new_index[k] = (e.instructions.len() - 1) as u32;
        }
        if matches!(node.role, Role::Compute) {
            for &r in &node.exports {
                let Some(mut version) = current[r as usize] else {
                    continue;
                };
                if version.degree == 2 {
                    version = e.rescale(version);
                }
                if placement.bootstrapped[v] {
                    if let Some(b) = bounds[v] {
                        version = e.scale(version, 1.0 / b);
                    }
                    let dst = e.fresh();
                    e.push(Instruction::Bootstrap {
                        dst: Dst(dst),
                        a: Src(version.register),
                        slots: Slots(plan.slots as u32),
                        level: Level(bootstrap_level),
                        scale: Scalar(bounds[v].unwrap_or(1.0)),
                    });
                    version = Version {
                        register: dst,
                        level: bootstrap_level,
                        degree: 1,
                    };
                }
                current[r as usize] = Some(version);
            }
        }
    }
    let checks = plan
        .checks
        .iter()
        .map(|c| RangeCheck {
            after: new_index[c.after as usize],
            register: new_dst[c.after as usize].unwrap_or(c.register),
            ..c.clone()
        })
        .collect();
    Ok(Plan {
        parameters: Some(parameters.clone()),
        inputs,
        outputs,
        registers: e.registers,
        instructions: e.instructions,
        instruction_sites: e.sites,
        checks,
        ..plan.clone()
    })
}

/// `instruction` with destination `dst` and its operands replaced (single-destination ops).
fn rename(instruction: &Instruction, dst: Register, operands: &[Version]) -> Instruction {
    use Instruction as I;
    let a = Src(operands[0].register);
    let b = || Src(operands[1].register);
    let dst = Dst(dst);
    match instruction {
        I::Add { .. } => I::Add { dst, a, b: b() },
        I::Sub { .. } => I::Sub { dst, a, b: b() },
        I::Multiply { .. } => I::Multiply { dst, a, b: b() },
        I::MultiplyNoRelinearize { .. } => I::MultiplyNoRelinearize { dst, a, b: b() },
        I::Relinearize { .. } => I::Relinearize { dst, a },
        I::AddPlain { plaintext, .. } => I::AddPlain {
            dst,
            a,
            plaintext: *plaintext,
        },
        I::SubPlain { plaintext, .. } => I::SubPlain {
            dst,
            a,
            plaintext: *plaintext,
        },
        I::MultiplyPlain { plaintext, .. } => I::MultiplyPlain {
            dst,
            a,
            plaintext: *plaintext,
        },
        I::AddScalar { value, .. } => I::AddScalar {
            dst,
            a,
            value: *value,
        },
        I::MultiplyScalar { value, .. } => I::MultiplyScalar {
            dst,
            a,
            value: *value,
        },
        I::Negate { .. } => I::Negate { dst, a },
        I::Rotate { step, .. } => I::Rotate {
            dst,
            a,
            step: *step,
        },
        I::Rescale { .. } => I::Rescale { dst, a },
        I::LevelDown { level, .. } => I::LevelDown {
            dst,
            a,
            level: *level,
        },
        I::Bootstrap {
            slots,
            level,
            scale,
            ..
        } => I::Bootstrap {
            dst,
            a,
            slots: *slots,
            level: *level,
            scale: *scale,
        },
        I::Load { .. } | I::Store { .. } | I::RotateHoisted { .. } | I::Free { .. } => {
            unreachable!("handled by the caller")
        }
    }
}
