//! Matrix–vector kernels: an encrypted row vector `x` (length `rows`) times a public weight `W`
//! (`rows × columns`, row-major, read by reference), `y = x·W` (length `columns`).
//!
//! - [`interleaved`]: interleaved replicated packing (IRP; Cachemir, arXiv 2602.11470, §4.1). The
//!   input is in [`Layout::interleaved`]; each of the `t = slots / period` replicas of a chunk
//!   serves a different slice of the rows, so a `period × period` block needs `⌈period / t⌉`
//!   generalised diagonals instead of `period`, at the price of a fold, a mask and a replication
//!   back into IRP, whose output feeds the next kernel unchanged.
//! - [`diagonal`]: the Halevi–Shoup diagonal method (CRYPTO 2014, §4) on a block-replicated
//!   input; of its `period` diagonals only `min(period, rows + columns − 1)` are nonzero.
//!
//! Both evaluate `Σ_g rot(x, g·u) ⊙ P_g` (`u` = 1 slot for the diagonal method, `t²` slots for IRP,
//! where rotating by `t` slots shifts a chunk by one entry) by baby-step giant-step (Halevi–Shoup,
//! CRYPTO 2018, §4): `g = a·B + b`, the baby steps `rot(x, b·u)` hoisted once per input
//! ciphertext, the plaintexts pre-rotated right by `a·B·u` so one giant rotation serves a whole
//! inner sum, shared by all input ciphertexts of an output. Diagonals that are
//! zero for every slot (padding rows or columns) are skipped, and `B` minimises the rotations.
//!
//! [`interleaved_counts`] and [`diagonal_counts`] give each kernel's operation counts without
//! building it; [`cost`] weighs them and [`cheaper_kernel`] picks a kernel and period for layout
//! selection.

use crate::lower::builder::{Builder, Cipher, Counts};
use cachemir_ir::layout::{Layout, Packing, Run};
use cachemir_ir::plan::{Plaintext, Register, TensorRef};
use serde::Serialize;
use std::sync::Arc;

/// A public weight matrix read by reference: `rows × columns`, row-major.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Matrix {
    pub tensor: TensorRef,
    pub rows: usize,
    pub columns: usize,
}

/// A matrix–vector kernel with the period of its input and output layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Kernel {
    /// [`interleaved`] on [`Layout::interleaved`] with this period.
    Interleaved { period: usize },
    /// [`diagonal`] on [`Layout::block_replicated`] with this period.
    Diagonal { period: usize },
}

impl Kernel {
    /// The kernel's counts for a `rows × columns` weight at `slots` slots.
    pub fn counts(self, rows: usize, columns: usize, slots: usize) -> Counts {
        match self {
            Kernel::Interleaved { period } => interleaved_counts(rows, columns, slots, period),
            Kernel::Diagonal { period } => diagonal_counts(rows, columns, slots, period),
        }
    }
}

// Weights of the cost model, in units of one ciphertext × plaintext multiplication (a pointwise
// product of the two ciphertext polynomials with the plaintext, per RNS limb). Hoisting's saving
// (one decomposition per group) is not modelled: groups are counted, not discounted.

/// A rotation is one key switch: gadget decomposition, NTTs of the digits, inner products with
/// the key and ModDown, about ten ct-pt multiplications at the usual decomposition number (3–4).
pub const ROTATION_COST: f64 = 10.0;
/// The unit.
pub const PLAINTEXT_MULTIPLICATION_COST: f64 = 1.0;
/// A tensor product (about one ct-pt multiplication) plus the relinearization key switch.
pub const CIPHERTEXT_MULTIPLICATION_COST: f64 = ROTATION_COST + PLAINTEXT_MULTIPLICATION_COST;
/// A multiplication by an integer scalar: one modular product per coefficient, no plaintext.
pub const SCALAR_MULTIPLICATION_COST: f64 = 0.5;
/// A modular addition per coefficient, a few times cheaper than a modular product.
pub const ADDITION_COST: f64 = 0.25;

/// The weighted cost of `counts`, in ct-pt multiplications (see the `*_COST` constants).
pub fn cost(counts: &Counts) -> f64 {
    counts.rotations as f64 * ROTATION_COST
        + counts.plaintext_multiplications as f64 * PLAINTEXT_MULTIPLICATION_COST
        + counts.ciphertext_multiplications as f64 * CIPHERTEXT_MULTIPLICATION_COST
        + counts.scalar_multiplications as f64 * SCALAR_MULTIPLICATION_COST
        + counts.additions as f64 * ADDITION_COST
}

/// The cheaper of the two kernels by [`cost`] for a `rows × columns` weight at `slots` slots:
/// IRP at [`interleaved_period`] against the diagonal method at [`diagonal_period`] (when that
/// fits in `slots`). Ties go to IRP, whose output layout is also its input layout. Depth is not
/// weighed: IRP with `t > 1` consumes two levels (weights, mask), the diagonal method one.
pub fn cheaper_kernel(rows: usize, columns: usize, slots: usize) -> Kernel {
    let irp = Kernel::Interleaved {
        period: interleaved_period(rows, columns, slots),
    };
    match diagonal_period(rows, columns, slots) {
        Some(period) => {
            let diagonal = Kernel::Diagonal { period };
            if cost(&diagonal.counts(rows, columns, slots))
                < cost(&irp.counts(rows, columns, slots))
            {
                diagonal
            } else {
                irp
            }
        }
        None => irp,
    }
}

/// The diagonal method's period: the next power of two ≥ `max(rows, columns)`, or `None` when
/// that exceeds `slots` (the block-replicated layout holds the whole vector in one ciphertext).
pub fn diagonal_period(rows: usize, columns: usize, slots: usize) -> Option<usize> {
    let period = rows.max(columns).next_power_of_two();
    (period <= slots).then_some(period)
}

/// The IRP period of least [`cost`] for a `rows × columns` weight at `slots` slots: a power of two
/// between `min(p, 2^⌊log2 √slots⌋)` and `p = min(slots, next power of two ≥ max(rows,
/// columns))`. Larger periods only add padding; below `√slots` (where `t ≥ period`, one
/// diagonal per chunk pair) halving the period only adds chunks, so neither bound loses a
/// cheaper choice. Ties go to the larger period (fewer ciphertexts).
pub fn interleaved_period(rows: usize, columns: usize, slots: usize) -> usize {
    let high = rows.max(columns).next_power_of_two().min(slots);
    let root = 1 << (slots.trailing_zeros() / 2);
    let low = high.min(root);
    let mut best = (f64::INFINITY, high);
    let mut period = high;
    while period >= low {
        let c = cost(&interleaved_counts(rows, columns, slots, period));
        if c < best.0 {
            best = (c, period);
        }
        period /= 2;
    }
    best.1
}

/// Counts of [`interleaved`] for a `rows × columns` weight (identity column map) at `slots` slots
/// and IRP period `p`, equal to what the kernel emits.
///
/// With `n_in = ⌈rows / p⌉`, `n_out = ⌈columns / p⌉`, `t = slots / p`, `G = ⌈p / t⌉` generalised
/// diagonals per chunk pair, `B` baby steps (the count of fewest rotations, searched within a
/// factor of two of `√(G·n_out / n_in)`), `A = ⌈G / B⌉`, `f = log2 min(t, p)` and `h = log2 t`,
/// when no diagonal is all padding (full chunks):
/// - rotations `= n_in·(B − 1) + n_out·(A − 1 + f + h)`;
/// - hoisted groups `= n_in` if `B ≥ 3`, else 0;
/// - ct-pt multiplications `= n_in·n_out·G + n_out·[t > 1]` (the last term: masks);
/// - additions `= n_out·(n_in·G − 1 + f + h)`.
///
/// Partial chunks drop the diagonals that touch only padding rows or columns from the
/// multiplications, and their baby or giant step when no other pair uses it.
pub fn interleaved_counts(rows: usize, columns: usize, slots: usize, period: usize) -> Counts {
    InterleavedGeometry::new(
        rows,
        columns,
        slots,
        period,
        columns.div_ceil(period),
        &|v| (v < columns).then_some(v),
    )
    .counts()
}

/// Counts of [`diagonal`] for a `rows × columns` weight at `slots` slots (unused: the counts do not
/// depend on the replication) and period `p`, equal to what the kernel emits.
///
/// Diagonal `k` is nonzero iff `k < rows` or `k > p − columns`, so there are
/// `D = min(p, rows + columns − 1)` of them; with `B` baby steps (fewest rotations, near `√p`) and
/// `A = ⌈p / B⌉`, when
/// `rows + columns − 1 ≥ p` (all diagonals):
/// - rotations `= (B − 1) + (A − 1)`;
/// - hoisted groups `= 1` if `B ≥ 3`, else 0;
/// - ct-pt multiplications `= D`;
/// - additions `= D − 1`.
///
/// Otherwise the baby steps are the residues mod `B` and the giant steps the quotients by `B` of
/// the nonzero diagonals.
pub fn diagonal_counts(rows: usize, columns: usize, slots: usize, period: usize) -> Counts {
    assert!(period <= slots);
    diagonal_schedule(rows, columns, period).counts()
}

/// The kernels' input contract: `rows` entries in exactly the packing the kernel's plaintexts
/// assume (a relabelled layout would silently pair the wrong weights).
fn check_input(x: &Cipher, weight: &Matrix, slots: usize, expected: &Layout) {
    assert_eq!(x.layout.slots, slots);
    assert_eq!(
        x.layout.elements(),
        weight.rows,
        "x has {} entries",
        weight.rows
    );
    assert_eq!(
        x.layout.map, expected.map,
        "the input must be {:?}, not relabelled",
        expected.packing
    );
}

/// Interleaved replicated packing matrix–vector product (Cachemir §4.1).
///
/// `x`: `rows` entries in [`Layout::interleaved`] with period `p` (`⌈rows / p⌉` ciphertexts;
/// slot `i·t + r` of chunk `c` holds `x[c·p + (i + r) mod p]`, `t = slots / p`). Output: the
/// virtual vector `v ↦ y[column(v)]` in IRP with the same period, as
/// [`Layout::interleaved_relabelled`] of a tensor of `output_shape` (`columns` elements), where
/// `column_map[v]` is the weight column of virtual entry `v` (or none: zero) and an empty
/// `column_map` is the identity; duplicates let a GQA key projection write each KV head once per
/// query head it serves.
///
/// For each output chunk `co`: `Σ_ci Σ_g rot(x_ci, g·t²) ⊙ P(ci, co, g)` over `g < ⌈p / t⌉`: a
/// rotation by `g·t²` slots shifts the chunk by `g·t` entries, so slot `(i, r)` of the rotation
/// holds `x[ci·p + (i + r + g·t) mod p]`, and `P` = [`Plaintext::InterleavedDiagonal`] (slot
/// `(i, r)` = `W[ci·p + (i + r + g·t) mod p][column(co·p + i)]`, zero where `r + g·t ≥ p`). As
/// `j = r + g·t` runs over `[0, p)` once, slot `(i, r)` holds the partial sum of `y[co·p + i]`
/// over the rows `ci·p + (i + j) mod p` with `j ≡ r (mod t)`. The fold `acc += rot(acc, 2^k)`,
/// `k < log2 min(t, p)`, leaves `y[co·p + i]` in slot `i·t`; a mask keeps those slots (where the
/// entry exists) and `acc += rot(acc, 2^k·(t − 1))`, `k < log2 t`, replicates: these sum the
/// shifts `a·(t − 1)`, `a < t`, so slot `(i, r)` adds the slots `(i + a)·t + r − a`, of which only
/// `a = r` is a multiple of `t` (the rest are masked to zero): `(i, r)` receives exactly
/// `y[(i + r) mod p]`, the IRP of `y`. Rotation steps (keys): `b·t²`, `a·B·t²`, `2^k`,
/// `2^k·(t − 1)`. Counts: [`interleaved_counts`]; depth: two plaintext multiplications when
/// `t > 1`, one otherwise.
pub fn interleaved(
    builder: &mut Builder,
    x: &Cipher,
    weight: &Matrix,
    column_map: &[Option<usize>],
    output_shape: &[usize],
) -> Cipher {
    let slots = builder.slots;
    let Packing::Interleaved { period } = x.layout.packing else {
        panic!(
            "interleaved matrix–vector needs an IRP input, got {:?}",
            x.layout.packing
        );
    };
    check_input(
        x,
        weight,
        slots,
        &Layout::interleaved(&x.layout.shape, slots, period),
    );
    let (rows, columns) = (weight.rows, weight.columns);
    assert_eq!(output_shape.iter().product::<usize>(), columns);
    assert!(
        column_map.iter().flatten().all(|&c| c < columns),
        "column map beyond {columns} columns"
    );
    let column = |v: usize| -> Option<usize> {
        if column_map.is_empty() {
            (v < columns).then_some(v)
        } else {
            column_map.get(v).copied().flatten()
        }
    };
    let virtual_entries = if column_map.is_empty() {
        columns
    } else {
        column_map.len()
    };
    let outputs = virtual_entries.div_ceil(period).max(1);
    let geometry = InterleavedGeometry::new(rows, columns, slots, period, outputs, &column);
    let t = geometry.t;
    let plain_map: Vec<u32> = column_map
        .iter()
        .map(|c| c.map_or(u32::MAX, |c| c as u32))
        .collect();
    let sums = geometry
        .schedule
        .emit(builder, &x.registers, t * t, |ci, co, g, rotation| {
            Plaintext::InterleavedDiagonal {
                weight: weight.tensor.clone(),
                rows: rows as u32,
                columns: columns as u32,
                column_map: plain_map.clone(),
                period: period as u32,
                input_chunk: ci as u32,
                output_chunk: co as u32,
                diagonal: g as u32,
                rotation: rotation as u32,
            }
        });
    let registers = fold_and_replicate(builder, sums, &geometry.valid, t, x.registers[0]);
    let layout = Layout::interleaved_relabelled(output_shape, slots, period, outputs, column);
    Cipher {
        registers,
        layout: Arc::new(layout),
    }
}

/// The end of an interleaved kernel with period `p` and `t` replicas, per output chunk `co`
/// (`sums[co]`, or `None` where no product lands: a clean zero made from `zero_source`): the fold
/// `acc += rot(acc, 2^k)`, `k < log2 min(t, p)`, a mask keeping slots `i·t` of the entries in
/// `valid[co]`, and the replication `acc += rot(acc, 2^k·(t − 1))`, `k < log2 t` (see
/// [`interleaved`]). Counts: [`tail_counts`].
pub(super) fn fold_and_replicate(
    builder: &mut Builder,
    sums: Vec<Option<Register>>,
    valid: &[Vec<(usize, usize)>],
    t: usize,
    zero_source: Register,
) -> Vec<Register> {
    let period = builder.slots / t;
    let mut registers = Vec::with_capacity(sums.len());
    for (co, sum) in sums.into_iter().enumerate() {
        let Some(mut acc) = sum else {
            // No entry of this chunk exists (the column map leaves it empty): a clean zero.
            registers.push(builder.sub(zero_source, zero_source));
            continue;
        };
        for k in 0..t.min(period).trailing_zeros() {
            let rotated = builder.rotate(acc, 1 << k);
            acc = builder.add(acc, rotated);
        }
        if t > 1 {
            // Slots (i, r ≠ 0) hold partial sums; keep y at (i, 0) where the entry exists.
            let runs = valid[co]
                .iter()
                .flat_map(|&(start, end)| start..end)
                .map(|i| Run {
                    ciphertext: 0,
                    slot: (i * t) as u32,
                    count: 1,
                    element: 0,
                    step: 0,
                })
                .collect();
            acc = builder.multiply_plain(acc, Plaintext::Fill { runs, value: 1.0 });
            for k in 0..t.trailing_zeros() {
                let rotated = builder.rotate(acc, ((t - 1) << k) as i64);
                acc = builder.add(acc, rotated);
            }
        }
        registers.push(acc);
    }
    registers
}

/// What [`fold_and_replicate`] adds to `schedule`'s counts with `t` replicas of period `p`.
pub(super) fn tail_counts(schedule: &Schedule, t: usize, period: usize) -> Counts {
    let tail = (t.min(period).trailing_zeros() + t.trailing_zeros()) as usize;
    let mut counts = Counts::default();
    for co in 0..schedule.outputs {
        if schedule.output_terms(co) == 0 {
            counts.additions += 1; // the zero chunk
            continue;
        }
        counts.rotations += tail;
        counts.additions += tail;
        counts.plaintext_multiplications += usize::from(t > 1);
    }
    counts
}

/// Halevi–Shoup diagonal-method matrix–vector product with BSGS (CRYPTO 2014 §4; CRYPTO 2018 §4).
///
/// `x`: `rows` entries in [`Layout::block_replicated`] with period `p ≥ max(rows, columns)`.
/// `y = Σ_k rot(x, k) ⊙ diag_k`, `diag_k` = [`Plaintext::Diagonal`] (slot `s` =
/// `W[(j + k) mod p][j]`, `j = s mod p`, zero outside the matrix), over the nonzero diagonals.
/// Output: `y` block-replicated with the same period, as a tensor of `output_shape` (`columns`
/// elements): every block is valid because the diagonals are `p`-periodic. Counts:
/// [`diagonal_counts`]; depth: one plaintext multiplication.
pub fn diagonal(
    builder: &mut Builder,
    x: &Cipher,
    weight: &Matrix,
    output_shape: &[usize],
) -> Cipher {
    let slots = builder.slots;
    let Packing::BlockReplicated { period } = x.layout.packing else {
        panic!(
            "diagonal matrix–vector needs a block-replicated input, got {:?}",
            x.layout.packing
        );
    };
    check_input(
        x,
        weight,
        slots,
        &Layout::block_replicated(&x.layout.shape, slots, period),
    );
    let (rows, columns) = (weight.rows, weight.columns);
    assert!(
        columns <= period,
        "{columns} columns exceed the period {period}"
    );
    assert_eq!(output_shape.iter().product::<usize>(), columns);
    let schedule = diagonal_schedule(rows, columns, period);
    let sums = schedule.emit(builder, &x.registers, 1, |_, _, k, rotation| {
        Plaintext::Diagonal {
            weight: weight.tensor.clone(),
            rows: rows as u32,
            columns: columns as u32,
            period: period as u32,
            diagonal: k as u32,
            rotation: rotation as u32,
        }
    });
    let register = sums[0].expect("diagonal 0 of a nonempty matrix is nonzero");
    Cipher {
        registers: vec![register],
        layout: Arc::new(Layout::block_replicated(output_shape, slots, period)),
    }
}

/// The diagonal method's schedule: one input, one output, `period` diagonals with unit stride
/// (IRP with `t = 1` and all columns in one chunk).
fn diagonal_schedule(rows: usize, columns: usize, period: usize) -> Schedule {
    assert!(rows >= 1 && columns >= 1 && rows.max(columns) <= period);
    assert!(period.is_power_of_two());
    let all_columns = [(0, columns)];
    Schedule::new(1, 1, period, |_, _, k| {
        touches_rows(period, 1, k, rows, &all_columns)
    })
}

/// Whether generalised diagonal `g` of an IRP chunk pair has a nonzero slot: slot `(i, r)` reads
/// row `(i + r + g·t) mod period` of the chunk for `r < min(t, period − g·t)`, so for `i` in a run
/// `[start, end)` the rows form one cyclic interval, which must meet the chunk's `rows` real rows
/// (the rest is padding). With `t = 1` this is the Halevi–Shoup diagonal `g`.
fn touches_rows(period: usize, t: usize, g: usize, rows: usize, valid: &[(usize, usize)]) -> bool {
    let offset = g * t;
    let width = t.min(period - offset);
    valid.iter().any(|&(start, end)| {
        let length = (end - start) + width - 1;
        let first = (start + offset) % period;
        length >= period || first < rows || first + length > period
    })
}

/// IRP shapes: chunks, replication, the valid entries of each output chunk and the BSGS schedule.
#[derive(Debug)]
struct InterleavedGeometry {
    period: usize,
    t: usize,
    /// Runs `[start, end)` of the positions `i` of each output chunk whose entry exists.
    valid: Vec<Vec<(usize, usize)>>,
    schedule: Schedule,
}

impl InterleavedGeometry {
    fn new(
        rows: usize,
        columns: usize,
        slots: usize,
        period: usize,
        outputs: usize,
        column: &dyn Fn(usize) -> Option<usize>,
    ) -> Self {
        assert!(rows >= 1 && columns >= 1);
        assert!(period.is_power_of_two() && period <= slots && slots.is_power_of_two());
        let t = slots / period;
        let inputs = rows.div_ceil(period);
        let valid: Vec<Vec<(usize, usize)>> = (0..outputs)
            .map(|co| {
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for i in (0..period).filter(|i| column(co * period + i).is_some()) {
                    match runs.last_mut() {
                        Some(run) if run.1 == i => run.1 += 1,
                        _ => runs.push((i, i + 1)),
                    }
                }
                runs
            })
            .collect();
        let schedule = Schedule::new(inputs, outputs, period.div_ceil(t), |ci, co, g| {
            let chunk_rows = (rows - ci * period).min(period);
            touches_rows(period, t, g, chunk_rows, &valid[co])
        });
        Self {
            period,
            t,
            valid,
            schedule,
        }
    }

    fn counts(&self) -> Counts {
        self.schedule.counts() + tail_counts(&self.schedule, self.t, self.period)
    }
}

/// Which (input ciphertext, output ciphertext, diagonal) products are not identically zero, and
/// the baby-step giant-step split `g = a·baby + b` of the `diagonals`.
#[derive(Debug)]
pub(super) struct Schedule {
    inputs: usize,
    pub(super) outputs: usize,
    diagonals: usize,
    baby: usize,
    /// `nonzero[(ci·outputs + co)·diagonals + g]`.
    nonzero: Vec<bool>,
    /// `of_input[ci·diagonals + g]`: some output needs diagonal `g` of input `ci`.
    of_input: Vec<bool>,
    /// `of_output[co·diagonals + g]`: some input gives output `co` a diagonal `g`.
    of_output: Vec<bool>,
}

impl Schedule {
    /// The schedule of the nonzero products, with the baby-step count of fewest rotations
    /// (ties: fewer baby steps, which stay alive for the whole kernel).
    pub(super) fn new(
        inputs: usize,
        outputs: usize,
        diagonals: usize,
        nonzero: impl Fn(usize, usize, usize) -> bool,
    ) -> Self {
        let mut table = Vec::with_capacity(inputs * outputs * diagonals);
        let mut of_input = vec![false; inputs * diagonals];
        let mut of_output = vec![false; outputs * diagonals];
        for ci in 0..inputs {
            for co in 0..outputs {
                for g in 0..diagonals {
                    let used = nonzero(ci, co, g);
                    table.push(used);
                    of_input[ci * diagonals + g] |= used;
                    of_output[co * diagonals + g] |= used;
                }
            }
        }
        let mut schedule = Self {
            inputs,
            outputs,
            diagonals,
            baby: 1,
            nonzero: table,
            of_input,
            of_output,
        };
        // Rotations n_in·(B − 1) + n_out·(G/B − 1) are least near B = √(G·n_out / n_in); the
        // skipped diagonals move the optimum only a little, so search a factor of two around it.
        let centre = (diagonals as f64 * outputs as f64 / inputs as f64).sqrt();
        let low = ((centre / 2.0).floor() as usize).clamp(1, diagonals);
        let high = ((centre * 2.0).ceil() as usize).clamp(low, diagonals);
        let mut best = (usize::MAX, low);
        for baby in low..=high {
            schedule.baby = baby;
            let rotations = schedule.rotations();
            if rotations < best.0 {
                best = (rotations, baby);
            }
        }
        schedule.baby = best.1;
        schedule
    }

    fn is_nonzero(&self, ci: usize, co: usize, g: usize) -> bool {
        self.nonzero[(ci * self.outputs + co) * self.diagonals + g]
    }

    /// The baby steps `b` input `ci` needs, ascending.
    fn babies(&self, ci: usize) -> Vec<usize> {
        let mut used = vec![false; self.baby];
        let row = &self.of_input[ci * self.diagonals..(ci + 1) * self.diagonals];
        for (g, _) in row.iter().enumerate().filter(|(_, u)| **u) {
            used[g % self.baby] = true;
        }
        (0..self.baby).filter(|&b| used[b]).collect()
    }

    /// Whether some output needs input `ci`.
    pub(super) fn input_used(&self, ci: usize) -> bool {
        self.of_input[ci * self.diagonals..(ci + 1) * self.diagonals]
            .iter()
            .any(|&u| u)
    }

    /// The giant steps `a` output `co` needs, ascending.
    fn giants(&self, co: usize) -> Vec<usize> {
        let mut used = vec![false; self.diagonals.div_ceil(self.baby)];
        let row = &self.of_output[co * self.diagonals..(co + 1) * self.diagonals];
        for (g, _) in row.iter().enumerate().filter(|(_, u)| **u) {
            used[g / self.baby] = true;
        }
        (0..used.len()).filter(|&a| used[a]).collect()
    }

    /// Nonzero products summed into output `co`.
    pub(super) fn output_terms(&self, co: usize) -> usize {
        (0..self.inputs)
            .map(|ci| {
                (0..self.diagonals)
                    .filter(|&g| self.is_nonzero(ci, co, g))
                    .count()
            })
            .sum()
    }

    /// Baby rotations (step 0 is free) plus giant rotations.
    fn rotations(&self) -> usize {
        let babies: usize = (0..self.inputs)
            .map(|ci| self.babies(ci).iter().filter(|&&b| b > 0).count())
            .sum();
        let giants: usize = (0..self.outputs)
            .map(|co| self.giants(co).iter().filter(|&&a| a > 0).count())
            .sum();
        babies + giants
    }

    /// What [`Schedule::emit`] costs, as the builder counts it.
    pub(super) fn counts(&self) -> Counts {
        let hoisted_groups = (0..self.inputs)
            .filter(|&ci| self.babies(ci).iter().filter(|&&b| b > 0).count() >= 2)
            .count();
        Counts {
            rotations: self.rotations(),
            hoisted_groups,
            plaintext_multiplications: self.nonzero.iter().filter(|&&u| u).count(),
            additions: (0..self.outputs)
                .map(|co| self.output_terms(co).saturating_sub(1))
                .sum(),
            ..Counts::default()
        }
    }

    /// `Σ_a rot(Σ_ci Σ_b rot(x_ci, b·unit) ⊙ plaintext(ci, co, a·B + b, a·B·unit), a·B·unit)` for
    /// each output `co` (`None` when it has no nonzero product); `plaintext(ci, co, g, rotation)`
    /// is diagonal `g` pre-rotated right by `rotation` slots. The input chunks share the giant
    /// rotation of an output, so giant steps cost `n_out` rotations each, baby steps `n_in`.
    pub(super) fn emit(
        &self,
        builder: &mut Builder,
        inputs: &[Register],
        unit: usize,
        mut plaintext: impl FnMut(usize, usize, usize, usize) -> Plaintext,
    ) -> Vec<Option<Register>> {
        assert_eq!(inputs.len(), self.inputs);
        let mut babies: Vec<Vec<Option<Register>>> = Vec::with_capacity(self.inputs);
        for (ci, &x) in inputs.iter().enumerate() {
            let used = self.babies(ci);
            let steps: Vec<i64> = used.iter().map(|&b| (b * unit) as i64).collect();
            let rotated = builder.rotate_hoisted(x, &steps);
            let mut row = vec![None; self.baby];
            for (b, register) in used.into_iter().zip(rotated) {
                row[b] = Some(register);
            }
            babies.push(row);
        }
        let mut sums = Vec::with_capacity(self.outputs);
        for co in 0..self.outputs {
            let mut giants = Vec::new();
            for a in self.giants(co) {
                let rotation = a * self.baby * unit;
                let mut terms = Vec::new();
                for (ci, row) in babies.iter().enumerate() {
                    for (b, baby) in row.iter().enumerate() {
                        let g = a * self.baby + b;
                        if g < self.diagonals && self.is_nonzero(ci, co, g) {
                            let baby = baby.expect("the baby step of a nonzero diagonal");
                            let p = plaintext(ci, co, g, rotation);
                            terms.push(builder.multiply_plain(baby, p));
                        }
                    }
                }
                let inner = builder.sum(&terms).expect("a used giant step has a term");
                giants.push(builder.rotate(inner, rotation as i64));
            }
            sums.push(builder.sum(&giants));
        }
        sums
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::lower::builder::Interface;
    use cachemir_ir::layout::EMPTY;
    use cachemir_ir::plan::Ciphertexts;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// The kernel test's plan: `y` stored as output `y`, input `x` in `input`, weight `w`
    /// (`rows × columns`); validated.
    pub(crate) fn kernel_plan(
        mut builder: Builder,
        name: &str,
        input: &Layout,
        y: &Cipher,
        rows: usize,
        columns: usize,
    ) -> cachemir_ir::plan::Plan {
        for (part, &r) in y.registers.iter().enumerate() {
            builder.store(r, 0, part as u32);
        }
        let plan = builder.finish(Interface {
            name: name.into(),
            weight_shapes: [("w".to_string(), vec![rows, columns])].into(),
            inputs: vec![Ciphertexts {
                name: "x".into(),
                layout: input.clone(),
                level: None,
            }],
            outputs: vec![Ciphertexts {
                name: "y".into(),
                layout: (*y.layout).clone(),
                level: None,
            }],
            ..Interface::default()
        });
        plan.validate().unwrap();
        plan
    }

    /// Deterministic values in [−1, 1) (xorshift).
    pub(crate) fn values(seed: u64, n: usize) -> Vec<f64> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
            })
            .collect()
    }

    fn matmul(x: &[f64], w: &[f64], columns: usize) -> Vec<f64> {
        let mut y = vec![0.0; columns];
        for (row, &xr) in w.chunks_exact(columns).zip(x) {
            for (yc, &wc) in y.iter_mut().zip(row) {
                *yc += xr * wc;
            }
        }
        y
    }

    enum Which<'a> {
        Interleaved(&'a [Option<usize>]),
        Diagonal,
    }

    /// Builds the kernel for `x` in `input` (a layout of `rows` entries), executes it on the sim
    /// backend, checks every output slot against `x·W` through the output layout (replicas and
    /// empty slots included), and returns the measured counts and the number of rotation keys.
    fn run(which: Which, rows: usize, columns: usize, input: Layout, seed: u64) -> (Counts, usize) {
        let slots = input.slots;
        let mut builder = Builder::new(slots);
        let registers = (0..input.ciphertexts())
            .map(|p| builder.load(0, p as u32))
            .collect();
        let x = Cipher {
            registers,
            layout: Arc::new(input.clone()),
        };
        let weight = Matrix {
            tensor: TensorRef::Weight("w".into()),
            rows,
            columns,
        };
        let before = builder.counts;
        let y = match which {
            Which::Interleaved(map) => interleaved(&mut builder, &x, &weight, map, &[columns]),
            Which::Diagonal => diagonal(&mut builder, &x, &weight, &[columns]),
        };
        let counts = builder.counts - before;
        let keys = builder.rotations.len();
        let plan = kernel_plan(builder, "matvec", &input, &y, rows, columns);
        let xs = values(seed, rows);
        let w = values(seed ^ 0x5555, rows * columns);
        let tensors = HashMap::from([(TensorRef::Weight("w".into()), w.clone())]);
        let outputs =
            cachemir_vm::sim::execute(&plan, &tensors, &[input.encode(&xs).unwrap()]).unwrap();
        let expected = matmul(&xs, &w, columns);
        let mut error: f64 = 0.0;
        for (c, map) in y.layout.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                let want = if e == EMPTY {
                    0.0
                } else {
                    expected[e as usize]
                };
                error = error.max((outputs[0][c][s] - want).abs());
            }
        }
        assert!(
            error <= 1e-9,
            "{rows}×{columns} at {slots} slots: error {error}"
        );
        (counts, keys)
    }

    fn run_interleaved(rows: usize, columns: usize, slots: usize, period: usize, seed: u64) {
        let input = Layout::interleaved(&[rows], slots, period);
        let (counts, _) = run(Which::Interleaved(&[]), rows, columns, input, seed);
        assert_eq!(counts, interleaved_counts(rows, columns, slots, period));
    }

    fn run_diagonal(rows: usize, columns: usize, slots: usize, seed: u64) {
        let period = diagonal_period(rows, columns, slots).expect("fits");
        let input = Layout::block_replicated(&[rows], slots, period);
        let (counts, _) = run(Which::Diagonal, rows, columns, input, seed);
        assert_eq!(counts, diagonal_counts(rows, columns, slots, period));
    }

    const SIZES: [usize; 4] = [64, 128, 384, 4096];

    /// Slot operations the sim spends on a kernel: instructions × slots.
    fn work(counts: &Counts, slots: usize) -> usize {
        (counts.rotations + counts.plaintext_multiplications + counts.additions) * slots
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        /// Both kernels against `x·W` for rows, columns ∈ {64, 128, 384, 4096} at 2^10…2^15 slots,
        /// IRP at its natural period divided by up to 8 (several chunks, or `t > period`); the
        /// shapes whose simulation would take long in a debug build are left to the dedicated
        /// tests below.
        #[test]
        fn kernels_match_matmul(
            rows in proptest::sample::select(SIZES.to_vec()),
            columns in proptest::sample::select(SIZES.to_vec()),
            log_slots in 10u32..=15,
            shift in 0u32..4,
            use_diagonal in any::<bool>(),
            seed in any::<u64>(),
        ) {
            let slots = 1 << log_slots;
            if use_diagonal {
                let period = diagonal_period(rows, columns, slots);
                prop_assume!(period.is_some());
                let counts = diagonal_counts(rows, columns, slots, period.unwrap());
                prop_assume!(work(&counts, slots) <= 1 << 24);
                run_diagonal(rows, columns, slots, seed);
            } else {
                let natural = rows.max(columns).next_power_of_two().min(slots);
                let period = (natural >> shift).max(1);
                let counts = interleaved_counts(rows, columns, slots, period);
                prop_assume!(work(&counts, slots) <= 1 << 24);
                run_interleaved(rows, columns, slots, period, seed);
            }
        }
    }

    #[test]
    fn interleaved_4096_at_2_15() {
        run_interleaved(4096, 4096, 1 << 15, 4096, 7);
    }

    #[test]
    fn large_shapes_once_each() {
        // d > slots: IRP with period = slots, several input or output chunks and t = 1 (no fold,
        // mask or replication).
        run_interleaved(4096, 384, 1 << 10, 1 << 10, 1);
        run_interleaved(384, 4096, 1 << 10, 1 << 10, 2);
        // Tall and wide at the periods of least cost.
        run_interleaved(4096, 64, 1 << 15, interleaved_period(4096, 64, 1 << 15), 3);
        run_interleaved(64, 4096, 1 << 13, interleaved_period(64, 4096, 1 << 13), 4);
        // The diagonal method at period 4096: all 4096 diagonals (64 + 4096 − 1 ≥ 4096).
        run_diagonal(64, 4096, 1 << 12, 5);
    }

    #[test]
    fn rectangular_shapes() {
        for (rows, columns) in [(128, 344), (344, 128), (384, 1536)] {
            for log_slots in [11, 15] {
                let slots = 1 << log_slots;
                run_interleaved(
                    rows,
                    columns,
                    slots,
                    rows.max(columns).next_power_of_two(),
                    11,
                );
                run_interleaved(rows, columns, slots, 128, 12);
            }
            run_diagonal(rows, columns, 1 << 11, 13);
        }
        run_diagonal(128, 344, 1 << 15, 14);
    }

    #[test]
    fn column_map_duplicates_and_permutes_columns() {
        // A GQA key projection: 2 KV heads of 32, written once per query head of its group of 2,
        // then one unmapped entry and a last chunk with nothing mapped (zero).
        let (rows, columns, head) = (128, 64, 32);
        let mut map: Vec<Option<usize>> = (0..4 * head)
            .map(|v| Some((v / head / 2) * head + v % head))
            .collect();
        map[5] = None;
        map.reverse(); // permuted, too
        for (slots, period) in [(1 << 10, 128), (1 << 12, 64), (1 << 15, 256), (1 << 15, 32)] {
            let mut padded = map.clone();
            padded.extend(std::iter::repeat_n(None, period));
            let input = Layout::interleaved(&[rows], slots, period);
            run(Which::Interleaved(&padded), rows, columns, input, 21);
        }
    }

    #[test]
    fn dense_counts_follow_the_docstring_formulas() {
        // IRP 4096 × 4096 at 2^15, p = 4096: t = 8, G = 512, B = 19, A = 27, f = h = 3.
        let irp = interleaved_counts(4096, 4096, 1 << 15, 4096);
        let (b, a, f, h) = (19, 27, 3, 3);
        assert_eq!(irp.rotations, (b - 1) + (a - 1 + f + h));
        assert_eq!(irp.hoisted_groups, 1);
        assert_eq!(irp.plaintext_multiplications, 512 + 1);
        assert_eq!(irp.additions, 512 - 1 + f + h);
        // IRP 4096 × 4096 at 2^10, p = 1024: n_in = n_out = 4, t = 1, G = 1024, B = A = 32.
        let blocks = interleaved_counts(4096, 4096, 1 << 10, 1 << 10);
        assert_eq!(blocks.rotations, 4 * 31 + 4 * 31);
        assert_eq!(blocks.hoisted_groups, 4);
        assert_eq!(blocks.plaintext_multiplications, 16 * 1024);
        assert_eq!(blocks.additions, 4 * (4 * 1024 - 1));
        // Diagonal 4096 × 4096, p = 4096: B = A = 64.
        let diagonal = diagonal_counts(4096, 4096, 1 << 15, 4096);
        assert_eq!(diagonal.rotations, 63 + 63);
        assert_eq!(diagonal.plaintext_multiplications, 4096);
        assert_eq!(diagonal.additions, 4095);
        // Diagonal 128 × 344, p = 512: D = 128 + 344 − 1 = 471 nonzero diagonals.
        assert_eq!(
            diagonal_counts(128, 344, 1 << 15, 512).plaintext_multiplications,
            471
        );
    }

    #[test]
    fn measured_counts_table() {
        let mut table = String::from(
            "shape      slots  kernel       period  rotations  hoisted  ct-pt  additions  keys  cost\n",
        );
        let shapes = [(4096, 4096), (128, 128), (128, 344), (344, 128)];
        for (rows, columns) in shapes {
            let slots = 1 << 15;
            // IRP at the period of least cost and at the natural one when they differ.
            let natural = diagonal_period(rows, columns, slots).unwrap();
            let mut kernels = vec![Kernel::Interleaved {
                period: interleaved_period(rows, columns, slots),
            }];
            if kernels[0] != (Kernel::Interleaved { period: natural }) {
                kernels.push(Kernel::Interleaved { period: natural });
            }
            kernels.push(Kernel::Diagonal { period: natural });
            for kernel in kernels {
                let (name, input) = match kernel {
                    Kernel::Interleaved { period } => {
                        ("interleaved", Layout::interleaved(&[rows], slots, period))
                    }
                    Kernel::Diagonal { period } => {
                        ("diagonal", Layout::block_replicated(&[rows], slots, period))
                    }
                };
                let (counts, keys) = build_only(kernel, rows, columns, input);
                assert_eq!(
                    counts,
                    kernel.counts(rows, columns, slots),
                    "{rows}×{columns}"
                );
                let (Kernel::Interleaved { period } | Kernel::Diagonal { period }) = kernel;
                table += &format!(
                    "{:<10} {:<6} {:<12} {:<7} {:<10} {:<8} {:<6} {:<10} {:<5} {:.0}\n",
                    format!("{rows}x{columns}"),
                    slots,
                    name,
                    period,
                    counts.rotations,
                    counts.hoisted_groups,
                    counts.plaintext_multiplications,
                    counts.additions,
                    keys,
                    cost(&counts),
                );
            }
            let chosen = cheaper_kernel(rows, columns, slots);
            table += &format!("{:<10} {slots:<6} cheaper: {chosen:?}\n", "");
        }
        insta::assert_snapshot!(table);
    }

    /// Builds a kernel without executing it: its counts and rotation keys.
    fn build_only(kernel: Kernel, rows: usize, columns: usize, input: Layout) -> (Counts, usize) {
        let mut builder = Builder::new(input.slots);
        let registers = (0..input.ciphertexts())
            .map(|p| builder.load(0, p as u32))
            .collect();
        let x = Cipher {
            registers,
            layout: Arc::new(input),
        };
        let weight = Matrix {
            tensor: TensorRef::Weight("w".into()),
            rows,
            columns,
        };
        match kernel {
            Kernel::Interleaved { .. } => interleaved(&mut builder, &x, &weight, &[], &[columns]),
            Kernel::Diagonal { .. } => diagonal(&mut builder, &x, &weight, &[columns]),
        };
        (builder.counts, builder.rotations.len())
    }

    #[test]
    fn cheaper_kernel_prefers_irp_at_decode_sizes() {
        assert!(matches!(
            cheaper_kernel(4096, 4096, 1 << 15),
            Kernel::Interleaved { period: 4096 }
        ));
        // Beyond the slot count only IRP applies.
        assert_eq!(diagonal_period(4096, 4096, 1 << 10), None);
        assert!(matches!(
            cheaper_kernel(4096, 4096, 1 << 10),
            Kernel::Interleaved { period: 1024 }
        ));
    }
}
