//! Plan (format version 4): the versioned program the runtime executes.
//!
//! A plan holds everything a client and a server need and nothing of the compiler:
//! - the **client program** (Tensor IR, JSON) from the raw model inputs to the tensors the client
//!   encrypts (e.g. the token embedding), and the **public program** the server runs in the clear on
//!   public inputs (masks, rotary tables);
//! - the encrypted **inputs, outputs and KV-cache states** with their [`Layout`]s, so a client encodes
//!   and decodes from the plan alone;
//! - **plaintexts** by reference to raw tensors ([`Plaintext`]): weights stay in the safetensors file
//!   named by [`Plan::weights`] and are encoded when used, at the level of use;
//! - the **instruction stream** over virtual registers ([`Instruction`], one opcode table), the
//!   required **rotation steps**, each instruction's source site, and the range checks the `sim`
//!   backend applies.
//!
//! Binary form: the magic `CACHEMIR-PLAN`, the format version (u32 little endian), then postcard.
//! The JSON dump is the same structure through serde_json.

#[cfg(any(test, feature = "test-support"))]
pub mod builder;
pub mod cost;
#[doc(hidden)]
pub mod fuzz;
pub mod generation;
pub mod hash;
pub mod isa;
pub mod levels;
pub mod parameters;
pub mod plaintext;
pub mod validate_degrees;

pub use cost::{CostModel, CostModelError, LinearCost};
pub use generation::{Generation, GenerationError};
pub use hash::{ContentHash, ContentHashError};
pub use isa::{
    Dst, Dsts, Instruction, Io, Level, Part, Plain, Register, Scalar, Slots, Src, Step, Steps,
};
pub use parameters::Parameters;
pub use plaintext::{Plaintext, TensorRef};

use crate::layout::{Layout, LayoutError, Run};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The slot-map entries [`Plan::from_bytes`] lets a plan's layouts expand to: 2^29, 2 GiB of
/// maps (Llama-3-8B's decode step at cache 2048 has about 2^28: four cache layouts of 64
/// ciphertexts of 2^15 slots per layer).
pub const PLAN_LAYOUT_BUDGET: usize = 1 << 29;

/// The plan format version this crate reads and writes.
pub const PLAN_FORMAT_VERSION: u32 = 4;
const MAGIC: &[u8] = b"CACHEMIR-PLAN";

/// A plan that cannot be read or is inconsistent.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error("not a Cachemir plan (bad magic bytes)")]
    Magic,
    #[error("plan format version {found}; this build reads version {PLAN_FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("plan does not decode: {0}")]
    Decode(String),
    #[error("invalid plan: {0}")]
    Invalid(String),
    #[error("invalid plan layout: {0}")]
    Layout(#[from] LayoutError),
    /// A degree-2 ciphertext (`mul.nr`) fed to an instruction that needs degree 1, or a `relin`
    /// of a degree-1 ciphertext ([`validate_degrees`]).
    #[error("invalid plan: {0}")]
    Degree(#[from] validate_degrees::DegreeError),
}

/// An encrypted tensor crossing the plan's boundary.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ciphertexts {
    pub name: String,
    pub layout: Layout,
    /// The level its ciphertexts are encrypted (inputs), stored (KV-cache states) or returned
    /// (outputs) at; `None` in a plan without [`Parameters`].
    pub level: Option<u32>,
}

/// A KV-cache state: the output whose value becomes the input of the next decode step.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    pub input: String,
    pub output: String,
}

/// Where instructions come from: a Tensor IR node (ONNX node name or DSL line:column) and its
/// layer, for error messages and per-layer reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub name: String,
    pub source: String,
    pub layer: Option<u32>,
}

/// A calibrated range the value in `register` must stay in after instruction `after`, over the
/// slots of `occupied` (elements ignored).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RangeCheck {
    pub after: u32,
    pub register: Register,
    pub site: u32,
    pub low: f64,
    pub high: f64,
    pub occupied: Vec<Run>,
}

/// A compiled program (see the module documentation).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Plan {
    pub version: u32,
    pub name: String,
    /// Slots per ciphertext.
    pub slots: usize,
    /// The parameters a leveled plan was compiled for, with the level rules of
    /// [`parameters`]; `None` for a plan straight from the lowering (levels unbounded).
    pub parameters: Option<Parameters>,
    /// The weights file (safetensors), relative to the plan file.
    pub weights: String,
    /// Every weight the plaintexts read, with its shape.
    pub weight_shapes: BTreeMap<String, Vec<usize>>,
    /// Tensor IR (JSON) from the model's raw inputs to the tensors the client encrypts.
    pub client_program: String,
    /// Tensor IR (JSON) the server evaluates in the clear on public inputs; its outputs are the
    /// `TensorRef::Public` tensors.
    pub public_program: String,
    /// Names of the model inputs that are public (fed to the public program).
    pub public_inputs: Vec<String>,
    pub inputs: Vec<Ciphertexts>,
    pub outputs: Vec<Ciphertexts>,
    pub states: Vec<State>,
    /// Set for a generation plan (`cachemirc compile --generation`): the states slide by one
    /// position a step and the plan runs once per token ([`generation`]).
    pub generation: Option<Generation>,
    pub plaintexts: Vec<Plaintext>,
    /// Distinct rotation steps the instructions use (left rotations, normalised to `0..slots`).
    pub rotations: Vec<i32>,
    pub registers: u32,
    pub instructions: Vec<Instruction>,
    pub sites: Vec<Site>,
    /// `instruction_sites[k]`: index into `sites` of instruction `k`.
    pub instruction_sites: Vec<u32>,
    pub checks: Vec<RangeCheck>,
}

impl Plan {
    /// The binary form: magic, version, postcard.
    pub fn to_bytes(&self) -> Result<Vec<u8>, PlanError> {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&self.version.to_le_bytes());
        let body = postcard::to_stdvec(self).map_err(|e| PlanError::Decode(e.to_string()))?;
        bytes.extend_from_slice(&body);
        Ok(bytes)
    }

    /// Reads and [validates](Plan::validate) the binary form, its layouts expanding to at most
    /// [`PLAN_LAYOUT_BUDGET`] slot-map entries in all.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PlanError> {
        Self::from_bytes_within(bytes, PLAN_LAYOUT_BUDGET)
    }

    /// [`Plan::from_bytes`] with at most `layout_slots` slot-map entries (ciphertexts × slots,
    /// 4 bytes each) over all the plan's layouts: what reading untrusted bytes may allocate for
    /// them ([`crate::layout::with_decode_budget`]).
    pub fn from_bytes_within(bytes: &[u8], layout_slots: usize) -> Result<Self, PlanError> {
        let rest = bytes.strip_prefix(MAGIC).ok_or(PlanError::Magic)?;
        if rest.len() < 4 {
            return Err(PlanError::Decode("truncated header".into()));
        }
        let found = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes"));
        if found != PLAN_FORMAT_VERSION {
            return Err(PlanError::Version { found });
        }
        let plan: Plan =
            crate::layout::with_decode_budget(layout_slots, || postcard::from_bytes(&rest[4..]))
                .map_err(|e| PlanError::Decode(e.to_string()))?;
        plan.validate()?;
        Ok(plan)
    }

    /// Checks what an executor relies on: version, layouts, register numbers, that every
    /// register is written before it is read, plaintext and input/output indices, rotation steps
    /// listed, one site per instruction, and the ciphertext-degree rule ([`validate_degrees`]:
    /// degree-2 values only where accepted). The slot count is a power of two up to
    /// [`MAX_SLOTS`](crate::layout::MAX_SLOTS), and a plan declares no more registers than its
    /// instructions write, so what an executor allocates per slot or register is bounded by the
    /// plan's size.
    pub fn validate(&self) -> Result<(), PlanError> {
        if self.version != PLAN_FORMAT_VERSION {
            return Err(PlanError::Version {
                found: self.version,
            });
        }
        if !self.slots.is_power_of_two() || self.slots > crate::layout::MAX_SLOTS {
            return Err(PlanError::Invalid(format!(
                "slot count {} is not a power of two up to {}",
                self.slots,
                crate::layout::MAX_SLOTS
            )));
        }
        let writes: usize = self
            .instructions
            .iter()
            .map(|i| i.registers().1.len())
            .sum();
        if self.registers as usize > writes {
            return Err(PlanError::Invalid(format!(
                "{} registers declared; the instructions write {writes}",
                self.registers
            )));
        }
        if let Some(generation) = &self.generation {
            self.validate_generation(generation)?;
        }
        for io in self.inputs.iter().chain(&self.outputs) {
            io.layout.validate()?;
            if io.layout.slots != self.slots {
                return Err(PlanError::Invalid(format!(
                    "{}: layout of {} slots in a plan of {}",
                    io.name, io.layout.slots, self.slots
                )));
            }
        }
        if self.instruction_sites.len() != self.instructions.len() {
            return Err(PlanError::Invalid(
                "one site per instruction expected".into(),
            ));
        }
        let rotations: std::collections::HashSet<i32> = self.rotations.iter().copied().collect();
        let mut written = vec![false; self.registers as usize];
        for (k, instruction) in self.instructions.iter().enumerate() {
            let here = || format!("instruction {k} `{instruction}`");
            if self.instruction_sites[k] as usize >= self.sites.len() {
                return Err(PlanError::Invalid(format!("{}: site out of range", here())));
            }
            let (reads, writes) = instruction.registers();
            for r in &reads {
                match written.get(*r as usize) {
                    None => {
                        return Err(PlanError::Invalid(format!(
                            "{}: register r{r} out of range ({} registers)",
                            here(),
                            self.registers
                        )));
                    }
                    Some(false) => {
                        return Err(PlanError::Invalid(format!(
                            "{}: reads r{r} before any write",
                            here()
                        )));
                    }
                    Some(true) => {}
                }
            }
            for w in writes {
                *written.get_mut(w as usize).ok_or_else(|| {
                    PlanError::Invalid(format!("{}: register r{w} out of range", here()))
                })? = true;
            }
            match instruction {
                Instruction::Load { input, part, .. } => {
                    let io = self.inputs.get(input.0 as usize).ok_or_else(|| {
                        PlanError::Invalid(format!("{}: no input {}", here(), input.0))
                    })?;
                    if part.0 as usize >= io.layout.ciphertexts() {
                        return Err(PlanError::Invalid(format!("{}: no such part", here())));
                    }
                }
                Instruction::Store { output, part, .. } => {
                    let io = self.outputs.get(output.0 as usize).ok_or_else(|| {
                        PlanError::Invalid(format!("{}: no output {}", here(), output.0))
                    })?;
                    if part.0 as usize >= io.layout.ciphertexts() {
                        return Err(PlanError::Invalid(format!("{}: no such part", here())));
                    }
                }
                Instruction::AddPlain { plaintext, .. }
                | Instruction::SubPlain { plaintext, .. }
                | Instruction::MultiplyPlain { plaintext, .. } => {
                    let p = self.plaintexts.get(plaintext.0 as usize).ok_or_else(|| {
                        PlanError::Invalid(format!("{}: no plaintext {}", here(), plaintext.0))
                    })?;
                    if let Some(TensorRef::Weight(name)) = p.tensor()
                        && !self.weight_shapes.contains_key(name)
                    {
                        return Err(PlanError::Invalid(format!(
                            "{}: weight `{name}` is not in the plan's weight list",
                            here()
                        )));
                    }
                }
                Instruction::Rotate { step, .. }
                    if !rotations.contains(&self.normalise(step.0)) =>
                {
                    return Err(PlanError::Invalid(format!(
                        "{}: rotation {} is not in the plan's rotation list",
                        here(),
                        step.0
                    )));
                }
                Instruction::RotateHoisted { dsts, steps, .. } => {
                    if dsts.0.len() != steps.0.len() {
                        return Err(PlanError::Invalid(format!(
                            "{}: {} destinations for {} steps",
                            here(),
                            dsts.0.len(),
                            steps.0.len()
                        )));
                    }
                    if let Some(s) = steps
                        .0
                        .iter()
                        .find(|s| !rotations.contains(&self.normalise(**s)))
                    {
                        return Err(PlanError::Invalid(format!(
                            "{}: rotation {s} is not in the plan's rotation list",
                            here()
                        )));
                    }
                }
                _ => {}
            }
        }
        validate_degrees::degrees(self)?;
        Ok(())
    }

    /// A generation plan carries KV-cache states and returns its logits encrypted (its token,
    /// position and mask inputs feed the client or the public program, whichever reads them).
    fn validate_generation(&self, generation: &Generation) -> Result<(), PlanError> {
        let invalid = |what: String| Err(PlanError::Invalid(format!("generation plan: {what}")));
        if generation.max_context == 0 {
            return invalid("a context of 0 tokens".into());
        }
        if self.states.is_empty() {
            return invalid("no KV-cache states".into());
        }
        if !self
            .outputs
            .iter()
            .any(|o| o.name == generation.logits_output)
        {
            return invalid(format!(
                "the logits output `{}` is not an encrypted output",
                generation.logits_output
            ));
        }
        Ok(())
    }

    /// A rotation step in `0..slots`.
    pub fn normalise(&self, step: i32) -> i32 {
        step.rem_euclid(self.slots as i32)
    }

    /// Instruction counts by mnemonic (rotations in hoisted groups counted per step under
    /// `rot.h`).
    pub fn counts(&self) -> BTreeMap<&'static str, usize> {
        let mut counts = BTreeMap::new();
        for instruction in &self.instructions {
            let n = match instruction {
                Instruction::RotateHoisted { steps, .. } => steps.0.len(),
                _ => 1,
            };
            *counts.entry(instruction.mnemonic()).or_insert(0) += n;
        }
        counts
    }

    /// The disassembly: one instruction per line with its site.
    pub fn disassemble(&self) -> String {
        let mut out = String::new();
        let mut last_site = u32::MAX;
        for (k, instruction) in self.instructions.iter().enumerate() {
            let site = self.instruction_sites.get(k).copied().unwrap_or(u32::MAX);
            if site != last_site {
                if let Some(s) = self.sites.get(site as usize) {
                    out.push_str(&format!("; {}\n", s.name));
                }
                last_site = site;
            }
            out.push_str(&format!("{k:>6}  {instruction}\n"));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny_plan() -> Plan {
        let layout = Layout::row_major(&[4], 8);
        Plan {
            version: PLAN_FORMAT_VERSION,
            name: "tiny".into(),
            slots: 8,
            parameters: None,
            weights: "tiny.safetensors".into(),
            weight_shapes: BTreeMap::from([("w".into(), vec![4])]),
            client_program: String::new(),
            public_program: String::new(),
            public_inputs: vec![],
            inputs: vec![Ciphertexts {
                name: "x".into(),
                layout: layout.clone(),
                level: None,
            }],
            outputs: vec![Ciphertexts {
                name: "y".into(),
                layout,
                level: None,
            }],
            states: vec![],
            generation: None,
            plaintexts: vec![Plaintext::Gather {
                tensor: TensorRef::Weight("w".into()),
                runs: vec![Run {
                    ciphertext: 0,
                    slot: 0,
                    count: 4,
                    element: 0,
                    step: 1,
                }],
                scale: 1.0,
            }],
            rotations: vec![1],
            registers: 3,
            instructions: vec![
                Instruction::Load {
                    dst: Dst(0),
                    input: Io(0),
                    part: Part(0),
                },
                Instruction::MultiplyPlain {
                    dst: Dst(1),
                    a: Src(0),
                    plaintext: Plain(0),
                },
                Instruction::RotateHoisted {
                    dsts: Dsts(vec![2]),
                    a: Src(1),
                    steps: Steps(vec![1]),
                },
                Instruction::Store {
                    src: Src(2),
                    output: Io(0),
                    part: Part(0),
                },
            ],
            sites: vec![Site {
                name: "y".into(),
                source: "test".into(),
                layer: None,
            }],
            instruction_sites: vec![0; 4],
            checks: vec![],
        }
    }

    fn leveled(mut plan: Plan) -> Plan {
        plan.parameters = parameters::by_name("ToyBootN12");
        plan.inputs[0].level = Some(3);
        plan.outputs[0].level = Some(2);
        plan
    }

    #[test]
    fn level_rules_name_the_instruction_and_site() {
        use levels::{LevelRule, LevelState, trace};
        assert!(trace(&tiny_plan()).unwrap().is_none());
        // Stored at Δ²: the product was not rescaled.
        let err = trace(&leveled(tiny_plan())).unwrap_err();
        assert_eq!(
            (err.instruction, &err.rule),
            (3, &LevelRule::NotRescaled(2))
        );
        assert_eq!(
            err.to_string(),
            "instruction 3 (store r2, io0, #0) at site y (test): operand at scale Δ^2: Δ^1 \
             required (rescale first)"
        );
        let mut plan = leveled(tiny_plan());
        plan.registers = 4;
        plan.instructions.insert(
            3,
            Instruction::Rescale {
                dst: Dst(3),
                a: Src(2),
            },
        );
        plan.instructions[4] = Instruction::Store {
            src: Src(3),
            output: Io(0),
            part: Part(0),
        };
        plan.instruction_sites.push(0);
        plan.validate().unwrap();
        let t = trace(&plan).unwrap().unwrap();
        assert_eq!(
            t.states[3],
            Some(LevelState {
                level: 2,
                degree: 1
            })
        );
        assert_eq!(t.operating[1], Some(3));
        // Declared one level lower than it arrives.
        plan.outputs[0].level = Some(1);
        assert_eq!(
            trace(&plan).unwrap_err().rule,
            LevelRule::OutputLevel {
                output: 0,
                found: 2,
                expected: 1
            }
        );
        // A fresh input at level 0 cannot be rescaled.
        plan.inputs[0].level = Some(0);
        assert_eq!(trace(&plan).unwrap_err().rule, LevelRule::OutOfLevels);
    }

    #[test]
    fn binary_and_json_round_trip() {
        let plan = tiny_plan();
        let back = Plan::from_bytes(&plan.to_bytes().unwrap()).unwrap();
        assert_eq!(back, plan);
        let json = serde_json::to_string(&plan).unwrap();
        assert_eq!(serde_json::from_str::<Plan>(&json).unwrap(), plan);
        assert_eq!(
            plan.disassemble(),
            "; y\n     0  load r0, io0, #0\n     1  mul.p r1, r0, p0\n     2  rot.h [r2], r1, [1]\n     3  store r2, io0, #0\n"
        );
    }

    #[test]
    fn inconsistent_plans_are_rejected_before_execution() {
        let mut bytes = tiny_plan().to_bytes().unwrap();
        bytes[MAGIC.len()] = 9;
        assert!(matches!(
            Plan::from_bytes(&bytes),
            Err(PlanError::Version { found: 9 })
        ));
        assert!(matches!(
            Plan::from_bytes(b"nonsense"),
            Err(PlanError::Magic)
        ));
        let mut plan = tiny_plan();
        plan.instructions.swap(0, 1);
        assert!(
            plan.validate()
                .unwrap_err()
                .to_string()
                .contains("before any write")
        );
        let mut plan = tiny_plan();
        plan.rotations.clear();
        assert!(
            plan.validate()
                .unwrap_err()
                .to_string()
                .contains("rotation 1")
        );
        let mut plan = tiny_plan();
        plan.weight_shapes.clear();
        assert!(
            plan.validate()
                .unwrap_err()
                .to_string()
                .contains("weight `w`")
        );
        // Every truncation fails cleanly.
        let bytes = tiny_plan().to_bytes().unwrap();
        for cut in 0..bytes.len() {
            assert!(Plan::from_bytes(&bytes[..cut]).is_err());
        }
    }
}
