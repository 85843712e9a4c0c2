//! Rotate-and-sum reductions (`ReduceSum`, `ReduceMean` and the sums inside norms and softmax).
//!
//! The kernel looks for the stride structure of the reduced axis in the layout: element `(o, k)`
//! at ciphertext `c_o + ⌊k/T⌋`, slot `p_o + (k mod T)·Δ`. It adds the `⌈n/T⌉` ciphertexts of
//! each block, then sums the `T` strided slots by doubling (⌊log2 T⌋ + popcount(T) − 1 rotations),
//! leaving each output in every slot of its chain when `T·Δ ≡ 0 (mod slots)`, as in interleaved
//! replicated packing, where a norm's sum lands in every slot for free. Otherwise the chain
//! starts are kept by a mask (one plaintext multiplication, which also applies the mean's `1/n`)
//! and spread back over their chains by the same doubling in the opposite direction, so the
//! output holds each sum wherever its inputs were and the broadcast that follows (`x − mean`,
//! `x · 1/Σ`) needs no rotation. Layouts without that structure are first converted to one that
//! has it.
//!
//! Counts per output ciphertext: `blocks − 1` additions across ciphertexts, ⌊log2 T⌋ +
//! popcount(T) − 1 rotations for the sum and as many for the spread (none when cyclic), one
//! plaintext multiplication (a scalar one when cyclic and a mean).

use super::convert::{gather, strided_sum};
use crate::lower::{Builder, Cipher};
use cachemir_ir::layout::{EMPTY, Layout};
use cachemir_ir::plan::Plaintext;
use std::sync::Arc;

/// Sums `x` over `axis` and multiplies by `scale` (`1/n` for a mean); the output keeps the axis
/// with extent 1.
pub fn reduce(b: &mut Builder, x: &Cipher, axis: usize, scale: f64) -> Cipher {
    let shape = &x.layout.shape;
    let n = shape[axis];
    let after: usize = shape[axis + 1..].iter().product();
    let mut out_shape = shape.clone();
    out_shape[axis] = 1;
    let outputs: usize = out_shape.iter().product();
    let element = |o: usize, k: usize| (o / after) * n * after + k * after + o % after;
    match structure(&x.layout, n, outputs, &element) {
        Some(found) => emit(b, x, &found, &out_shape, scale),
        None => {
            // Axis last, padded to a power of two within a ciphertext or to whole ciphertexts.
            let padded = if n <= x.layout.slots {
                n.next_power_of_two()
            } else {
                n.next_multiple_of(x.layout.slots)
            };
            let slots = x.layout.slots;
            let total = outputs * padded;
            let mut map = vec![vec![EMPTY; slots]; total.div_ceil(slots)];
            for o in 0..outputs {
                for k in 0..n {
                    let p = o * padded + k;
                    map[p / slots][p % slots] = element(o, k) as u32;
                }
            }
            let target = Layout::from_map(shape, slots, map);
            let converted = gather(b, &[x], &target, &|e| Some((0, e)), None);
            let found = structure(&converted.layout, n, outputs, &element)
                .expect("a padded axis-last layout has a stride structure");
            emit(b, &converted, &found, &out_shape, scale)
        }
    }
}

/// The stride structure of a reduced axis (see the module documentation).
struct Structure {
    delta: usize,
    width: usize,
    blocks: usize,
    /// Chain starts per output: (ciphertext, slot) of every verified `(o, 0)`.
    starts: Vec<Vec<(usize, usize)>>,
}

fn structure(
    layout: &Layout,
    n: usize,
    outputs: usize,
    element: &dyn Fn(usize, usize) -> usize,
) -> Option<Structure> {
    let slots = layout.slots;
    let positions = super::convert::Positions::of(layout);
    let holds = |c: usize, s: usize, e: usize| {
        layout
            .map
            .get(c)
            .is_some_and(|m| m[s] != EMPTY && m[s] as usize == e)
    };
    let first = positions.of_element(element(0, 0));
    let mut candidates: Vec<(usize, usize)> = Vec::new();
    if n == 1 {
        candidates.push((0, 1));
    } else {
        for &p0 in first {
            for &p1 in positions.of_element(element(0, 1)) {
                let (c0, s0, c1, s1) = (
                    p0 as usize / slots,
                    p0 as usize % slots,
                    p1 as usize / slots,
                    p1 as usize % slots,
                );
                if c0 == c1 {
                    // Width: how far the chain stays in one ciphertext.
                    let delta = (s1 + slots - s0) % slots;
                    let mut width = 1;
                    while width < n && holds(c0, (s0 + width * delta) % slots, element(0, width)) {
                        width += 1;
                    }
                    candidates.push((delta, width));
                } else if c1 == c0 + 1 && s1 == s0 {
                    candidates.push((0, 1));
                }
            }
        }
        candidates.sort_unstable();
        candidates.dedup();
        // Cyclic chains first: their sums land in every slot of the orbit (no mask, free
        // broadcast back); then the chains starting from the most copies of the first output
        // (a replicated input has several chain directions, and the one that follows its
        // replication covers every copy, so the spread sum lands wherever the inputs were);
        // then the smallest stride.
        let verified_starts = |delta: usize, width: usize| {
            first
                .iter()
                .filter(|&&p| {
                    let (c, s) = (p as usize / slots, p as usize % slots);
                    (0..n).all(|k| {
                        holds(
                            c + k / width,
                            (s + (k % width) * delta) % slots,
                            element(0, k),
                        )
                    })
                })
                .count()
        };
        let mut ranked: Vec<(bool, std::cmp::Reverse<usize>, usize, usize)> = candidates
            .iter()
            .map(|&(delta, width)| {
                (
                    width < n || !(width * delta).is_multiple_of(slots),
                    std::cmp::Reverse(verified_starts(delta, width)),
                    delta,
                    width,
                )
            })
            .collect();
        ranked.sort_unstable();
        candidates = ranked.into_iter().map(|(_, _, d, w)| (d, w)).collect();
    }
    'candidate: for (delta, width) in candidates {
        let blocks = n.div_ceil(width);
        let chain = |c: usize, s: usize, o: usize| {
            (0..n).all(|k| {
                holds(
                    c + k / width,
                    (s + (k % width) * delta) % slots,
                    element(o, k),
                )
            }) && (n..blocks * width).all(|k| {
                layout
                    .map
                    .get(c + k / width)
                    .is_none_or(|m| m[(s + (k % width) * delta) % slots] == EMPTY)
            })
        };
        let mut starts = Vec::with_capacity(outputs);
        let mut block_of = vec![usize::MAX; layout.ciphertexts()];
        for o in 0..outputs {
            let verified: Vec<(usize, usize)> = positions
                .of_element(element(o, 0))
                .iter()
                .map(|&p| (p as usize / slots, p as usize % slots))
                .filter(|&(c, s)| chain(c, s, o))
                .collect();
            if verified.is_empty() {
                continue 'candidate;
            }
            // Blocks of ciphertexts must not overlap between outputs.
            for &(c, _) in &verified {
                for j in 0..blocks {
                    match block_of.get_mut(c + j) {
                        Some(b) if *b == usize::MAX || *b == c => *b = c,
                        _ => continue 'candidate,
                    }
                }
            }
            starts.push(verified);
        }
        return Some(Structure {
            delta,
            width,
            blocks,
            starts,
        });
    }
    None
}

fn emit(b: &mut Builder, x: &Cipher, found: &Structure, out_shape: &[usize], scale: f64) -> Cipher {
    let slots = b.slots;
    // Output ciphertexts: one per distinct block start.
    let mut block_starts: Vec<usize> = found
        .starts
        .iter()
        .flat_map(|v| v.iter().map(|&(c, _)| c))
        .collect();
    block_starts.sort_unstable();
    block_starts.dedup();
    let index_of = |c: usize| block_starts.binary_search(&c).expect("a block start");
    let mut map = vec![vec![EMPTY; slots]; block_starts.len()];
    let cyclic = found.blocks == 1 && (found.width * found.delta).is_multiple_of(slots);
    for (o, verified) in found.starts.iter().enumerate() {
        for &(c, s) in verified {
            let out = &mut map[index_of(c)];
            for k in 0..found.width {
                out[(s + k * found.delta) % slots] = o as u32;
            }
        }
    }
    let mut registers = Vec::with_capacity(block_starts.len());
    for &start in &block_starts {
        let parts: Vec<_> = (0..found.blocks).map(|j| x.registers[start + j]).collect();
        let summed = b.sum(&parts).expect("at least one ciphertext");
        let summed = if found.width > 1 {
            strided_sum(b, summed, found.delta, found.width)
        } else {
            summed
        };
        let value = if cyclic {
            if scale == 1.0 {
                summed
            } else {
                b.multiply_scalar(summed, scale)
            }
        } else {
            // Keep the chain starts, then spread each back over its chain (the doubling in the
            // opposite direction), so a broadcast of the sum back to the reduced axis is free.
            let starts = super::convert::slot_runs(
                found
                    .starts
                    .iter()
                    .flat_map(|v| v.iter().filter(|&&(c, _)| c == start).map(|&(_, s)| s)),
            );
            let masked = b.multiply_plain(
                summed,
                Plaintext::Fill {
                    runs: starts,
                    value: scale,
                },
            );
            if found.width > 1 {
                strided_sum(
                    b,
                    masked,
                    (slots - found.delta % slots) % slots,
                    found.width,
                )
            } else {
                masked
            }
        };
        registers.push(value);
    }
    Cipher {
        registers,
        layout: Arc::new(Layout::from_map(out_shape, slots, map)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_reduce(
        input: &Layout,
        axis: usize,
        scale: f64,
    ) -> (Vec<f64>, Vec<f64>, crate::lower::Counts) {
        let mut b = Builder::new(input.slots);
        let x = Cipher {
            registers: (0..input.ciphertexts())
                .map(|c| b.load(0, c as u32))
                .collect(),
            layout: Arc::new(input.clone()),
        };
        let y = reduce(&mut b, &x, axis, scale);
        for (c, r) in y.registers.iter().enumerate() {
            b.store(*r, 0, c as u32);
        }
        let counts = b.counts;
        let output = (*y.layout).clone();
        let values: Vec<f64> = (0..input.elements())
            .map(|v| ((v * 7) % 11) as f64 - 3.0)
            .collect();
        let out = [super::super::run_on_sim(b, input, &output, &values)];
        // Every slot outside the output layout must be zero.
        for (c, m) in output.map.iter().enumerate() {
            for (s, &e) in m.iter().enumerate() {
                if e == EMPTY {
                    assert_eq!(out[0][c][s], 0.0, "slot {s} of ciphertext {c} not clean");
                }
            }
        }
        (values, output.decode(&out[0]).unwrap(), counts)
    }

    fn expected(values: &[f64], shape: &[usize], axis: usize, scale: f64) -> Vec<f64> {
        let n = shape[axis];
        let after: usize = shape[axis + 1..].iter().product();
        let outputs = values.len() / n;
        (0..outputs)
            .map(|o| {
                scale
                    * (0..n)
                        .map(|k| values[(o / after) * n * after + k * after + o % after])
                        .sum::<f64>()
            })
            .collect()
    }

    #[test]
    fn interleaved_norm_sum_lands_in_every_slot_without_a_mask() {
        let input = Layout::interleaved(&[1, 1, 16], 64, 16);
        let (values, y, counts) = run_reduce(&input, 2, 1.0 / 16.0);
        assert_eq!(y, expected(&values, &[1, 1, 16], 2, 1.0 / 16.0));
        assert_eq!(counts.rotations, 4);
        assert_eq!(counts.plaintext_multiplications, 0);
    }

    #[test]
    fn row_major_axes_reduce_exactly() {
        for (shape, axis, slots) in [
            (vec![3, 5], 1, 8),
            (vec![3, 5], 0, 8),
            (vec![2, 6, 4], 1, 16),
            (vec![4, 40], 1, 16),
        ] {
            let input = Layout::row_major(&shape, slots);
            let (values, y, _) = run_reduce(&input, axis, 1.0);
            let want = expected(&values, &shape, axis, 1.0);
            for (a, w) in y.iter().zip(&want) {
                assert!((a - w).abs() < 1e-12, "{shape:?} axis {axis}: {a} vs {w}");
            }
        }
    }
}
