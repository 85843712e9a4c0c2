//! Shared by the VM test files: tiny plans over 8 slots, their weight `w` and instructions, and a
//! `sim` backend with one operation altered.

use cachemir_ir::layout::{Layout, Run};
use cachemir_ir::plan::{
    Ciphertexts, Dst, Instruction, Io, PLAN_FORMAT_VERSION, Parameters, Part, Plaintext, Plan,
    Site, Src, TensorRef,
};
use cachemir_vm::{Backend, BackendError, CiphertextInfo, PlainSlots, SimBackend, SimCiphertext};
use std::collections::{BTreeMap, HashMap};

pub const SLOTS: usize = 8;

/// `count` slots from `slot` of ciphertext 0, from element 0 on.
pub fn run(slot: u32, count: u32) -> Run {
    Run {
        ciphertext: 0,
        slot,
        count,
        element: 0,
        step: 1,
    }
}

/// A plan `name` over 8 slots with one input `x` at `input_level`, one output `y{o}` per entry of
/// `output_levels` (all row-major `[8]`), the weight `w` of shape `[8]` (in
/// `{name}.safetensors`), and the given plaintexts and instructions (one site per instruction:
/// `site{k}`, source `test`); registers and rotations are derived.
pub fn plan(
    name: &str,
    parameters: Option<Parameters>,
    input_level: Option<u32>,
    output_levels: &[Option<u32>],
    plaintexts: Vec<Plaintext>,
    instructions: Vec<Instruction>,
) -> Plan {
    let layout = Layout::row_major(&[SLOTS], SLOTS);
    let registers = instructions
        .iter()
        .flat_map(|i| {
            let (r, w) = i.registers();
            r.into_iter().chain(w)
        })
        .max()
        .map_or(0, |r| r + 1);
    let mut rotations: Vec<i32> = instructions
        .iter()
        .flat_map(|i| match i {
            Instruction::Rotate { step, .. } => vec![step.0],
            Instruction::RotateHoisted { steps, .. } => steps.0.clone(),
            _ => vec![],
        })
        .map(|s| s.rem_euclid(SLOTS as i32))
        .collect();
    rotations.sort_unstable();
    rotations.dedup();
    Plan {
        version: PLAN_FORMAT_VERSION,
        name: name.into(),
        slots: SLOTS,
        parameters,
        weights: format!("{name}.safetensors"),
        weight_shapes: BTreeMap::from([("w".into(), vec![SLOTS])]),
        client_program: String::new(),
        public_program: String::new(),
        public_inputs: vec![],
        inputs: vec![Ciphertexts {
            name: "x".into(),
            layout: layout.clone(),
            level: input_level,
        }],
        outputs: output_levels
            .iter()
            .enumerate()
            .map(|(o, &level)| Ciphertexts {
                name: format!("y{o}"),
                layout: layout.clone(),
                level,
            })
            .collect(),
        states: vec![],
        generation: None,
        plaintexts,
        rotations,
        registers,
        sites: (0..instructions.len())
            .map(|k| Site {
                name: format!("site{k}"),
                source: "test".into(),
                layer: None,
            })
            .collect(),
        instruction_sites: (0..instructions.len() as u32).collect(),
        instructions,
        checks: vec![],
    }
}

/// The weight `w` over all 8 slots, at scale 1.
pub fn w_plain() -> Plaintext {
    Plaintext::Gather {
        tensor: TensorRef::Weight("w".into()),
        runs: vec![run(0, SLOTS as u32)],
        scale: 1.0,
    }
}

/// The plan's tensors: the weight `w` holding `w`.
pub fn weights(w: Vec<f64>) -> HashMap<TensorRef, Vec<f64>> {
    HashMap::from([(TensorRef::Weight("w".into()), w)])
}

/// `load r{dst}, io0, #0`.
pub fn load(dst: u32) -> Instruction {
    Instruction::Load {
        dst: Dst(dst),
        input: Io(0),
        part: Part(0),
    }
}

/// `store r{src}, io{output}, #0`.
pub fn store(src: u32, output: u32) -> Instruction {
    Instruction::Store {
        src: Src(src),
        output: Io(output),
        part: Part(0),
    }
}

/// What [`Altered`] does differently from `sim`.
#[derive(Debug, Clone, Copy)]
#[allow(
    dead_code,
    reason = "each test file builds one variant; the other is unused in its crate"
)]
pub enum Alteration {
    /// Bootstrapping is refused ([`BackendError::Unsupported`]).
    NoBootstrap,
    /// A broken `rescale` that keeps the input's level.
    RescaleKeepsLevel,
}

/// `sim` under another name with one operation altered. Like CKKS without the secret key it
/// cannot read its values (`peek` is `None`), so the VM skips range checks on it.
#[derive(Debug)]
pub struct Altered {
    pub sim: SimBackend,
    pub name: &'static str,
    pub alteration: Alteration,
}

impl Backend for Altered {
    type Ciphertext = SimCiphertext;
    fn name(&self) -> &'static str {
        self.name
    }
    fn slots(&self) -> usize {
        self.sim.slots()
    }
    fn add(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.sim.add(a, b)
    }
    fn sub(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.sim.sub(a, b)
    }
    fn mul(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.sim.mul(a, b)
    }
    fn add_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.sim.add_plain(a, p)
    }
    fn sub_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.sim.sub_plain(a, p)
    }
    fn mul_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.sim.mul_plain(a, p)
    }
    fn add_scalar(&self, a: &SimCiphertext, c: f64) -> Result<SimCiphertext, BackendError> {
        self.sim.add_scalar(a, c)
    }
    fn mul_scalar(&self, a: &SimCiphertext, c: f64) -> Result<SimCiphertext, BackendError> {
        self.sim.mul_scalar(a, c)
    }
    fn negate(&self, a: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.sim.negate(a)
    }
    fn rotate(&self, a: &SimCiphertext, step: i32) -> Result<SimCiphertext, BackendError> {
        self.sim.rotate(a, step)
    }
    fn rescale(&self, a: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        let mut out = self.sim.rescale(a)?;
        if let Alteration::RescaleKeepsLevel = self.alteration {
            out.level = a.level;
        }
        Ok(out)
    }
    fn level_down(&self, a: &SimCiphertext, level: u32) -> Result<SimCiphertext, BackendError> {
        self.sim.level_down(a, level)
    }
    fn bootstrap(
        &self,
        a: &SimCiphertext,
        slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<SimCiphertext, BackendError> {
        match self.alteration {
            Alteration::NoBootstrap => Err(BackendError::Unsupported {
                backend: self.name,
                what: "bootstrapping".into(),
            }),
            _ => self.sim.bootstrap(a, slots, level, scale),
        }
    }
    fn info(&self, a: &SimCiphertext) -> CiphertextInfo {
        self.sim.info(a)
    }
}
