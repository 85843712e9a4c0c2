//! The HE IR builder: kernels append plan [`Instruction`]s over fresh virtual registers, intern
//! plaintexts, and record rotation steps, sites and op counts.

use cachemir_ir::layout::Layout;
use cachemir_ir::plan::{
    Dst, Dsts, Instruction, Io, Part, Plain, Plaintext, RangeCheck, Register, Scalar, Site, Src,
    Step, Steps,
};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

/// An encrypted tensor during lowering: one register per ciphertext of its layout. Slots outside
/// the layout hold zero.
#[derive(Debug, Clone)]
pub struct Cipher {
    pub registers: Vec<Register>,
    pub layout: Arc<Layout>,
}

/// Operation counts (what the cost model and the snapshots look at).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    /// Rotations, each one key switch (hoisted ones included).
    pub rotations: usize,
    /// Hoisted rotation groups (one decomposition each).
    pub hoisted_groups: usize,
    /// Ciphertext × plaintext multiplications.
    pub plaintext_multiplications: usize,
    /// Ciphertext × ciphertext multiplications (each with a relinearization key switch).
    pub ciphertext_multiplications: usize,
    /// Multiplications by a scalar.
    pub scalar_multiplications: usize,
    /// Additions and subtractions of any kind.
    pub additions: usize,
}

impl std::ops::Add for Counts {
    type Output = Counts;
    fn add(self, o: Counts) -> Counts {
        Counts {
            rotations: self.rotations + o.rotations,
            hoisted_groups: self.hoisted_groups + o.hoisted_groups,
            plaintext_multiplications: self.plaintext_multiplications + o.plaintext_multiplications,
            ciphertext_multiplications: self.ciphertext_multiplications
                + o.ciphertext_multiplications,
            scalar_multiplications: self.scalar_multiplications + o.scalar_multiplications,
            additions: self.additions + o.additions,
        }
    }
}

impl std::ops::Sub for Counts {
    type Output = Counts;
    fn sub(self, o: Counts) -> Counts {
        Counts {
            rotations: self.rotations - o.rotations,
            hoisted_groups: self.hoisted_groups - o.hoisted_groups,
            plaintext_multiplications: self.plaintext_multiplications - o.plaintext_multiplications,
            ciphertext_multiplications: self.ciphertext_multiplications
                - o.ciphertext_multiplications,
            scalar_multiplications: self.scalar_multiplications - o.scalar_multiplications,
            additions: self.additions - o.additions,
        }
    }
}

/// Appends instructions; see the module documentation.
#[derive(Debug)]
pub struct Builder {
    pub slots: usize,
    pub instructions: Vec<Instruction>,
    pub instruction_sites: Vec<u32>,
    pub sites: Vec<Site>,
    pub plaintexts: Vec<Plaintext>,
    pub rotations: BTreeSet<i32>,
    pub checks: Vec<RangeCheck>,
    pub registers: u32,
    pub counts: Counts,
    site: u32,
    plaintext_index: HashMap<Vec<u8>, u32>,
}

impl Builder {
    /// A builder for ciphertexts of `slots` slots (a power of two).
    pub fn new(slots: usize) -> Self {
        assert!(slots.is_power_of_two());
        Self {
            slots,
            instructions: Vec::new(),
            instruction_sites: Vec::new(),
            sites: vec![Site {
                name: "(plan)".into(),
                source: String::new(),
                layer: None,
            }],
            plaintexts: Vec::new(),
            rotations: BTreeSet::new(),
            checks: Vec::new(),
            registers: 0,
            counts: Counts::default(),
            site: 0,
            plaintext_index: HashMap::new(),
        }
    }

    /// An empty builder whose fresh registers continue this one's numbering: what a kernel builds
    /// on it can be costed by its counts and then [`Builder::append`]ed, giving the instructions
    /// building here directly would have (kernels that try alternatives build each once).
    pub fn scratch(&self) -> Builder {
        let mut scratch = Builder::new(self.slots);
        scratch.registers = self.registers;
        scratch
    }

    /// Appends what was built on `scratch` (from [`Builder::scratch`] of this builder, with
    /// nothing built here since) at the current site: its plaintexts interned here in order of
    /// first use, as building here would have interned them.
    ///
    /// # Panics
    /// If `scratch` did not start from this builder's registers, or recorded sites or range
    /// checks (a compiler bug).
    pub fn append(&mut self, scratch: Builder) {
        assert!(
            scratch.registers >= self.registers
                && scratch.sites.len() == 1
                && scratch.checks.is_empty(),
            "a scratch builder of this builder, without sites or checks"
        );
        let mut interned: Vec<Option<Plain>> = vec![None; scratch.plaintexts.len()];
        let mut plaintexts: Vec<Option<Plaintext>> =
            scratch.plaintexts.into_iter().map(Some).collect();
        for mut instruction in scratch.instructions {
            if let Instruction::AddPlain { plaintext, .. }
            | Instruction::SubPlain { plaintext, .. }
            | Instruction::MultiplyPlain { plaintext, .. } = &mut instruction
            {
                let index = plaintext.0 as usize;
                *plaintext = match interned[index] {
                    Some(p) => p,
                    None => {
                        let p = self.plaintext(plaintexts[index].take().expect("interned once"));
                        interned[index] = Some(p);
                        p
                    }
                };
            }
            self.push(instruction);
        }
        self.registers = scratch.registers;
        self.rotations.extend(scratch.rotations);
        self.counts = self.counts + scratch.counts;
    }

    /// Attributes the following instructions to a new site.
    pub fn enter_site(&mut self, name: &str, source: &str, layer: Option<u32>) {
        self.sites.push(Site {
            name: name.into(),
            source: source.into(),
            layer,
        });
        self.site = (self.sites.len() - 1) as u32;
    }

    /// The current site's index.
    pub fn site(&self) -> u32 {
        self.site
    }

    fn fresh(&mut self) -> Register {
        self.registers += 1;
        self.registers - 1
    }

    fn push(&mut self, instruction: Instruction) {
        self.instructions.push(instruction);
        self.instruction_sites.push(self.site);
    }

    /// Interns a plaintext, returning its index.
    pub fn plaintext(&mut self, plaintext: Plaintext) -> Plain {
        let key = postcard::to_stdvec(&plaintext).expect("plaintexts serialize");
        if let Some(&index) = self.plaintext_index.get(&key) {
            return Plain(index);
        }
        let index = self.plaintexts.len() as u32;
        self.plaintexts.push(plaintext);
        self.plaintext_index.insert(key, index);
        Plain(index)
    }

    pub fn load(&mut self, input: u32, part: u32) -> Register {
        let dst = self.fresh();
        self.push(Instruction::Load {
            dst: Dst(dst),
            input: Io(input),
            part: Part(part),
        });
        dst
    }

    pub fn store(&mut self, src: Register, output: u32, part: u32) {
        self.push(Instruction::Store {
            src: Src(src),
            output: Io(output),
            part: Part(part),
        });
    }

    pub fn add(&mut self, a: Register, b: Register) -> Register {
        let dst = self.fresh();
        self.counts.additions += 1;
        self.push(Instruction::Add {
            dst: Dst(dst),
            a: Src(a),
            b: Src(b),
        });
        dst
    }

    pub fn sub(&mut self, a: Register, b: Register) -> Register {
        let dst = self.fresh();
        self.counts.additions += 1;
        self.push(Instruction::Sub {
            dst: Dst(dst),
            a: Src(a),
            b: Src(b),
        });
        dst
    }

    pub fn multiply(&mut self, a: Register, b: Register) -> Register {
        let dst = self.fresh();
        self.counts.ciphertext_multiplications += 1;
        self.push(Instruction::Multiply {
            dst: Dst(dst),
            a: Src(a),
            b: Src(b),
        });
        dst
    }

    pub fn negate(&mut self, a: Register) -> Register {
        let dst = self.fresh();
        self.push(Instruction::Negate {
            dst: Dst(dst),
            a: Src(a),
        });
        dst
    }

    pub fn add_plain(&mut self, a: Register, plaintext: Plaintext) -> Register {
        let p = self.plaintext(plaintext);
        let dst = self.fresh();
        self.counts.additions += 1;
        self.push(Instruction::AddPlain {
            dst: Dst(dst),
            a: Src(a),
            plaintext: p,
        });
        dst
    }

    pub fn sub_plain(&mut self, a: Register, plaintext: Plaintext) -> Register {
        let p = self.plaintext(plaintext);
        let dst = self.fresh();
        self.counts.additions += 1;
        self.push(Instruction::SubPlain {
            dst: Dst(dst),
            a: Src(a),
            plaintext: p,
        });
        dst
    }

    pub fn multiply_plain(&mut self, a: Register, plaintext: Plaintext) -> Register {
        let p = self.plaintext(plaintext);
        let dst = self.fresh();
        self.counts.plaintext_multiplications += 1;
        self.push(Instruction::MultiplyPlain {
            dst: Dst(dst),
            a: Src(a),
            plaintext: p,
        });
        dst
    }

    /// `a + c` in every slot, empty ones included: callers keep empty slots zero (use a
    /// `Plaintext::Fill` instead where the layout has empty slots).
    pub fn add_scalar(&mut self, a: Register, value: f64) -> Register {
        let dst = self.fresh();
        self.counts.additions += 1;
        self.push(Instruction::AddScalar {
            dst: Dst(dst),
            a: Src(a),
            value: Scalar(value),
        });
        dst
    }

    pub fn multiply_scalar(&mut self, a: Register, value: f64) -> Register {
        let dst = self.fresh();
        self.counts.scalar_multiplications += 1;
        self.push(Instruction::MultiplyScalar {
            dst: Dst(dst),
            a: Src(a),
            value: Scalar(value),
        });
        dst
    }

    /// A step in `0..slots`.
    pub fn normalise(&self, step: i64) -> i32 {
        step.rem_euclid(self.slots as i64) as i32
    }

    /// `a` rotated left by `step` (no instruction for a multiple of the slot count).
    pub fn rotate(&mut self, a: Register, step: i64) -> Register {
        let step = self.normalise(step);
        if step == 0 {
            return a;
        }
        let dst = self.fresh();
        self.rotations.insert(step);
        self.counts.rotations += 1;
        self.push(Instruction::Rotate {
            dst: Dst(dst),
            a: Src(a),
            step: Step(step),
        });
        dst
    }

    /// `a` rotated left by each step, sharing one decomposition (hoisting); step 0 returns `a`.
    pub fn rotate_hoisted(&mut self, a: Register, steps: &[i64]) -> Vec<Register> {
        let normalised: Vec<i32> = steps.iter().map(|&s| self.normalise(s)).collect();
        let nonzero: Vec<i32> = normalised.iter().copied().filter(|&s| s != 0).collect();
        let mut distinct = nonzero.clone();
        distinct.sort_unstable();
        distinct.dedup();
        let rotated: HashMap<i32, Register> = match distinct.len() {
            0 => HashMap::new(),
            1 => HashMap::from([(distinct[0], self.rotate(a, distinct[0] as i64))]),
            _ => {
                let dsts: Vec<Register> = distinct.iter().map(|_| self.fresh()).collect();
                self.rotations.extend(&distinct);
                self.counts.rotations += distinct.len();
                self.counts.hoisted_groups += 1;
                self.push(Instruction::RotateHoisted {
                    dsts: Dsts(dsts.clone()),
                    a: Src(a),
                    steps: Steps(distinct.clone()),
                });
                distinct.iter().copied().zip(dsts).collect()
            }
        };
        normalised
            .iter()
            .map(|s| if *s == 0 { a } else { rotated[s] })
            .collect()
    }

    /// The sum of `terms` as a balanced tree of additions (`None` when empty).
    pub fn sum(&mut self, terms: &[Register]) -> Option<Register> {
        match terms {
            [] => None,
            [one] => Some(*one),
            _ => {
                let (left, right) = terms.split_at(terms.len() / 2);
                let (l, r) = (self.sum(left)?, self.sum(right)?);
                Some(self.add(l, r))
            }
        }
    }

    /// Records a range check on `register` after the last instruction.
    pub fn check(&mut self, register: Register, low: f64, high: f64, layout: &Layout, part: usize) {
        let occupied = cachemir_ir::layout::runs_of(std::slice::from_ref(&layout.map[part]));
        self.checks.push(RangeCheck {
            after: self.instructions.len().saturating_sub(1) as u32,
            register,
            site: self.site,
            low,
            high,
            occupied,
        });
    }
}

/// Everything of a plan that is not instructions.
#[derive(Debug, Clone, Default)]
pub struct Interface {
    pub name: String,
    pub parameters: Option<cachemir_ir::plan::Parameters>,
    pub weights: String,
    pub weight_shapes: std::collections::BTreeMap<String, Vec<usize>>,
    pub client_program: String,
    pub public_program: String,
    pub public_inputs: Vec<String>,
    pub inputs: Vec<cachemir_ir::plan::Ciphertexts>,
    pub outputs: Vec<cachemir_ir::plan::Ciphertexts>,
    pub states: Vec<cachemir_ir::plan::State>,
}

impl Builder {
    /// The plan: `interface` plus the instructions built so far.
    pub fn finish(self, interface: Interface) -> cachemir_ir::plan::Plan {
        cachemir_ir::plan::Plan {
            version: cachemir_ir::plan::PLAN_FORMAT_VERSION,
            name: interface.name,
            slots: self.slots,
            parameters: interface.parameters,
            weights: interface.weights,
            weight_shapes: interface.weight_shapes,
            client_program: interface.client_program,
            public_program: interface.public_program,
            public_inputs: interface.public_inputs,
            inputs: interface.inputs,
            outputs: interface.outputs,
            states: interface.states,
            generation: None,
            plaintexts: self.plaintexts,
            rotations: self.rotations.into_iter().collect(),
            registers: self.registers,
            instructions: self.instructions,
            sites: self.sites,
            instruction_sites: self.instruction_sites,
            checks: self.checks,
        }
    }
}
