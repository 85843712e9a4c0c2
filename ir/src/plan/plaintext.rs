//! Plaintext operands of a plan, described by reference to raw tensors: the runtime builds each
//! slot vector when an instruction needs it (and encodes it at that instruction's level), so weights
//! stay as they are in the weights file and the plan stays small.

use super::PlanError;
use crate::layout::Run;
use serde::{Deserialize, Serialize};

/// A tensor a plaintext reads: a weight (in the plan's weights file) or a public value the server
/// computes from public inputs with the plan's public program.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum TensorRef {
    Weight(String),
    Public(String),
}

impl std::fmt::Display for TensorRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TensorRef::Weight(name) => write!(f, "weight {name}"),
            TensorRef::Public(name) => write!(f, "public {name}"),
        }
    }
}

/// How one plaintext's slots are made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Plaintext {
    /// Slot `s` = `scale · tensor[element]` along each run (runs in ciphertext 0), zero elsewhere.
    Gather {
        tensor: TensorRef,
        runs: Vec<Run>,
        scale: f64,
    },
    /// `value` in the slots of `runs` (elements ignored), zero elsewhere: masks and
    /// constants that must not touch empty slots.
    Fill { runs: Vec<Run>, value: f64 },
    /// Generalised diagonal `diagonal` of the interleaved-replicated matrix–vector kernel for the
    /// row vector × `weight` (`rows × columns`, row-major) product, chunk `input_chunk` → chunk
    /// `output_chunk` of `period` entries, pre-rotated right by `rotation` slots (BSGS giant step):
    /// slot `i·t + r` holds `weight[ci·period + (i + r + diagonal·t) mod period][column(co·period + i)]`
    /// when `r + diagonal·t < period`, with `t = slots / period` (Cachemir §4.1). `columns` maps
    /// virtual output entries to weight columns (identity when empty; `u32::MAX` = zero column).
    InterleavedDiagonal {
        weight: TensorRef,
        rows: u32,
        columns: u32,
        column_map: Vec<u32>,
        period: u32,
        input_chunk: u32,
        output_chunk: u32,
        diagonal: u32,
        rotation: u32,
    },
    /// Diagonal `diagonal` of the Halevi–Shoup method for the row vector × `weight` product on
    /// vectors repeated every `period` slots, pre-rotated right by `rotation`: slot `s` holds
    /// `weight[(j + diagonal) mod period][j]` with `j = (s − rotation) mod period` (zero outside the
    /// matrix), Halevi–Shoup, CRYPTO 2014, §4.1, with the BSGS split of §4.2.
    Diagonal {
        weight: TensorRef,
        rows: u32,
        columns: u32,
        period: u32,
        diagonal: u32,
        rotation: u32,
    },
    /// Generalised diagonal `diagonal` of the stacked-row kernel: `row_count` activation rows,
    /// each cut into chunks of `row_period` entries (`p`), chunk `c` of row `ρ` at offset
    /// `c·G·period + ρ·p` of one long vector in interleaved replicated packing with period
    /// `period` (`P`, `t = slots / P` replicas, `G = ⌈row_count·p / P⌉` ciphertexts per chunk), times
    /// `weight` (`rows × columns`, row-major) row by row, i.e. the interleaved product with the
    /// block-diagonal matrix `diag(W, …, W)`. Input chunk `input_chunk` of the weight rows →
    /// output chunk `output_chunk` of its columns, on part `part` (rows `part·P/p …`) of the
    /// stack, pre-rotated right by `rotation` slots: slot `i·t + r` with `o = r + diagonal·t < P`
    /// and `x = (i + o) mod P` in the same row block as `i` (`⌊x/p⌋ = ⌊i/p⌋`, row
    /// `ρ = part·P/p + ⌊i/p⌋ < row_count`) holds `weight[input_chunk·p + x mod p][output_chunk·p +
    /// i mod p]` (zero outside the matrix). Cachemir §4.1 applied to a block-diagonal matrix.
    StackedDiagonal {
        weight: TensorRef,
        rows: u32,
        columns: u32,
        row_count: u32,
        row_period: u32,
        period: u32,
        input_chunk: u32,
        output_chunk: u32,
        part: u32,
        diagonal: u32,
        rotation: u32,
    },
}

impl Plaintext {
    /// The tensor it reads, if any.
    pub fn tensor(&self) -> Option<&TensorRef> {
        match self {
            Plaintext::Gather { tensor, .. } => Some(tensor),
            Plaintext::Fill { .. } => None,
            Plaintext::InterleavedDiagonal { weight, .. }
            | Plaintext::Diagonal { weight, .. }
            | Plaintext::StackedDiagonal { weight, .. } => Some(weight),
        }
    }

    /// Builds the slot vector; `values` is the referenced tensor, row-major.
    pub fn slots(&self, slots: usize, values: &[f64]) -> Result<Vec<f64>, PlanError> {
        let mut out = vec![0.0; slots];
        let element = |index: usize| -> Result<f64, PlanError> {
            values.get(index).copied().ok_or_else(|| {
                PlanError::Invalid(format!(
                    "plaintext reads element {index} of a tensor of {} elements",
                    values.len()
                ))
            })
        };
        match self {
            Plaintext::Gather { runs, scale, .. } => {
                for run in runs {
                    for k in 0..run.count as usize {
                        let s = run.slot as usize + k;
                        // i128: no overflow for any u32 element, i64 step and u32 count.
                        let e = i128::from(run.element) + i128::from(run.step) * k as i128;
                        let e = usize::try_from(e)
                            .ok()
                            .filter(|_| s < slots)
                            .ok_or_else(|| {
                                PlanError::Invalid("plaintext run out of range".into())
                            })?;
                        out[s] = scale * element(e)?;
                    }
                }
            }
            Plaintext::Fill { runs, value } => {
                for run in runs {
                    let end = run.slot as usize + run.count as usize;
                    if end > slots {
                        return Err(PlanError::Invalid("mask run out of range".into()));
                    }
                    out[run.slot as usize..end].fill(*value);
                }
            }
            &Plaintext::InterleavedDiagonal {
                rows,
                columns,
                ref column_map,
                period,
                input_chunk,
                output_chunk,
                diagonal,
                rotation,
                ..
            } => {
                let (rows, columns, period) = (rows as usize, columns as usize, period as usize);
                check_period("interleaved diagonal", period, slots)?;
                let t = slots / period;
                let offset = diagonal as usize * t;
                for (s, slot) in out.iter_mut().enumerate() {
                    // The value that lands in slot s after the right rotation by `rotation`.
                    let source = (s + slots - rotation as usize % slots) % slots;
                    let (i, r) = (source / t, source % t);
                    if r + offset >= period {
                        continue;
                    }
                    let row = input_chunk as usize * period + (i + r + offset) % period;
                    let virtual_column = output_chunk as usize * period + i;
                    let column = if column_map.is_empty() {
                        virtual_column
                    } else {
                        column_map
                            .get(virtual_column)
                            .map_or(usize::MAX, |&c| c as usize)
                    };
                    if row < rows && column < columns {
                        *slot = element(row * columns + column)?;
                    }
                }
            }
            &Plaintext::Diagonal {
                rows,
                columns,
                period,
                diagonal,
                rotation,
                ..
            } => {
                let (rows, columns, period) = (rows as usize, columns as usize, period as usize);
                check_period("diagonal", period, slots)?;
                for (s, slot) in out.iter_mut().enumerate() {
                    let j = (s + slots - rotation as usize % slots) % period;
                    let row = (j + diagonal as usize) % period;
                    if row < rows && j < columns {
                        *slot = element(row * columns + j)?;
                    }
                }
            }
            &Plaintext::StackedDiagonal {
                rows,
                columns,
                row_count,
                row_period,
                period,
                input_chunk,
                output_chunk,
                part,
                diagonal,
                rotation,
                ..
            } => {
                let (rows, columns, period) = (rows as usize, columns as usize, period as usize);
                let (row_count, row_period) = (row_count as usize, row_period as usize);
                check_period("stacked diagonal", period, slots)?;
                if row_period == 0 || !period.is_multiple_of(row_period) {
                    return Err(PlanError::Invalid(format!(
                        "stacked diagonal row period {row_period} does not divide its period {period}"
                    )));
                }
                let t = slots / period;
                let offset = diagonal as usize * t;
                let first_row = part as usize * (period / row_period);
                let (row_base, column_base) = (
                    input_chunk as usize * row_period,
                    output_chunk as usize * row_period,
                );
                for (s, slot) in out.iter_mut().enumerate() {
                    let source = (s + slots - rotation as usize % slots) % slots;
                    let (i, r) = (source / t, source % t);
                    if r + offset >= period {
                        continue;
                    }
                    let x = (i + r + offset) % period;
                    let block = i / row_period;
                    if x / row_period != block || first_row + block >= row_count {
                        continue;
                    }
                    let (row, column) = (row_base + x % row_period, column_base + i % row_period);
                    if row < rows && column < columns {
                        *slot = element(row * columns + column)?;
                    }
                }
            }
        }
        Ok(out)
    }
}

/// A diagonal's period must divide the slot count (the rotations it is built for wrap there).
fn check_period(kind: &str, period: usize, slots: usize) -> Result<(), PlanError> {
    if period == 0 || !slots.is_multiple_of(period) {
        return Err(PlanError::Invalid(format!(
            "{kind} period {period} does not divide {slots} slots"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight() -> (TensorRef, Vec<f64>) {
        let values = (0..12 * 10).map(|v| v as f64 * 0.5 - 7.0).collect();
        (TensorRef::Weight("w".into()), values)
    }

    /// One row stacked over its own period is the interleaved kernel's diagonal.
    #[test]
    fn one_stacked_row_is_the_interleaved_diagonal() {
        let (weight, values) = weight();
        for (diagonal, rotation) in [(0, 0), (1, 4), (3, 12)] {
            let stacked = Plaintext::StackedDiagonal {
                weight: weight.clone(),
                rows: 12,
                columns: 10,
                row_count: 1,
                row_period: 16,
                period: 16,
                input_chunk: 0,
                output_chunk: 0,
                part: 0,
                diagonal,
                rotation,
            };
            let interleaved = Plaintext::InterleavedDiagonal {
                weight: weight.clone(),
                rows: 12,
                columns: 10,
                column_map: Vec::new(),
                period: 16,
                input_chunk: 0,
                output_chunk: 0,
                diagonal,
                rotation,
            };
            assert_eq!(
                stacked.slots(64, &values).unwrap(),
                interleaved.slots(64, &values).unwrap()
            );
        }
    }

    #[test]
    fn stacked_diagonal_periods_are_checked() {
        let (weight, values) = weight();
        let with = |row_period: u32, period: u32| Plaintext::StackedDiagonal {
            weight: weight.clone(),
            rows: 12,
            columns: 10,
            row_count: 2,
            row_period,
            period,
            input_chunk: 0,
            output_chunk: 0,
            part: 0,
            diagonal: 0,
            rotation: 0,
        };
        assert!(with(16, 32).slots(64, &values).is_ok());
        assert!(with(0, 32).slots(64, &values).is_err());
        assert!(with(64, 32).slots(64, &values).is_err());
        assert!(with(16, 48).slots(64, &values).is_err());
        // Off the block diagonal (second row reading the first row's block) stays zero.
        let slots = with(16, 32).slots(64, &values).unwrap();
        let t = 2;
        for i in 0..32 {
            for r in 0..t {
                let x = (i + r) % 32;
                if x / 16 != i / 16 {
                    assert_eq!(slots[i * t + r], 0.0, "slot ({i}, {r})");
                }
            }
        }
    }
}
