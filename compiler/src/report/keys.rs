//! The evaluation-key set a plan needs: one Galois key per distinct rotation step and a
//! relinearization key where it multiplies ciphertexts. A key-switching key usable down from
//! level `l` has `l + 1 + special_primes` limbs per polynomial, so each key is sized at the highest
//! level it is used at ([`Parameters::switching_key_bytes`]). Bootstrapping's own keys are not
//! part of the plan and not counted.

use cachemir_ir::plan::levels::LevelTrace;
use cachemir_ir::plan::{Instruction, Parameters, Plan};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The key set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySet {
    /// Distinct rotation steps (`Plan::rotations`).
    pub rotation_steps: usize,
    /// One Galois key per step, ascending.
    pub rotations: Vec<RotationKey>,
    /// The relinearization key, where the plan has a `mul`.
    pub relinearization: Option<RelinearizationKey>,
    /// Bytes of all keys (leveled plans).
    pub total_bytes: Option<u64>,
}

/// The Galois key of one rotation step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotationKey {
    /// The left rotation, normalised to `0..slots`.
    pub step: i32,
    /// Rotations by this step (`rot` and `rot.h` steps).
    pub uses: usize,
    /// The highest level it is used at (leveled plans).
    pub level: Option<u32>,
    /// Its bytes at that level (leveled plans).
    pub bytes: Option<u64>,
}

/// The relinearization key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelinearizationKey {
    /// `mul` instructions.
    pub uses: usize,
    /// The highest level it is used at (leveled plans).
    pub level: Option<u32>,
    /// Its bytes at that level (leveled plans).
    pub bytes: Option<u64>,
}

/// Uses and the highest level of use of one key.
#[derive(Default)]
struct Use {
    uses: usize,
    level: Option<u32>,
}

impl Use {
    fn add(&mut self, level: Option<u32>) {
        self.uses += 1;
        self.level = self.level.max(level);
    }
}

/// The key set of `plan` (levels from `levels` where leveled).
pub fn key_set(plan: &Plan, levels: Option<&LevelTrace>) -> KeySet {
    let mut steps: BTreeMap<i32, Use> = plan
        .rotations
        .iter()
        .map(|&s| (plan.normalise(s), Use::default()))
        .collect();
    let mut relinearization: Option<Use> = None;
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let level = levels.and_then(|t| t.operating[k]);
        match instruction {
            Instruction::Rotate { step, .. } => {
                steps.entry(plan.normalise(step.0)).or_default().add(level);
            }
            Instruction::RotateHoisted { steps: group, .. } => {
                for &s in &group.0 {
                    steps.entry(plan.normalise(s)).or_default().add(level);
                }
            }
            Instruction::Multiply { .. } | Instruction::Relinearize { .. } => {
                relinearization.get_or_insert_with(Use::default).add(level);
            }
            _ => {}
        }
    }
    let parameters: Option<&Parameters> = levels.and(plan.parameters.as_ref());
    let bytes = |u: &Use| {
        parameters
            .zip(u.level)
            .map(|(p, l)| p.switching_key_bytes(l))
    };
    let rotations: Vec<RotationKey> = steps
        .iter()
        .map(|(&step, u)| RotationKey {
            step,
            uses: u.uses,
            level: u.level,
            bytes: bytes(u),
        })
        .collect();
    let relinearization = relinearization.map(|u| RelinearizationKey {
        uses: u.uses,
        level: u.level,
        bytes: bytes(&u),
    });
    let total_bytes = parameters.map(|_| {
        rotations.iter().filter_map(|k| k.bytes).sum::<u64>()
            + relinearization.as_ref().and_then(|k| k.bytes).unwrap_or(0)
    });
    KeySet {
        rotation_steps: plan.rotations.len(),
        rotations,
        relinearization,
        total_bytes,
    }
}
