//! Operation counts and latency of a group of instructions (a layer, a site, the whole plan).

use cachemir_ir::plan::Instruction;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// What a group of instructions does and costs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Tally {
    /// Instructions by mnemonic, a hoisted group counted once per step under `rot.h` (as
    /// `Plan::counts`).
    pub counts: BTreeMap<String, usize>,
    /// Rotations: `rot` plus every step of every `rot.h`.
    pub rotations: usize,
    /// `rot.h` instructions (hoisted groups: one shared decomposition each).
    pub hoisted_groups: usize,
    /// Key switches: every rotation plus every relinearization.
    pub key_switches: usize,
    /// Relinearizations: the one inside every `mul` plus every `relin` (a sum of `mul.nr`
    /// products relinearized once).
    pub relinearizations: usize,
    /// Ciphertext × ciphertext multiplications (`mul` and `mul.nr`).
    pub ct_ct_mults: usize,
    /// Ciphertext × plaintext multiplications (`mul.p`).
    pub ct_pt_mults: usize,
    /// Ciphertext × scalar multiplications (`mul.s`).
    pub scalar_mults: usize,
    /// `rescale` instructions.
    pub rescales: usize,
    /// `boot` instructions.
    pub bootstraps: usize,
    /// Estimated latency, milliseconds.
    pub latency_ms: f64,
}

impl Tally {
    /// Counts `instruction`, costing `ms`.
    pub fn add(&mut self, instruction: &Instruction, ms: f64) {
        let n = match instruction {
            Instruction::RotateHoisted { steps, .. } => steps.0.len(),
            _ => 1,
        };
        *self
            .counts
            .entry(instruction.mnemonic().to_string())
            .or_insert(0) += n;
        match instruction {
            Instruction::Rotate { .. } => {
                self.rotations += 1;
                self.key_switches += 1;
            }
            Instruction::RotateHoisted { steps, .. } => {
                self.hoisted_groups += 1;
                self.rotations += steps.0.len();
                self.key_switches += steps.0.len();
            }
            Instruction::Multiply { .. } => {
                self.ct_ct_mults += 1;
                self.relinearizations += 1;
                self.key_switches += 1;
            }
            Instruction::MultiplyNoRelinearize { .. } => self.ct_ct_mults += 1,
            Instruction::Relinearize { .. } => {
                self.relinearizations += 1;
                self.key_switches += 1;
            }
            Instruction::MultiplyPlain { .. } => self.ct_pt_mults += 1,
            Instruction::MultiplyScalar { .. } => self.scalar_mults += 1,
            Instruction::Rescale { .. } => self.rescales += 1,
            Instruction::Bootstrap { .. } => self.bootstraps += 1,
            _ => {}
        }
        self.latency_ms += ms;
    }

    /// Instructions, a hoisted group counted once per step.
    pub fn operations(&self) -> usize {
        self.counts.values().sum()
    }
}
