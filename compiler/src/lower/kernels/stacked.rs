//! Matrix × stacked rows: `Y = X·W` for an encrypted activation `X` of `R` rows in
//! [`stacked_rows`] (row period `p`, long period `P`, `t = slots / P`) and a public weight `W`
//! (`rows × columns`, read by reference), every row at once.
//!
//! The long vector of the stack is the concatenation of the rows' chunks, so `Y`'s long vector
//! is the IRP product (Cachemir, arXiv 2602.11470, §4.1; [`matvec::interleaved`]) of `X`'s with
//! the block-diagonal matrix `diag(W, …, W)` (`R` blocks, cut into `p × p` chunk pairs). Input and
//! output rows sit at the same offsets `ρ·p` of their ciphertexts, so in every chunk pair only the
//! generalised diagonals whose offsets `o = r + g·t` meet `(−w_c, h_c) mod P` (`h_c`, `w_c`:
//! the chunk's real rows and columns, at most `p`) are nonzero: about `(h_c + w_c)/t` of the
//! `P/t`. They form one cyclic interval around diagonal 0, which the kernel re-indexes from its
//! most negative diagonal `−n` (one rotation by `−n·t²` slots per input ciphertext when
//! `n > 0`) so that baby-step giant-step works on `D` consecutive diagonals. The fold, mask and
//! replication are the IRP kernel's with period `P`; the output is the stack of `Y` with the
//! same `p` and `P`, the next product's input.

use super::matvec::{self, Matrix, Schedule, fold_and_replicate, tail_counts};
use crate::lower::builder::{Builder, Cipher, Counts};
use crate::lower::select::{Stack, stacked_rows};
use cachemir_ir::plan::Plaintext;
use std::sync::Arc;

/// The kernel's shape: stacks, replication, valid entries and schedule.
#[derive(Debug)]
struct Geometry {
    input: Stack,
    output: Stack,
    t: usize,
    /// Diagonals re-indexed `g' = g + negative` (`g` taken mod `P/t`).
    negative: usize,
    /// Runs `[start, end)` of each output ciphertext's positions `i` whose entry exists.
    valid: Vec<Vec<(usize, usize)>>,
    schedule: Schedule,
}

impl Geometry {
    fn new(row_count: usize, rows: usize, columns: usize, slots: usize, row_period: usize) -> Self {
        assert!(row_count >= 1 && rows >= 1 && columns >= 1);
        let input = Stack::new(row_count, rows, slots, row_period);
        let output = Stack::new(row_count, columns, slots, row_period);
        let (period, parts, p) = (input.period, input.parts, row_period);
        let t = slots / period;
        let diagonals = period.div_ceil(t);
        let per_part = input.rows_per_part();
        let rows_in = |part: usize| (row_count - part * per_part).min(per_part);
        // Real entries of a chunk: `p` but for the last.
        let width = |chunk: usize, total: usize| (total - chunk * p).min(p);
        let valid: Vec<Vec<(usize, usize)>> = (0..output.ciphertexts())
            .map(|co| {
                let (chunk, part) = (co / parts, co % parts);
                let w = width(chunk, columns);
                let mut runs: Vec<(usize, usize)> = Vec::new();
                for local in 0..rows_in(part) {
                    let (start, end) = (local * p, local * p + w);
                    match runs.last_mut() {
                        Some(run) if run.1 == start => run.1 = end,
                        _ => runs.push((start, end)),
                    }
                }
                runs
            })
            .collect();
        // Diagonal g covers the offsets [g·t, g·t + min(t, P − g·t)); it is nonzero for a chunk
        // pair iff they meet [0, h) ∪ [P − w + 1, P): input entry x = i + o of the same block.
        let touches = |g: usize, h: usize, w: usize| {
            let (low, high) = (g * t, (g * t + t).min(period));
            low < h || high > period + 1 - w
        };
        // The most negative nonzero diagonal over all chunk widths: the last chunk pair may be
        // narrower, the first is the widest.
        let (h0, w0) = (width(0, rows), width(0, columns));
        let negative = (1..diagonals)
            .rev()
            .take_while(|&g| touches(g, 0, w0) && g * t >= h0)
            .count();
        let positive = (0..diagonals - negative)
            .take_while(|&g| touches(g, h0, 0))
            .count();
        let span = (negative + positive).min(diagonals);
        let actual = |g: usize| (g + diagonals - negative) % diagonals;
        let schedule = Schedule::new(
            input.ciphertexts(),
            output.ciphertexts(),
            span,
            |ci, co, g| {
                let (ic, ip, oc, op) = (ci / parts, ci % parts, co / parts, co % parts);
                ip == op
                    && rows_in(ip) > 0
                    && touches(actual(g), width(ic, rows), width(oc, columns))
            },
        );
        Self {
            input,
            output,
            t,
            negative,
            valid,
            schedule,
        }
    }

    /// Input ciphertexts rotated by `−negative·t²` (those some product uses).
    fn pre_rotations(&self) -> usize {
        if self.negative == 0 {
            return 0;
        }
        (0..self.input.ciphertexts())
            .filter(|&ci| self.schedule.input_used(ci))
            .count()
    }

    fn counts(&self) -> Counts {
        let mut counts =
            self.schedule.counts() + tail_counts(&self.schedule, self.t, self.input.period);
        counts.rotations += self.pre_rotations();
        counts
    }
}

/// Counts of [`stacked`] for `row_count` rows times a `rows × columns` weight at `slots` slots
/// and row period `p`, equal to what the kernel emits.
///
/// With the stack's `P = min(slots, 2^⌈log2(R·p)⌉)`, `t = slots / P`, `G = ⌈R·p / P⌉` parts,
/// `C_in = ⌈rows / p⌉`, `C_out = ⌈columns / p⌉` chunks, `n_in = C_in·G`, `n_out = C_out·G`
/// ciphertexts, `D ≈ (h + w − 1)/t + 1` consecutive nonzero diagonals around 0 for chunks of
/// `h` real rows and `w` real columns (`D = 1` when `t ≥ P`; exactly, the diagonals `g` whose
/// offsets `[g·t, g·t + t)` meet `(−w, h) mod P`),
/// `n` of them negative, `B` baby steps (fewest rotations near `√(D·n_out / n_in)`),
/// `A = ⌈D / B⌉`, `f = log2 min(t, P)`, `h = log2 t`, for full chunks:
/// - rotations `= n_in·[n > 0] + n_in·(B − 1) + n_out·(A − 1 + f + h)`;
/// - hoisted groups `= n_in` if `B ≥ 3`, else 0;
/// - ct-pt multiplications `= G·C_in·C_out·D + n_out·[t > 1]` (masks);
/// - additions `= n_out·(C_in·D − 1 + f + h)`.
///
/// Against one IRP product per row at period `p` (`R·C_in·C_out·⌈p²/slots⌉` ct-pt
/// multiplications, `R` times the rotations of one row), the stack spends about twice the
/// ct-pt multiplications (a diagonal straddles two row blocks) and `R·p/P` times fewer
/// ciphertexts everywhere downstream (norms, polynomials, bootstraps). Narrower last chunks
/// drop the diagonals that meet only their padding.
pub fn stacked_counts(
    row_count: usize,
    rows: usize,
    columns: usize,
    slots: usize,
    row_period: usize,
) -> Counts {
    Geometry::new(row_count, rows, columns, slots, row_period).counts()
}

/// Matrix × stacked rows (see the module documentation).
///
/// `x`: `R·rows` entries in exactly [`stacked_rows`] with row period `p` (its shape's last axis
/// is `rows`, the others the `R` rows). Output: `R·columns` entries of `output_shape` (last axis
/// `columns`, the same rows) in [`stacked_rows`] with the same `p`. Plaintexts:
/// [`Plaintext::StackedDiagonal`]; rotation steps `b·t²`, `a·B·t²`, `−n·t²`, `2^k`,
/// `2^k·(t − 1)`. Counts: [`stacked_counts`]; depth: two plaintext multiplications when
/// `t > 1`, one otherwise.
///
/// # Panics
/// If `x` is not in that layout or the shapes disagree (a compiler bug).
pub fn stacked(
    builder: &mut Builder,
    x: &Cipher,
    weight: &Matrix,
    row_period: usize,
    output_shape: &[usize],
) -> Cipher {
    let slots = builder.slots;
    let shape = &x.layout.shape;
    let (rows, columns) = (weight.rows, weight.columns);
    assert_eq!(shape.last(), Some(&rows), "x has {rows} columns");
    assert_eq!(output_shape.last(), Some(&columns));
    let row_count: usize = shape[..shape.len() - 1].iter().product();
    assert_eq!(
        output_shape[..output_shape.len() - 1]
            .iter()
            .product::<usize>(),
        row_count
    );
    assert_eq!(
        x.layout.map,
        stacked_rows(shape, slots, row_period).map,
        "the input must be stacked rows of period {row_period}"
    );
    let geometry = Geometry::new(row_count, rows, columns, slots, row_period);
    let (t, period, parts) = (geometry.t, geometry.input.period, geometry.input.parts);
    let diagonals = period.div_ceil(t);
    let unit = t * t;
    let inputs: Vec<_> = if geometry.negative > 0 {
        let step = -((geometry.negative * unit) as i64);
        (0..x.registers.len())
            .map(|ci| {
                if geometry.schedule.input_used(ci) {
                    builder.rotate(x.registers[ci], step)
                } else {
                    x.registers[ci]
                }
            })
            .collect()
    } else {
        x.registers.clone()
    };
    let sums = geometry
        .schedule
        .emit(builder, &inputs, unit, |ci, co, g, rotation| {
            Plaintext::StackedDiagonal {
                weight: weight.tensor.clone(),
                rows: rows as u32,
                columns: columns as u32,
                row_count: row_count as u32,
                row_period: row_period as u32,
                period: period as u32,
                input_chunk: (ci / parts) as u32,
                output_chunk: (co / parts) as u32,
                part: (ci % parts) as u32,
                diagonal: ((g + diagonals - geometry.negative) % diagonals) as u32,
                rotation: rotation as u32,
            }
        });
    let registers = fold_and_replicate(builder, sums, &geometry.valid, t, x.registers[0]);
    debug_assert_eq!(registers.len(), geometry.output.ciphertexts());
    Cipher {
        registers,
        layout: Arc::new(stacked_rows(output_shape, slots, row_period)),
    }
}

/// The weighted cost ([`matvec::cost`]) of `row_count` rows times a `rows × columns` weight at
/// row period `p`: stacked for several rows, one IRP product per row otherwise.
pub fn rows_cost(
    row_count: usize,
    rows: usize,
    columns: usize,
    slots: usize,
    row_period: usize,
) -> f64 {
    if row_count > 1 {
        matvec::cost(&stacked_counts(row_count, rows, columns, slots, row_period))
    } else {
        matvec::cost(&matvec::interleaved_counts(
            rows, columns, slots, row_period,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::kernels::matvec::tests::{kernel_plan, values};
    use cachemir_ir::layout::{EMPTY, Layout};
    use cachemir_ir::plan::TensorRef;
    use proptest::prelude::*;
    use std::collections::HashMap;

    /// Builds the kernel for `R` rows of `rows` entries in stacked rows of period `p`, runs it on
    /// the sim backend, checks every output slot (replicas and empty slots included) against
    /// the row-by-row `X·W`, and returns the counts the builder measured.
    fn run(
        row_count: usize,
        rows: usize,
        columns: usize,
        slots: usize,
        p: usize,
        seed: u64,
    ) -> Counts {
        let input = stacked_rows(&[row_count, rows], slots, p);
        let mut builder = Builder::new(slots);
        let registers = (0..input.ciphertexts())
            .map(|c| builder.load(0, c as u32))
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
        let y = stacked(&mut builder, &x, &weight, p, &[row_count, columns]);
        let counts = builder.counts;
        let plan = kernel_plan(builder, "stacked", &input, &y, rows, columns);
        let xs = values(seed, row_count * rows);
        let w = values(seed ^ 0x5555, rows * columns);
        let tensors = HashMap::from([(TensorRef::Weight("w".into()), w.clone())]);
        let outputs =
            cachemir_vm::sim::execute(&plan, &tensors, &[input.encode(&xs).unwrap()]).unwrap();
        let mut expected = vec![0.0; row_count * columns];
        for r in 0..row_count {
            for k in 0..rows {
                for c in 0..columns {
                    expected[r * columns + c] += xs[r * rows + k] * w[k * columns + c];
                }
            }
        }
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
            "{row_count} × {rows}×{columns} at {slots} slots, p = {p}: error {error}"
        );
        counts
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The kernel against the row-by-row product for random row counts, widths, weights,
        /// row periods and slot counts 2^10…2^15; its counts equal [`stacked_counts`].
        #[test]
        fn stacked_matches_row_by_row_product(
            row_count in 2usize..=20,
            rows in 1usize..=200,
            columns in 1usize..=200,
            log_slots in 10u32..=15,
            log_period in 3u32..=8,
            seed in any::<u64>(),
        ) {
            let slots = 1 << log_slots;
            let p = 1usize << log_period;
            let counts = stacked_counts(row_count, rows, columns, slots, p);
            // Keep the debug-build simulation short: slot operations ≤ 2^24.
            prop_assume!(
                (counts.rotations + counts.plaintext_multiplications + counts.additions) * slots
                    <= 1 << 24
            );
            prop_assert_eq!(run(row_count, rows, columns, slots, p, seed), counts);
        }
    }

    #[test]
    fn minilm_shapes_match_and_count() {
        // MiniLM's projections over 16 tokens at 2^15 slots: p = 512, P = 8192, t = 4.
        for (rows, columns) in [(384, 384), (384, 1536), (1536, 384)] {
            let counts = run(16, rows, columns, 1 << 15, 512, 3);
            assert_eq!(counts, stacked_counts(16, rows, columns, 1 << 15, 512));
        }
        // More rows than one ciphertext holds: P = slots, t = 1, two parts.
        run(20, 48, 40, 1 << 10, 64, 4);
        // A row period below the width (three chunks per row) and t > P.
        run(3, 40, 24, 1 << 10, 16, 5);
    }

    #[test]
    fn dense_counts_follow_the_docstring_formulas() {
        // 16 rows × (384 × 384), p = 512, P = 8192, t = 4: G = 1 part, C_in = C_out = 1, the
        // diagonals with offsets in (−384, 384): g ∈ [0, 96) ∪ [1952, 2048), D = 192 (n = 96).
        let counts = stacked_counts(16, 384, 384, 1 << 15, 512);
        let (d, n) = (192, 96);
        let (f, h) = (2, 2);
        assert_eq!(counts.plaintext_multiplications, d + 1);
        assert_eq!(counts.additions, d - 1 + f + h);
        let mut best = usize::MAX;
        for b in 1..=d {
            best = best.min(1 + (b - 1) + (d.div_ceil(b) - 1 + f + h));
        }
        assert!(n > 0);
        assert_eq!(counts.rotations, best);
        assert_eq!(counts.hoisted_groups, 1);
        // Against one IRP product per row at period 512 (t = 64, 8 diagonals): more ct-pt
        // multiplications, far fewer rotations.
        let per_row = matvec::interleaved_counts(384, 384, 1 << 15, 512);
        assert_eq!(per_row.plaintext_multiplications, 8 + 1);
        assert!(counts.rotations * 4 < 16 * per_row.rotations);
    }

    #[test]
    fn one_row_is_the_interleaved_layout() {
        for (shape, p) in [
            (vec![1, 384], 512),
            (vec![1, 1, 1536], 512),
            (vec![384], 128),
        ] {
            let stacked = stacked_rows(&shape, 1 << 15, p);
            let expected = Layout::interleaved(&shape, 1 << 15, p);
            assert_eq!(stacked.map, expected.map);
        }
    }
}
