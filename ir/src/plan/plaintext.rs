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
}

impl Plaintext {
    /// The tensor it reads, if any.
    pub fn tensor(&self) -> Option<&TensorRef> {
        match self {
            Plaintext::Gather { tensor, .. } => Some(tensor),
            Plaintext::Fill { .. } => None,
            Plaintext::InterleavedDiagonal { weight, .. } | Plaintext::Diagonal { weight, .. } => {
                Some(weight)
            }
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
