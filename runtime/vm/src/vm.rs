//! The plan VM: executes a [`Plan`]'s instruction stream on any [`Backend`].
//!
//! Preparation ([`Vm::new`]) validates the plan and the tensors its plaintexts read, and computes
//! once from [`Instruction::registers`] where every register value dies: each value is dropped
//! right after its last read (or right after it is written, when nothing reads it). Plaintext slot
//! vectors are built from the tensors with [`Plaintext::slots`] at first use, kept in a bounded
//! cache while a later instruction still needs them, and dropped after their last use.
//!
//! For a leveled plan (`plan.parameters` set), preparation also runs the static level check
//! ([`levels::trace`]), so that a plan running out of levels or mixing levels or scales fails
//! before any work on any backend ([`VmError::Levels`]). Execution then checks, on every
//! backend, that the level the backend reports for each value is the trace's, and, where the
//! backend can read values ([`Backend::peek`]: `sim`), that every `boot` input holds occupied
//! slots in [−1, 1] ([`VmError::BootstrapRange`]).
//!
//! [`Plaintext::slots`]: cachemir_ir::plan::Plaintext::slots

use crate::backend::{Backend, Client, PlainSlots};
use crate::error::VmError;
use crate::report::{OutputInfo, RangeViolation, Report};
use cachemir_ir::plan::levels::{self, LevelTrace};
use cachemir_ir::plan::{Instruction, Plan, PlanError, Register, TensorRef};
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;

/// Tuning of a [`Vm`].
#[derive(Debug, Clone, PartialEq)]
pub struct VmOptions {
    /// Bytes of plaintext slot vectors (8 bytes a slot) kept for later uses; at least one vector
    /// is kept. Plaintexts that do not fit are rebuilt at each use.
    pub plaintext_cache_bytes: usize,
    /// Evaluate the plan's range checks where the backend can read values ([`Backend::peek`]).
    pub check_ranges: bool,
}

impl Default for VmOptions {
    fn default() -> Self {
        Self {
            plaintext_cache_bytes: 256 << 20,
            check_ranges: true,
        }
    }
}

/// The result of [`Vm::run`]: `outputs[o][part]` for each encrypted output of the plan, and what
/// the run observed.
#[derive(Debug)]
pub struct Execution<C> {
    pub outputs: Vec<Vec<C>>,
    pub report: Report,
}

/// A plan prepared for execution (see the module documentation). Reusable across runs.
#[derive(Debug)]
pub struct Vm<'p> {
    plan: &'p Plan,
    tensors: &'p HashMap<TensorRef, Vec<f64>>,
    options: VmOptions,
    /// `drops[k]`: registers whose value dies at instruction `k` (dropped after it).
    drops: Vec<Vec<Register>>,
    /// `last_load[k]`: instruction `k` is the last load of its input ciphertext (it may move it).
    last_load: Vec<bool>,
    /// Last instruction using each plaintext (`usize::MAX` when unused).
    plaintext_last_use: Vec<usize>,
    /// Range checks (indices into `plan.checks`) by the instruction they follow.
    checks_after: BTreeMap<usize, Vec<usize>>,
    /// The level and scale of every register write, for leveled plans.
    levels: Option<LevelTrace>,
}

impl<'p> Vm<'p> {
    /// Prepares `plan` with the tensors its plaintexts read (`TensorRef` → row-major values).
    ///
    /// # Errors
    /// [`VmError::Plan`] when the plan does not [validate](Plan::validate) or a range check names
    /// an instruction, register, site or slot that does not exist; [`VmError::Levels`] when a
    /// leveled plan breaks the level rules ([`levels::trace`]); [`VmError::MissingTensor`] for a
    /// plaintext reading a tensor absent from `tensors` (naming its first instruction and site);
    /// [`VmError::TensorSize`] for a weight whose size differs from `plan.weight_shapes`.
    pub fn new(plan: &'p Plan, tensors: &'p HashMap<TensorRef, Vec<f64>>) -> Result<Self, VmError> {
        plan.validate()?;
        let levels = levels::trace(plan)?;
        let n = plan.instructions.len();
        let mut drops = vec![Vec::new(); n];
        let mut live = vec![false; plan.registers as usize];
        for (k, instruction) in plan.instructions.iter().enumerate().rev() {
            let (reads, writes) = instruction.registers();
            for &w in &writes {
                if !live[w as usize] && !drops[k].contains(&w) {
                    drops[k].push(w);
                }
            }
            for &w in &writes {
                live[w as usize] = false;
            }
            for &r in &reads {
                if !live[r as usize] {
                    live[r as usize] = true;
                    if !writes.contains(&r) {
                        drops[k].push(r);
                    }
                }
            }
        }
        let mut last_load = vec![false; n];
        let mut loads: HashMap<(u32, u32), usize> = HashMap::new();
        let mut plaintext_last_use = vec![usize::MAX; plan.plaintexts.len()];
        let mut first_use: BTreeMap<usize, usize> = BTreeMap::new();
        for (k, instruction) in plan.instructions.iter().enumerate() {
            match instruction {
                Instruction::Load { input, part, .. } => {
                    loads.insert((input.0, part.0), k);
                }
                Instruction::AddPlain { plaintext, .. }
                | Instruction::SubPlain { plaintext, .. }
                | Instruction::MultiplyPlain { plaintext, .. } => {
                    let p = plaintext.0 as usize;
                    plaintext_last_use[p] = k;
                    first_use.entry(p).or_insert(k);
                }
                _ => {}
            }
        }
        for k in loads.into_values() {
            last_load[k] = true;
        }
        for (&p, &k) in &first_use {
            let Some(tensor) = plan.plaintexts[p].tensor() else {
                continue;
            };
            let Some(values) = tensors.get(tensor) else {
                return Err(VmError::MissingTensor {
                    index: p,
                    tensor: tensor.clone(),
                    instruction: k,
                    disassembly: plan.instructions[k].to_string(),
                    site: site_name(plan, k),
                });
            };
            if let TensorRef::Weight(name) = tensor
                && let Some(shape) = plan.weight_shapes.get(name)
                && shape.iter().product::<usize>() != values.len()
            {
                return Err(VmError::TensorSize {
                    tensor: tensor.clone(),
                    given: values.len(),
                    shape: shape.clone(),
                });
            }
        }
        let mut checks_after: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (i, check) in plan.checks.iter().enumerate() {
            let invalid =
                |what: &str| VmError::Plan(PlanError::Invalid(format!("range check {i}: {what}")));
            if check.after as usize >= n {
                return Err(invalid("after an instruction that does not exist"));
            }
            if check.register >= plan.registers {
                return Err(invalid("register out of range"));
            }
            if check.site as usize >= plan.sites.len() {
                return Err(invalid("site out of range"));
            }
            if check
                .occupied
                .iter()
                .any(|r| r.slot as usize + r.count as usize > plan.slots)
            {
                return Err(invalid("occupied slots out of range"));
            }
            checks_after
                .entry(check.after as usize)
                .or_default()
                .push(i);
        }
        Ok(Self {
            plan,
            tensors,
            options: VmOptions::default(),
            drops,
            last_load,
            plaintext_last_use,
            checks_after,
            levels,
        })
    }

    /// The same VM with other options.
    pub fn with_options(mut self, options: VmOptions) -> Self {
        self.options = options;
        self
    }

    /// The plan this VM executes.
    pub fn plan(&self) -> &'p Plan {
        self.plan
    }

    /// Executes the plan on `backend`: `inputs[i][part]` is ciphertext `part` of encrypted input
    /// `i` (in `plan.inputs` order, as many as its layout has).
    ///
    /// # Errors
    /// [`VmError::Slots`], [`VmError::Inputs`] and [`VmError::InputParts`] for inputs that do not
    /// fit the plan; [`VmError::Input`] for an input ciphertext of a leveled plan at another
    /// level than the plan declares; [`VmError::Instruction`] (index, disassembly, site) when an
    /// operation fails or the backend's level of a value differs from the plan's level trace;
    /// [`VmError::BootstrapRange`] (index, disassembly, site) when a leveled plan bootstraps a
    /// value with an occupied slot outside [−1, 1] (on backends that can read values);
    /// [`VmError::OutputNotWritten`] when the plan leaves an output ciphertext unstored. Range
    /// violations are not errors: they are collected in the report.
    pub fn run<B: Backend>(
        &self,
        backend: &B,
        inputs: Vec<Vec<B::Ciphertext>>,
    ) -> Result<Execution<B::Ciphertext>, VmError> {
        let start = Instant::now();
        let plan = self.plan;
        if backend.slots() != plan.slots {
            return Err(VmError::Slots {
                plan: plan.slots,
                backend: backend.name(),
                given: backend.slots(),
            });
        }
        if inputs.len() != plan.inputs.len() {
            return Err(VmError::Inputs {
                given: inputs.len(),
                expected: plan.inputs.len(),
            });
        }
        for (io, given) in plan.inputs.iter().zip(&inputs) {
            if given.len() != io.layout.ciphertexts() {
                return Err(VmError::InputParts {
                    name: io.name.clone(),
                    given: given.len(),
                    expected: io.layout.ciphertexts(),
                });
            }
            if self.levels.is_some() {
                for (part, c) in given.iter().enumerate() {
                    if let (Some(found), Some(declared)) = (backend.info(c).level, io.level)
                        && found != declared
                    {
                        return Err(VmError::Input {
                            name: io.name.clone(),
                            part,
                            message: format!(
                                "ciphertext at level {found}; the plan declares level {declared}"
                            ),
                        });
                    }
                }
            }
        }
        let mut inputs: Vec<Vec<Option<B::Ciphertext>>> = inputs
            .into_iter()
            .map(|parts| parts.into_iter().map(Some).collect())
            .collect();
        let mut outputs: Vec<Vec<Option<B::Ciphertext>>> = plan
            .outputs
            .iter()
            .map(|o| vec![None; o.layout.ciphertexts()])
            .collect();
        let mut registers: Vec<Option<B::Ciphertext>> = vec![None; plan.registers as usize];
        let mut live = 0usize;
        let mut report = Report {
            backend: backend.name(),
            ..Report::default()
        };
        let mut cache = PlainCache {
            slots: vec![None; plan.plaintexts.len()],
            cached: 0,
            capacity: (self.options.plaintext_cache_bytes / (8 * plan.slots).max(1)).max(1),
            built: 0,
        };

        for (k, instruction) in plan.instructions.iter().enumerate() {
            let fail = |message: String| VmError::Instruction {
                index: k,
                instruction: instruction.to_string(),
                site: site_name(plan, k),
                message,
            };
            *report.counts.entry(instruction.mnemonic()).or_insert(0) += 1;
            let read = |r: u32| -> Result<&B::Ciphertext, VmError> {
                registers[r as usize]
                    .as_ref()
                    .ok_or_else(|| fail(format!("r{r} holds no value (freed before this use)")))
            };
            let backend_error = |e: crate::backend::BackendError| fail(e.to_string());
            let results: Vec<(Register, B::Ciphertext)> = match instruction {
                Instruction::Load { dst, input, part } => {
                    let slot = &mut inputs[input.0 as usize][part.0 as usize];
                    let value = if self.last_load[k] {
                        slot.take()
                    } else {
                        slot.clone()
                    };
                    let value =
                        value.ok_or_else(|| fail("input ciphertext already consumed".into()))?;
                    vec![(dst.0, value)]
                }
                Instruction::Store { src, output, part } => {
                    let value = if self.drops[k].contains(&src.0) {
                        let value = registers[src.0 as usize].take();
                        if value.is_some() {
                            live -= 1;
                        }
                        value.ok_or_else(|| fail(format!("r{} holds no value", src.0)))?
                    } else {
                        read(src.0)?.clone()
                    };
                    outputs[output.0 as usize][part.0 as usize] = Some(value);
                    vec![]
                }
                Instruction::Add { dst, a, b } => vec![(
                    dst.0,
                    backend.add(read(a.0)?, read(b.0)?).map_err(backend_error)?,
                )],
                Instruction::Sub { dst, a, b } => vec![(
                    dst.0,
                    backend.sub(read(a.0)?, read(b.0)?).map_err(backend_error)?,
                )],
                Instruction::Multiply { dst, a, b } => vec![(
                    dst.0,
                    backend.mul(read(a.0)?, read(b.0)?).map_err(backend_error)?,
                )],
                Instruction::MultiplyNoRelinearize { dst, a, b } => vec![(
                    dst.0,
                    backend
                        .mul_no_relinearize(read(a.0)?, read(b.0)?)
                        .map_err(backend_error)?,
                )],
                Instruction::Relinearize { dst, a } => vec![(
                    dst.0,
                    backend.relinearize(read(a.0)?).map_err(backend_error)?,
                )],
                Instruction::AddPlain { dst, a, plaintext }
                | Instruction::SubPlain { dst, a, plaintext }
                | Instruction::MultiplyPlain { dst, a, plaintext } => {
                    let values = cache.get(self, plaintext.0, k).map_err(fail)?;
                    let p = PlainSlots {
                        index: plaintext.0,
                        values: &values,
                    };
                    let x = read(a.0)?;
                    let result = match instruction {
                        Instruction::AddPlain { .. } => backend.add_plain(x, p),
                        Instruction::SubPlain { .. } => backend.sub_plain(x, p),
                        _ => backend.mul_plain(x, p),
                    };
                    vec![(dst.0, result.map_err(backend_error)?)]
                }
                Instruction::AddScalar { dst, a, value } => vec![(
                    dst.0,
                    backend
                        .add_scalar(read(a.0)?, value.0)
                        .map_err(backend_error)?,
                )],
                Instruction::MultiplyScalar { dst, a, value } => vec![(
                    dst.0,
                    backend
                        .mul_scalar(read(a.0)?, value.0)
                        .map_err(backend_error)?,
                )],
                Instruction::Negate { dst, a } => {
                    vec![(dst.0, backend.negate(read(a.0)?).map_err(backend_error)?)]
                }
                Instruction::Rotate { dst, a, step } => {
                    report.rotations += 1;
                    vec![(
                        dst.0,
                        backend.rotate(read(a.0)?, step.0).map_err(backend_error)?,
                    )]
                }
                Instruction::RotateHoisted { dsts, a, steps } => {
                    report.rotations += steps.0.len();
                    let rotated = backend
                        .rotate_hoisted(read(a.0)?, &steps.0)
                        .map_err(backend_error)?;
                    if rotated.len() != dsts.0.len() {
                        return Err(fail(format!(
                            "the backend returned {} rotations for {} steps",
                            rotated.len(),
                            steps.0.len()
                        )));
                    }
                    dsts.0.iter().copied().zip(rotated).collect()
                }
                Instruction::Rescale { dst, a } => {
                    vec![(dst.0, backend.rescale(read(a.0)?).map_err(backend_error)?)]
                }
                Instruction::LevelDown { dst, a, level } => vec![(
                    dst.0,
                    backend
                        .level_down(read(a.0)?, level.0)
                        .map_err(backend_error)?,
                )],
                Instruction::Bootstrap {
                    dst,
                    a,
                    slots,
                    level,
                    scale,
                } => {
                    let x = read(a.0)?;
                    if self.levels.is_some()
                        && let Some(values) = backend.peek(x)
                    {
                        bootstrap_input(plan, k, slots.0, &values)?;
                    }
                    vec![(
                        dst.0,
                        backend
                            .bootstrap(x, slots.0, level.0, scale.0)
                            .map_err(backend_error)?,
                    )]
                }
                Instruction::Free { a } => {
                    if registers[a.0 as usize].take().is_some() {
                        live -= 1;
                    }
                    vec![]
                }
            };
            if let Some(trace) = &self.levels
                && let Some(Some(state)) = trace.states.get(k)
            {
                for (_, value) in &results {
                    if let Some(level) = backend.info(value).level
                        && level != state.level
                    {
                        return Err(fail(format!(
                            "the {} backend holds level {level}; the plan's level rules give level {}",
                            backend.name(),
                            state.level
                        )));
                    }
                }
            }
            for (r, value) in results {
                if registers[r as usize].replace(value).is_none() {
                    live += 1;
                }
            }
            report.peak_live_registers = report.peak_live_registers.max(live);
            if let Some(checks) = self.checks_after.get(&k)
                && self.options.check_ranges
            {
                for &i in checks {
                    self.check(i, backend, &registers, &mut report);
                }
            }
            for &r in &self.drops[k] {
                if registers[r as usize].take().is_some() {
                    live -= 1;
                }
            }
            if let Instruction::AddPlain { plaintext, .. }
            | Instruction::SubPlain { plaintext, .. }
            | Instruction::MultiplyPlain { plaintext, .. } = instruction
                && self.plaintext_last_use[plaintext.0 as usize] == k
                && cache.slots[plaintext.0 as usize].take().is_some()
            {
                cache.cached -= 1;
            }
        }

        let mut stored = Vec::with_capacity(outputs.len());
        for (io, parts) in plan.outputs.iter().zip(outputs) {
            let parts: Vec<B::Ciphertext> = parts
                .into_iter()
                .enumerate()
                .map(|(part, c)| {
                    c.ok_or_else(|| VmError::OutputNotWritten {
                        name: io.name.clone(),
                        part,
                    })
                })
                .collect::<Result<_, _>>()?;
            let infos: Vec<_> = parts.iter().map(|c| backend.info(c)).collect();
            report.outputs.push(OutputInfo {
                name: io.name.clone(),
                depth: infos.iter().filter_map(|i| i.depth).max(),
                level: infos.iter().filter_map(|i| i.level).min(),
                scale_bits: infos
                    .iter()
                    .map(|i| i.scale_bits)
                    .fold(f64::NEG_INFINITY, f64::max),
            });
            stored.push(parts);
        }
        report.plaintexts_built = cache.built;
        report.wall_time = start.elapsed();
        Ok(Execution {
            outputs: stored,
            report,
        })
    }

    /// Evaluates range check `i` on the register's current value, recording a violation.
    fn check<B: Backend>(
        &self,
        i: usize,
        backend: &B,
        registers: &[Option<B::Ciphertext>],
        report: &mut Report,
    ) {
        let check = &self.plan.checks[i];
        let Some(values) = registers[check.register as usize]
            .as_ref()
            .and_then(|c| backend.peek(c))
        else {
            report.checks_skipped += 1;
            return;
        };
        report.checks_evaluated += 1;
        let (mut min, mut max) = (f64::INFINITY, f64::NEG_INFINITY);
        let mut nan = false;
        for run in &check.occupied {
            let start = run.slot as usize;
            for &v in values.iter().skip(start).take(run.count as usize) {
                nan |= v.is_nan();
                min = min.min(v);
                max = max.max(v);
            }
        }
        if nan {
            (min, max) = (f64::NAN, f64::NAN);
        }
        if nan || min < check.low || max > check.high {
            report.violations.push(RangeViolation {
                site: self.plan.sites[check.site as usize].name.clone(),
                instruction: check.after as usize,
                register: check.register,
                min,
                max,
                low: check.low,
                high: check.high,
            });
        }
    }
}

/// Plaintext slot vectors of one run, kept while a later instruction needs them (bounded).
struct PlainCache {
    slots: Vec<Option<Vec<f64>>>,
    cached: usize,
    capacity: usize,
    built: usize,
}

impl PlainCache {
    /// Plaintext `p`'s slots for instruction `k`: from the cache, or built from its tensor (and
    /// cached when a later instruction uses it and there is room).
    fn get(&mut self, vm: &Vm<'_>, p: u32, k: usize) -> Result<Cow<'_, [f64]>, String> {
        let index = p as usize;
        if self.slots[index].is_none() {
            let plaintext = &vm.plan.plaintexts[index];
            let values: &[f64] = match plaintext.tensor() {
                None => &[],
                // Presence checked in `Vm::new`.
                Some(t) => vm.tensors.get(t).map_or(&[], Vec::as_slice),
            };
            let slots = plaintext
                .slots(vm.plan.slots, values)
                .map_err(|e| format!("plaintext p{p}: {e}"))?;
            self.built += 1;
            if vm.plaintext_last_use[index] <= k || self.cached >= self.capacity {
                return Ok(Cow::Owned(slots));
            }
            self.cached += 1;
            self.slots[index] = Some(slots);
        }
        Ok(Cow::Borrowed(self.slots[index].as_deref().unwrap_or(&[])))
    }
}

/// Checks the input of bootstrap instruction `k` (a ciphertext using `slots` slots: slots
/// `0..slots` are occupied; all of them when `slots` is 0 or above the plan's): every occupied
/// value in [−1, 1], no NaN.
fn bootstrap_input(plan: &Plan, k: usize, slots: u32, values: &[f64]) -> Result<(), VmError> {
    let occupied = match slots as usize {
        0 => values.len(),
        n => n.min(values.len()),
    };
    let values = &values[..occupied];
    let Some(slot) = values
        .iter()
        .position(|v| v.is_nan() || !(-1.0..=1.0).contains(v))
    else {
        return Ok(());
    };
    let (min, max) = if values.iter().any(|v| v.is_nan()) {
        (f64::NAN, f64::NAN)
    } else {
        values
            .iter()
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &v| {
                (lo.min(v), hi.max(v))
            })
    };
    Err(VmError::BootstrapRange {
        index: k,
        instruction: plan.instructions[k].to_string(),
        site: site_name(plan, k),
        slot,
        value: values[slot],
        min,
        max,
        occupied,
    })
}

/// The site name of instruction `k` (empty when out of range).
pub(crate) fn site_name(plan: &Plan, k: usize) -> String {
    plan.instruction_sites
        .get(k)
        .and_then(|s| plan.sites.get(*s as usize))
        .map_or(String::new(), |s| s.name.clone())
}

/// Encrypts slot vectors `inputs[i][part]` (at the input's declared level in a leveled plan,
/// [`Client::encrypt_at`]), executes `plan` on a [`Client`] backend and decrypts the outputs:
/// `outputs[o][part]` (`plan.slots` reals each), with the run's report.
///
/// # Errors
/// As [`Vm::new`] and [`Vm::run`]; [`VmError::Input`] / [`VmError::Output`] when the backend
/// cannot encrypt an input (e.g. a slot vector of the wrong length) or decrypt an output.
#[allow(clippy::type_complexity)]
pub fn run_cleartext<B: Client>(
    backend: &B,
    plan: &Plan,
    tensors: &HashMap<TensorRef, Vec<f64>>,
    inputs: &[Vec<Vec<f64>>],
) -> Result<(Vec<Vec<Vec<f64>>>, Report), VmError> {
    let vm = Vm::new(plan, tensors)?;
    let mut encrypted = Vec::with_capacity(inputs.len());
    for (i, parts) in inputs.iter().enumerate() {
        let name = plan.inputs.get(i).map_or("?", |io| io.name.as_str());
        let level = plan.inputs.get(i).and_then(|io| io.level);
        let parts = parts
            .iter()
            .enumerate()
            .map(|(part, values)| {
                backend
                    .encrypt_at(values, level)
                    .map_err(|e| VmError::Input {
                        name: name.to_string(),
                        part,
                        message: e.to_string(),
                    })
            })
            .collect::<Result<Vec<_>, _>>()?;
        encrypted.push(parts);
    }
    let execution = vm.run(backend, encrypted)?;
    let mut outputs = Vec::with_capacity(execution.outputs.len());
    for (io, parts) in plan.outputs.iter().zip(&execution.outputs) {
        let parts = parts
            .iter()
            .enumerate()
            .map(|(part, c)| {
                backend.decrypt(c).map_err(|e| VmError::Output {
                    name: io.name.clone(),
                    part,
                    message: e.to_string(),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        outputs.push(parts);
    }
    Ok((outputs, execution.report))
}
