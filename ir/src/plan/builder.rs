//! Small plans written instruction by instruction, for tests and fuzz seeds (feature
//! `test-support`).
//!
//! Registers are numbered in the order instructions write them, so a builder's plan is the plan
//! one would write out by hand with `Dst(0)`, `Dst(1)`, …; the rotation steps and the register
//! count are derived from the instructions when the plan is [built](PlanBuilder::build), and each
//! instruction belongs to the [site](PlanBuilder::site) declared last.

use super::{
    Ciphertexts, Dst, Dsts, Instruction, Io, Level, PLAN_FORMAT_VERSION, Parameters, Part, Plain,
    Plaintext, Plan, RangeCheck, Register, Scalar, Site, Slots, Src, State, Step, Steps, TensorRef,
};
use crate::layout::{Layout, Run};

/// A plan under construction: declarations (inputs, outputs, states, weights, plaintexts,
/// sites, range checks) and one method per instruction, each returning the register it writes.
#[derive(Debug, Clone)]
pub struct PlanBuilder {
    plan: Plan,
}

impl PlanBuilder {
    /// An empty plan named `name` over `slots` slots per ciphertext: no parameters (unleveled),
    /// no weights, no programs, no site yet.
    pub fn new(name: &str, slots: usize) -> Self {
        PlanBuilder {
            plan: Plan {
                version: PLAN_FORMAT_VERSION,
                name: name.into(),
                slots,
                parameters: None,
                weights: String::new(),
                weight_shapes: Default::default(),
                client_program: String::new(),
                public_program: String::new(),
                public_inputs: vec![],
                inputs: vec![],
                outputs: vec![],
                states: vec![],
                generation: None,
                plaintexts: vec![],
                rotations: vec![],
                registers: 0,
                instructions: vec![],
                sites: vec![],
                instruction_sites: vec![],
                checks: vec![],
            },
        }
    }

    /// The plan so far (rotation steps not derived yet).
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// The CKKS parameters a leveled plan is compiled for.
    pub fn parameters(&mut self, parameters: Parameters) -> &mut Self {
        self.plan.parameters = Some(parameters);
        self
    }

    /// The weights file (safetensors), relative to the plan file.
    pub fn weights(&mut self, file: &str) -> &mut Self {
        self.plan.weights = file.into();
        self
    }

    /// Declares the weight `name` of shape `shape` (what plaintexts read).
    pub fn weight(&mut self, name: &str, shape: &[usize]) -> &mut Self {
        self.plan.weight_shapes.insert(name.into(), shape.to_vec());
        self
    }

    /// Declares the weight `name` of shape `shape` and adds the plaintext of its elements in
    /// order in the first slots of one ciphertext (a `Gather` at scale 1); returns its index.
    pub fn gathered_weight(&mut self, name: &str, shape: &[usize]) -> u32 {
        self.weight(name, shape);
        let elements: usize = shape.iter().product();
        self.plaintext(Plaintext::Gather {
            tensor: TensorRef::Weight(name.into()),
            runs: vec![Run {
                ciphertext: 0,
                slot: 0,
                count: elements as u32,
                element: 0,
                step: 1,
            }],
            scale: 1.0,
        })
    }

    /// Declares a public model input (fed to the public program).
    pub fn public_input(&mut self, name: &str) -> &mut Self {
        self.plan.public_inputs.push(name.into());
        self
    }

    /// Declares an encrypted input at `level` (`None` in an unleveled plan); returns its index
    /// for [`load`](Self::load).
    pub fn input(&mut self, name: &str, layout: &Layout, level: Option<u32>) -> u32 {
        push_index(&mut self.plan.inputs, ciphertexts(name, layout, level))
    }

    /// Declares an encrypted output returned at `level`; returns its index for
    /// [`store`](Self::store).
    pub fn output(&mut self, name: &str, layout: &Layout, level: Option<u32>) -> u32 {
        push_index(&mut self.plan.outputs, ciphertexts(name, layout, level))
    }

    /// Declares a KV-cache state: the output `output` becomes the input `input` of the next
    /// decode step.
    pub fn state(&mut self, input: &str, output: &str) -> &mut Self {
        self.plan.states.push(State {
            input: input.into(),
            output: output.into(),
        });
        self
    }

    /// Adds a plaintext to the table; returns its index for the `*_plain` instructions.
    pub fn plaintext(&mut self, plaintext: Plaintext) -> u32 {
        push_index(&mut self.plan.plaintexts, plaintext)
    }

    /// Declares a site; the instructions added from now on belong to it. Returns its index (for
    /// range checks).
    pub fn site(&mut self, name: &str, source: &str, layer: Option<u32>) -> u32 {
        push_index(
            &mut self.plan.sites,
            Site {
                name: name.into(),
                source: source.into(),
                layer,
            },
        )
    }

    /// Adds a calibrated range check.
    pub fn check(&mut self, check: RangeCheck) -> &mut Self {
        self.plan.checks.push(check);
        self
    }

    /// Appends an instruction writing one fresh register, which `instruction` receives; returns
    /// that register.
    ///
    /// # Panics
    /// When no site is declared yet (a test bug).
    pub fn push(&mut self, instruction: impl FnOnce(Dst) -> Instruction) -> Register {
        let dst = self.fresh(1);
        self.append(instruction(Dst(dst)));
        dst
    }

    /// `load`: part `part` of the encrypted input `input`.
    pub fn load(&mut self, input: u32, part: u32) -> Register {
        self.push(|dst| Instruction::Load {
            dst,
            input: Io(input),
            part: Part(part),
        })
    }

    /// `store`: `src` as part `part` of the encrypted output `output`.
    pub fn store(&mut self, src: Register, output: u32, part: u32) {
        self.append(Instruction::Store {
            src: Src(src),
            output: Io(output),
            part: Part(part),
        });
    }

    /// `add`: `a + b`.
    pub fn add(&mut self, a: Register, b: Register) -> Register {
        self.push(|dst| Instruction::Add {
            dst,
            a: Src(a),
            b: Src(b),
        })
    }

    /// `sub`: `a − b`.
    pub fn sub(&mut self, a: Register, b: Register) -> Register {
        self.push(|dst| Instruction::Sub {
            dst,
            a: Src(a),
            b: Src(b),
        })
    }

    /// `mul`: the ciphertext product `a · b`, relinearized.
    pub fn multiply(&mut self, a: Register, b: Register) -> Register {
        self.push(|dst| Instruction::Multiply {
            dst,
            a: Src(a),
            b: Src(b),
        })
    }

    /// `mul.nr`: the ciphertext product `a · b` without relinearization (degree 2).
    pub fn multiply_no_relinearize(&mut self, a: Register, b: Register) -> Register {
        self.push(|dst| Instruction::MultiplyNoRelinearize {
            dst,
            a: Src(a),
            b: Src(b),
        })
    }

    /// `relin`: `a` (degree 2) relinearized to degree 1.
    pub fn relinearize(&mut self, a: Register) -> Register {
        self.push(|dst| Instruction::Relinearize { dst, a: Src(a) })
    }

    /// `add.p`: `a` plus the plaintext `plaintext`.
    pub fn add_plain(&mut self, a: Register, plaintext: u32) -> Register {
        self.push(|dst| Instruction::AddPlain {
            dst,
            a: Src(a),
            plaintext: Plain(plaintext),
        })
    }

    /// `sub.p`: `a` minus the plaintext `plaintext`.
    pub fn sub_plain(&mut self, a: Register, plaintext: u32) -> Register {
        self.push(|dst| Instruction::SubPlain {
            dst,
            a: Src(a),
            plaintext: Plain(plaintext),
        })
    }

    /// `mul.p`: `a` times the plaintext `plaintext`.
    pub fn multiply_plain(&mut self, a: Register, plaintext: u32) -> Register {
        self.push(|dst| Instruction::MultiplyPlain {
            dst,
            a: Src(a),
            plaintext: Plain(plaintext),
        })
    }

    /// `add.s`: `a + value` in every slot.
    pub fn add_scalar(&mut self, a: Register, value: f64) -> Register {
        self.push(|dst| Instruction::AddScalar {
            dst,
            a: Src(a),
            value: Scalar(value),
        })
    }

    /// `mul.s`: `a · value` in every slot.
    pub fn multiply_scalar(&mut self, a: Register, value: f64) -> Register {
        self.push(|dst| Instruction::MultiplyScalar {
            dst,
            a: Src(a),
            value: Scalar(value),
        })
    }

    /// `neg`: `−a`.
    pub fn negate(&mut self, a: Register) -> Register {
        self.push(|dst| Instruction::Negate { dst, a: Src(a) })
    }

    /// `rot`: `a` rotated left by `step` slots (negative: right).
    pub fn rotate(&mut self, a: Register, step: i32) -> Register {
        self.push(|dst| Instruction::Rotate {
            dst,
            a: Src(a),
            step: Step(step),
        })
    }

    /// `rot.h`: `a` rotated by each of `steps` with one shared decomposition (hoisting); returns
    /// one fresh register per step.
    ///
    /// # Panics
    /// When no site is declared yet (a test bug).
    pub fn rotate_hoisted(&mut self, a: Register, steps: &[i32]) -> Vec<Register> {
        let first = self.fresh(steps.len());
        let dsts: Vec<Register> = (first..first + steps.len() as Register).collect();
        self.append(Instruction::RotateHoisted {
            dsts: Dsts(dsts.clone()),
            a: Src(a),
            steps: Steps(steps.to_vec()),
        });
        dsts
    }

    /// `rescale`: divides `a` by the last prime of its level (one level down).
    pub fn rescale(&mut self, a: Register) -> Register {
        self.push(|dst| Instruction::Rescale { dst, a: Src(a) })
    }

    /// `level.down`: `a` brought down to `level` without rescaling.
    pub fn level_down(&mut self, a: Register, level: u32) -> Register {
        self.push(|dst| Instruction::LevelDown {
            dst,
            a: Src(a),
            level: Level(level),
        })
    }

    /// `boot`: `a` bootstrapped over `slots` slots to `level`, multiplied by `scale` on the way.
    pub fn bootstrap(&mut self, a: Register, slots: u32, level: u32, scale: f64) -> Register {
        self.push(|dst| Instruction::Bootstrap {
            dst,
            a: Src(a),
            slots: Slots(slots),
            level: Level(level),
            scale: Scalar(scale),
        })
    }

    /// `free`: `a` is not read again.
    pub fn free(&mut self, a: Register) {
        self.append(Instruction::Free { a: Src(a) });
    }

    /// The plan: registers counted, rotation steps those of `rot` and `rot.h` normalised to
    /// `0..slots`, sorted and deduplicated. Not validated (tests of invalid plans build them
    /// too).
    pub fn build(self) -> Plan {
        let mut plan = self.plan;
        let slots = i32::try_from(plan.slots).unwrap_or(i32::MAX);
        let mut rotations: Vec<i32> = plan
            .instructions
            .iter()
            .flat_map(|i| match i {
                Instruction::Rotate { step, .. } => vec![step.0],
                Instruction::RotateHoisted { steps, .. } => steps.0.clone(),
                _ => vec![],
            })
            .map(|step| step.rem_euclid(slots))
            .collect();
        rotations.sort_unstable();
        rotations.dedup();
        plan.rotations = rotations;
        plan
    }

    fn fresh(&mut self, count: usize) -> Register {
        let first = self.plan.registers;
        self.plan.registers += count as Register;
        first
    }

    fn append(&mut self, instruction: Instruction) {
        let site = self
            .plan
            .sites
            .len()
            .checked_sub(1)
            .expect("declare a site before the first instruction");
        self.plan.instructions.push(instruction);
        self.plan.instruction_sites.push(site as u32);
    }
}

fn ciphertexts(name: &str, layout: &Layout, level: Option<u32>) -> Ciphertexts {
    Ciphertexts {
        name: name.into(),
        layout: layout.clone(),
        level,
    }
}

fn push_index<T>(items: &mut Vec<T>, item: T) -> u32 {
    items.push(item);
    (items.len() - 1) as u32
}
