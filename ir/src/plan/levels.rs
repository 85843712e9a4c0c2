//! Static check of a leveled plan against the rules of [`super::parameters`]: the level and
//! scale degree of every register, computed without executing anything. The `sim` backend, the
//! report and the compiler's level pass all read levels from here, so there is one definition of
//! what an instruction does to levels.

use super::{Instruction, Plan, Register};

/// Level and scale degree of a register (see [`super::parameters`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LevelState {
    pub level: u32,
    /// Scale Δ^degree.
    pub degree: u8,
}

/// Why an instruction breaks the level rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelRule {
    #[error("operands at levels {0} and {1}: equal levels required")]
    LevelMismatch(u32, u32),
    #[error("operands at scales Δ^{0} and Δ^{1}: equal scales required")]
    ScaleMismatch(u8, u8),
    #[error("operand at scale Δ^{0}: Δ^1 required (rescale first)")]
    NotRescaled(u8),
    #[error("rescale of a ciphertext at scale Δ^1")]
    NothingToRescale,
    #[error("rescale at level 0: no level left")]
    OutOfLevels,
    #[error("level.down from level {from} to {to}: levels only go down")]
    LevelUp { from: u32, to: u32 },
    #[error("bootstrap to level {found}; the parameters' bootstrap level is {expected:?}")]
    BootstrapLevel { found: u32, expected: Option<u32> },
    #[error("input {input} at level {level} above the parameters' top level {max}")]
    InputAboveTop { input: u32, level: u32, max: u32 },
    #[error("store at level {found}; output {output} is declared at level {expected}")]
    OutputLevel {
        output: u32,
        found: u32,
        expected: u32,
    },
    #[error("a leveled plan declares a level for every input and output ({0} has none)")]
    MissingLevel(String),
}

/// A level rule broken at instruction `instruction` (index into [`Plan::instructions`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("instruction {instruction} ({text}) at site {site}: {rule}")]
pub struct LevelError {
    pub instruction: usize,
    /// The instruction as the disassembler prints it.
    pub text: String,
    /// The site's name and source (`name (source)`).
    pub site: String,
    pub rule: LevelRule,
}

/// Levels of every register write, in instruction order.
#[derive(Debug, Clone, Default)]
pub struct LevelTrace {
    /// `states[k]`: the level and degree written by instruction `k` (for `rot.h`, of all its
    /// destinations; `None` for instructions that write nothing).
    pub states: Vec<Option<LevelState>>,
    /// The operating level of instruction `k`: the level of its first operand (what its latency
    /// depends on); `None` for `load`.
    pub operating: Vec<Option<u32>>,
}

/// Checks a leveled plan. Plans without parameters have no level rules: `Ok(None)`.
///
/// # Errors
/// The first [`LevelError`], naming the instruction and its site.
pub fn trace(plan: &Plan) -> Result<Option<LevelTrace>, LevelError> {
    let Some(parameters) = &plan.parameters else {
        return Ok(None);
    };
    let fail = |k: usize, rule: LevelRule| {
        let site = plan
            .instruction_sites
            .get(k)
            .and_then(|&s| plan.sites.get(s as usize))
            .map_or_else(String::new, |s| format!("{} ({})", s.name, s.source));
        LevelError {
            instruction: k,
            text: plan
                .instructions
                .get(k)
                .map_or_else(String::new, ToString::to_string),
            site,
            rule,
        }
    };
    let declared = |c: &super::Ciphertexts| {
        c.level
            .ok_or_else(|| fail(0, LevelRule::MissingLevel(c.name.clone())))
    };
    let inputs: Vec<u32> = plan.inputs.iter().map(declared).collect::<Result<_, _>>()?;
    let outputs: Vec<u32> = plan
        .outputs
        .iter()
        .map(declared)
        .collect::<Result<_, _>>()?;
    let mut registers: Vec<Option<LevelState>> = vec![None; plan.registers as usize];
    let mut result = LevelTrace {
        states: Vec::with_capacity(plan.instructions.len()),
        operating: Vec::with_capacity(plan.instructions.len()),
    };
    // `validate` guarantees registers are written before they are read.
    let get = |registers: &[Option<LevelState>], r: Register| {
        registers
            .get(r as usize)
            .copied()
            .flatten()
            .expect("validated plans read written registers")
    };
    let same = |a: LevelState, b: LevelState| -> Result<(), LevelRule> {
        if a.level != b.level {
            return Err(LevelRule::LevelMismatch(a.level, b.level));
        }
        Ok(())
    };
    let rescaled = |a: LevelState| -> Result<(), LevelRule> {
        if a.degree != 1 {
            return Err(LevelRule::NotRescaled(a.degree));
        }
        Ok(())
    };
    for (k, instruction) in plan.instructions.iter().enumerate() {
        use Instruction as I;
        let state = |r: &Register| get(&registers, *r);
        let written: Result<Option<LevelState>, LevelRule> = match instruction {
            I::Load { input, .. } => {
                let level = inputs.get(input.0 as usize).copied().unwrap_or(0);
                if level > parameters.max_level {
                    Err(LevelRule::InputAboveTop {
                        input: input.0,
                        level,
                        max: parameters.max_level,
                    })
                } else {
                    Ok(Some(LevelState { level, degree: 1 }))
                }
            }
            I::Store { src, output, .. } => {
                let s = state(&src.0);
                let expected = outputs.get(output.0 as usize).copied().unwrap_or(0);
                let placed = if s.level == expected {
                    Ok(None)
                } else {
                    Err(LevelRule::OutputLevel {
                        output: output.0,
                        found: s.level,
                        expected,
                    })
                };
                rescaled(s).and(placed)
            }
            I::Add { a, b, .. } | I::Sub { a, b, .. } => {
                let (x, y) = (state(&a.0), state(&b.0));
                let scaled = if x.degree == y.degree {
                    Ok(Some(x))
                } else {
                    Err(LevelRule::ScaleMismatch(x.degree, y.degree))
                };
                same(x, y).and(scaled)
            }
            I::Multiply { a, b, .. } | I::MultiplyNoRelinearize { a, b, .. } => {
                let (x, y) = (state(&a.0), state(&b.0));
                same(x, y)
                    .and_then(|()| rescaled(x))
                    .and_then(|()| rescaled(y))
                    .map(|()| {
                        Some(LevelState {
                            level: x.level,
                            degree: 2,
                        })
                    })
            }
            I::MultiplyPlain { a, .. } | I::MultiplyScalar { a, .. } => {
                let x = state(&a.0);
                rescaled(x).map(|()| {
                    Some(LevelState {
                        level: x.level,
                        degree: 2,
                    })
                })
            }
            I::AddPlain { a, .. }
            | I::SubPlain { a, .. }
            | I::AddScalar { a, .. }
            | I::Negate { a, .. }
            | I::Relinearize { a, .. }
            | I::Rotate { a, .. }
            | I::RotateHoisted { a, .. } => Ok(Some(state(&a.0))),
            I::Rescale { a, .. } => {
                let x = state(&a.0);
                if x.degree != 2 {
                    Err(LevelRule::NothingToRescale)
                } else if x.level == 0 {
                    Err(LevelRule::OutOfLevels)
                } else {
                    Ok(Some(LevelState {
                        level: x.level - 1,
                        degree: 1,
                    }))
                }
            }
            I::LevelDown { a, level, .. } => {
                let x = state(&a.0);
                if level.0 > x.level {
                    Err(LevelRule::LevelUp {
                        from: x.level,
                        to: level.0,
                    })
                } else {
                    Ok(Some(LevelState {
                        level: level.0,
                        degree: x.degree,
                    }))
                }
            }
            I::Bootstrap { a, level, .. } => {
                let x = state(&a.0);
                rescaled(x).and_then(|()| {
                    if Some(level.0) == parameters.bootstrap_level {
                        Ok(Some(LevelState {
                            level: level.0,
                            degree: 1,
                        }))
                    } else {
                        Err(LevelRule::BootstrapLevel {
                            found: level.0,
                            expected: parameters.bootstrap_level,
                        })
                    }
                })
            }
            I::Free { .. } => Ok(None),
        };
        let written = written.map_err(|rule| fail(k, rule))?;
        let (reads, writes) = instruction.registers();
        result
            .operating
            .push(reads.first().map(|&r| get(&registers, r).level));
        if let Some(s) = written {
            for w in writes {
                registers[w as usize] = Some(s);
            }
        }
        result.states.push(written);
    }
    Ok(Some(result))
}
