//! Scheduling and register allocation: the last pass before a plan is written.
//!
//! The lowering and the level pass emit instructions kernel by kernel, in the order of the Tensor
//! IR, with a fresh register per value; a kernel's partial products can all be live before the
//! first sum consumes them. This pass reorders the instructions within their data dependencies
//! for a smaller peak of live ciphertexts, then renumbers the registers so that a register is
//! reused once its value's last reader has run (linear scan, Poletto–Sarkar, TOPLAS 1999):
//!
//! - **Values, not registers**: each write is a value; the only ordering constraints are a
//!   value's writer before its readers, and stores to the same output ciphertext in their order.
//!   `free` instructions are dropped: the executor frees a register after its last read.
//! - **Greedy list scheduling** (Sethi–Ullman's intuition for DAGs): among the ready
//!   instructions, the one that frees the most live values net of the values it creates, ties
//!   broken by the original order (which keeps kernels together and the schedule stable). Loads
//!   create a value and free none, so an input is loaded when its consumer is next.
//! - **Range checks** follow their value: a check after instruction `k` on register `r` becomes a
//!   check right after the instruction that wrote the value `r` held at `k`.
//!
//! Levels and scales are untouched: every instruction sees the same operand values.

use crate::report::memory::{Memory, peak};
use cachemir_ir::plan::{Instruction, Plan, PlanError, Register, levels};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

/// A scheduled plan and the peak live memory before and after.
#[derive(Debug, Clone)]
pub struct Scheduled {
    pub plan: Plan,
    pub before: Memory,
    pub after: Memory,
}

/// A plan that cannot be scheduled (it reads a register before writing it, or the result fails
/// validation — a compiler bug).
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    #[error("instruction {instruction} reads r{register}, which nothing wrote before it")]
    Unwritten {
        instruction: usize,
        register: Register,
    },
    #[error("the scheduled plan is invalid: {0}")]
    Invalid(#[from] PlanError),
}

/// The dataflow of a plan's instructions over values (one per register write).
struct Dataflow {
    /// Kept instructions (every instruction but `free`), by original index.
    kept: Vec<usize>,
    /// Per kept instruction: values read (distinct) and values written.
    reads: Vec<Vec<usize>>,
    writes: Vec<Vec<usize>>,
    /// Per value: the kept instruction that writes it and those that read it.
    writer: Vec<usize>,
    readers: Vec<Vec<usize>>,
    /// Extra edges (store order): `after[i]` must follow `i`.
    after: Vec<Vec<usize>>,
    /// Per range check: the value it checks.
    checked: Vec<usize>,
}

fn dataflow(plan: &Plan) -> Result<Dataflow, ScheduleError> {
    let mut current: HashMap<Register, usize> = HashMap::new();
    let mut flow = Dataflow {
        kept: Vec::new(),
        reads: Vec::new(),
        writes: Vec::new(),
        writer: Vec::new(),
        readers: Vec::new(),
        after: Vec::new(),
        checked: vec![usize::MAX; plan.checks.len()],
    };
    let mut checks_at: HashMap<usize, Vec<usize>> = HashMap::new();
    for (c, check) in plan.checks.iter().enumerate() {
        checks_at.entry(check.after as usize).or_default().push(c);
    }
    let mut last_store: HashMap<(u32, u32), usize> = HashMap::new();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        if !matches!(instruction, Instruction::Free { .. }) {
            let i = flow.kept.len();
            flow.kept.push(k);
            flow.after.push(Vec::new());
            let (reads, writes) = instruction.registers();
            let mut read_values = Vec::with_capacity(reads.len());
            for r in reads {
                let value = *current.get(&r).ok_or(ScheduleError::Unwritten {
                    instruction: k,
                    register: r,
                })?;
                if !read_values.contains(&value) {
                    read_values.push(value);
                    flow.readers[value].push(i);
                }
            }
            let mut written = Vec::with_capacity(writes.len());
            for w in writes {
                let value = flow.writer.len();
                flow.writer.push(i);
                flow.readers.push(Vec::new());
                current.insert(w, value);
                written.push(value);
            }
            if let Instruction::Store { output, part, .. } = instruction
                && let Some(previous) = last_store.insert((output.0, part.0), i)
            {
                flow.after[previous].push(i);
            }
            flow.reads.push(read_values);
            flow.writes.push(written);
        }
        for &c in checks_at.get(&k).into_iter().flatten() {
            let register = plan.checks[c].register;
            flow.checked[c] = *current.get(&register).ok_or(ScheduleError::Unwritten {
                instruction: k,
                register,
            })?;
        }
    }
    Ok(flow)
}

/// The greedy list schedule (see the module documentation): an order of kept instructions.
fn list_schedule(flow: &Dataflow) -> Vec<usize> {
    let n = flow.kept.len();
    let mut successors: Vec<Vec<usize>> = flow.after.clone();
    for (value, readers) in flow.readers.iter().enumerate() {
        successors[flow.writer[value]].extend(readers);
    }
    let mut waiting = vec![0usize; n];
    for s in successors.iter().flatten() {
        waiting[*s] += 1;
    }
    let mut unread: Vec<usize> = flow.readers.iter().map(Vec::len).collect();
    let score = |i: usize, unread: &[usize]| -> i64 {
        let freed = flow.reads[i].iter().filter(|&&v| unread[v] == 1).count() as i64;
        let created = flow.writes[i]
            .iter()
            .filter(|&&v| !flow.readers[v].is_empty())
            .count() as i64;
        freed - created
    };
    let mut current: Vec<i64> = (0..n).map(|i| score(i, &unread)).collect();
    let mut done = vec![false; n];
    let mut ready: BinaryHeap<(i64, Reverse<usize>)> = (0..n)
        .filter(|&i| waiting[i] == 0)
        .map(|i| (current[i], Reverse(i)))
        .collect();
    let mut order = Vec::with_capacity(n);
    while let Some((s, Reverse(i))) = ready.pop() {
        if done[i] || s != current[i] {
            continue;
        }
        done[i] = true;
        order.push(i);
        for &v in &flow.reads[i] {
            unread[v] -= 1;
            if unread[v] == 1
                && let Some(&last) = flow.readers[v].iter().find(|&&r| !done[r])
            {
                current[last] = score(last, &unread);
                if waiting[last] == 0 {
                    ready.push((current[last], Reverse(last)));
                }
            }
        }
        for &s in &successors[i] {
            waiting[s] -= 1;
            if waiting[s] == 0 {
                current[s] = score(s, &unread);
                ready.push((current[s], Reverse(s)));
            }
        }
    }
    order
}

/// Reorders `plan` for a smaller peak of live ciphertexts and reallocates its registers (see the
/// module documentation); the peak before and after, in ciphertexts and (leveled plans) bytes.
///
/// # Errors
/// [`ScheduleError`] for a plan reading an unwritten register or a result that does not
/// validate.
pub fn schedule(plan: &Plan) -> Result<Scheduled, ScheduleError> {
    let trace_of = |p: &Plan| levels::trace(p).ok().flatten();
    let before = peak(plan, trace_of(plan).as_ref());
    let flow = dataflow(plan)?;
    let order = list_schedule(&flow);
    let mut position = vec![0usize; flow.kept.len()];
    for (new, &i) in order.iter().enumerate() {
        position[i] = new;
    }
    // Linear scan over the new order: a value's register returns to the pool after its last
    // reader (or right after its writer when nothing reads it).
    let mut unread: Vec<usize> = flow.readers.iter().map(Vec::len).collect();
    let mut register_of = vec![Register::MAX; flow.writer.len()];
    let mut pool: Vec<Register> = Vec::new();
    let mut registers: Register = 0;
    let mut instructions = Vec::with_capacity(order.len());
    let mut instruction_sites = Vec::with_capacity(order.len());
    for &i in &order {
        let k = flow.kept[i];
        let mut instruction = plan.instructions[k].clone();
        let mut take = || {
            pool.pop().unwrap_or_else(|| {
                registers += 1;
                registers - 1
            })
        };
        let new_registers: Vec<Register> = flow.writes[i].iter().map(|_| take()).collect();
        for (&v, &r) in flow.writes[i].iter().zip(&new_registers) {
            register_of[v] = r;
        }
        // Operand registers in operand order, from the value each old register held.
        let (old_reads, _) = plan.instructions[k].registers();
        let mut reads_iter = read_value_registers(&flow, i, &old_reads, &register_of);
        let mut writes_iter = new_registers.iter().copied();
        instruction.rename_registers(
            &mut |_| reads_iter.next().expect("one value per read"),
            &mut |_| writes_iter.next().expect("one register per write"),
        );
        for &v in &flow.reads[i] {
            unread[v] -= 1;
            if unread[v] == 0 {
                pool.push(register_of[v]);
            }
        }
        for &v in &flow.writes[i] {
            if flow.readers[v].is_empty() {
                pool.push(register_of[v]);
            }
        }
        instructions.push(instruction);
        instruction_sites.push(plan.instruction_sites[k]);
    }
    let mut scheduled = plan.clone();
    scheduled.instructions = instructions;
    scheduled.instruction_sites = instruction_sites;
    scheduled.registers = registers;
    for (check, &value) in scheduled.checks.iter_mut().zip(&flow.checked) {
        check.after = position[flow.writer[value]] as u32;
        check.register = register_of[value];
    }
    scheduled.checks.sort_by_key(|c| c.after);
    scheduled.validate()?;
    let after = peak(&scheduled, trace_of(&scheduled).as_ref());
    Ok(Scheduled {
        plan: scheduled,
        before,
        after,
    })
}

/// The new registers of instruction `i`'s reads, in operand order. [`dataflow`] recorded the
/// distinct values read in the order their registers first occur, and distinct registers hold
/// distinct values (no instruction copies a register), so a register read twice maps to one value.
fn read_value_registers<'a>(
    flow: &'a Dataflow,
    i: usize,
    old_reads: &'a [Register],
    register_of: &'a [Register],
) -> impl Iterator<Item = Register> + 'a {
    let mut distinct: Vec<Register> = Vec::new();
    for &r in old_reads {
        if !distinct.contains(&r) {
            distinct.push(r);
        }
    }
    old_reads.iter().map(move |r| {
        let n = distinct.iter().position(|d| d == r).expect("listed");
        register_of[flow.reads[i][n]]
    })
}
