//! Layout conversion: moves tensor elements from where they are into a target layout with masked
//! rotations — the general fallback behind every data movement (transposes that cross slots,
//! concatenations, broadcasts, GQA head replication, slices) and the explicit conversion between
//! kernels whose layouts disagree.
//!
//! Each target slot takes its element from one source slot, which fixes a rotation step; slots
//! sharing (source ciphertext, target ciphertext, step) form a group costing one rotation (hoisted
//! per source ciphertext) plus one plaintext mask unless the whole rotated ciphertext lands where it
//! should. Sources replicated over several slots offer several steps; a greedy cover picks the
//! steps serving the most target slots. Groups that are whole rotations of one source by
//! `0, Δ, 2Δ, …, (n−1)Δ` (a broadcast along a stride) are summed by doubling in ⌈log2 n⌉ + popcount
//! rotations instead of `n − 1`.
//!
//! Costs: rotations = distinct nonzero (source ciphertext, step) pairs used (fewer with doubling);
//! plaintext multiplications = groups that need a mask; additions = groups − target ciphertexts.

use crate::lower::{Builder, Cipher};
use cachemir_ir::layout::{EMPTY, Layout, Run};
use cachemir_ir::plan::{Plaintext, Register};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// Where a target element comes from: (index into the sources, element of that source).
pub type Origin<'a> = &'a dyn Fn(usize) -> Option<(usize, usize)>;

/// Moves elements of `sources` into `target`: target element `e` is `sources[i]` element `j`
/// for `origin(e) = Some((i, j))`. `care[c][s] = false` marks target slots whose content does not
/// matter (the other factor of a product is zero there); `None` means every slot matters and
/// empty target slots end up zero.
///
/// # Panics
/// If a target element's origin is missing or held by no slot of its source (a compiler bug).
pub fn gather(
    b: &mut Builder,
    sources: &[&Cipher],
    target: &Layout,
    origin: Origin<'_>,
    care: Option<&[Vec<bool>]>,
) -> Cipher {
    let slots = b.slots;
    let positions: Vec<Vec<Vec<u32>>> = sources.iter().map(|s| positions(&s.layout)).collect();
    // Candidate groups per target slot; step 0 from the same slot index when available, since it
    // is free and usually what a layout-preserving consumer wants.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
    struct Key {
        source: usize,
        source_part: usize,
        target_part: usize,
        step: usize,
    }
    let mut wanted: Vec<(usize, usize, Vec<Key>)> = Vec::new();
    let mut popularity: HashMap<Key, usize> = HashMap::new();
    for (c, map) in target.map.iter().enumerate() {
        for (s, &e) in map.iter().enumerate() {
            if e == EMPTY {
                continue;
            }
            let (i, j) = origin(e as usize).expect("every target element has an origin");
            let held = &positions[i][j];
            assert!(!held.is_empty(), "source element {j} is in no slot");
            let same_slot = held.iter().find(|&&p| p as usize % slots == s);
            let keys: Vec<Key> = match same_slot {
                Some(&p) => vec![Key {
                    source: i,
                    source_part: p as usize / slots,
                    target_part: c,
                    step: 0,
                }],
                None => held
                    .iter()
                    .take(64)
                    .map(|&p| Key {
                        source: i,
                        source_part: p as usize / slots,
                        target_part: c,
                        step: (p as usize % slots + slots - s) % slots,
                    })
                    .collect(),
            };
            for k in &keys {
                *popularity.entry(*k).or_insert(0) += 1;
            }
            wanted.push((c, s, keys));
        }
    }
    // Greedy cover: each slot joins its most popular candidate (ties: smaller key).
    let mut groups: BTreeMap<Key, Vec<usize>> = BTreeMap::new();
    for (c, s, keys) in wanted {
        let best = keys
            .iter()
            .max_by(|x, y| popularity[x].cmp(&popularity[y]).then(y.cmp(x)))
            .expect("at least one candidate");
        groups.entry(*best).or_default().push(c * slots + s);
    }
    // Whether a group's rotated ciphertext can be used unmasked.
    let occupied: Vec<Vec<usize>> = sources
        .iter()
        .map(|src| {
            src.layout
                .map
                .iter()
                .map(|m| m.iter().filter(|&&e| e != EMPTY).count())
                .collect()
        })
        .collect();
    let needs_mask = |key: &Key, members: &[usize]| -> bool {
        if members.len() == occupied[key.source][key.source_part] {
            return false;
        }
        let Some(care) = care else { return true };
        // Every source slot outside the group must land on a slot nobody cares about.
        let assigned: std::collections::HashSet<usize> =
            members.iter().map(|g| g % slots).collect();
        let map = &sources[key.source].layout.map[key.source_part];
        map.iter().enumerate().any(|(q, &e)| {
            if e == EMPTY {
                return false;
            }
            let d = (q + slots - key.step) % slots;
            !assigned.contains(&d) && care[key.target_part][d]
        })
    };
    // Rotations, hoisted per source ciphertext; doubling for whole-ciphertext broadcasts.
    let mut contributions: Vec<Vec<Register>> = vec![Vec::new(); target.ciphertexts()];
    type Groups = Vec<(Key, Vec<usize>)>;
    let mut by_source: BTreeMap<(usize, usize), Groups> = BTreeMap::new();
    for (key, members) in groups {
        by_source
            .entry((key.source, key.source_part))
            .or_default()
            .push((key, members));
    }
    for ((source, part), groups) in by_source {
        let register = sources[source].registers[part];
        let masks: Vec<bool> = groups.iter().map(|(k, m)| needs_mask(k, m)).collect();
        // Doubling applies per target ciphertext when all its groups are unmasked and their
        // steps are an arithmetic progression from 0.
        let mut rest: Vec<usize> = Vec::new();
        let mut per_target: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for (g, (k, _)) in groups.iter().enumerate() {
            per_target.entry(k.target_part).or_default().push(g);
        }
        for (target_part, members) in per_target {
            let steps: Vec<usize> = members.iter().map(|&g| groups[g].0.step).collect();
            match progression(&steps, slots) {
                Some((delta, n)) if n >= 4 && members.iter().all(|&g| !masks[g]) => {
                    let sum = strided_sum(b, register, delta, n);
                    contributions[target_part].push(sum);
                }
                _ => rest.extend(members),
            }
        }
        let steps: Vec<i64> = rest.iter().map(|&g| groups[g].0.step as i64).collect();
        let rotated = b.rotate_hoisted(register, &steps);
        for (&g, rotated) in rest.iter().zip(rotated) {
            let (key, members) = &groups[g];
            let value = if masks[g] {
                let runs = slot_runs(members.iter().map(|m| m % slots));
                b.multiply_plain(rotated, Plaintext::Fill { runs, value: 1.0 })
            } else {
                rotated
            };
            contributions[key.target_part].push(value);
        }
    }
    // A target ciphertext without elements is zero: x − x of any source costs one addition.
    let any = sources[0].registers[0];
    let registers = contributions
        .iter()
        .map(|terms| b.sum(terms).unwrap_or_else(|| b.sub(any, any)))
        .collect();
    Cipher {
        registers,
        layout: Arc::new(target.clone()),
    }
}

/// `Σ_{k<n} rot(x, k·delta)` with doubling: ⌊log2 n⌋ + popcount(n) − 1 rotations.
pub fn strided_sum(b: &mut Builder, x: Register, delta: usize, n: usize) -> Register {
    // Binary method over n: `window` sums `width` consecutive rotations.
    let mut window = x;
    let mut width = 1usize;
    let mut total: Option<(Register, usize)> = None;
    let mut remaining = n;
    loop {
        if remaining & 1 == 1 {
            total = Some(match total {
                None => (window, width),
                Some((acc, covered)) => {
                    let shifted = b.rotate(window, (covered * delta) as i64);
                    (b.add(acc, shifted), covered + width)
                }
            });
        }
        remaining >>= 1;
        if remaining == 0 {
            break;
        }
        let shifted = b.rotate(window, (width * delta) as i64);
        window = b.add(window, shifted);
        width *= 2;
    }
    total.expect("n ≥ 1").0
}

/// `Some((Δ, n))` when `steps` (mod `slots`) are exactly `{0, Δ, 2Δ, …, (n−1)Δ}`.
fn progression(steps: &[usize], slots: usize) -> Option<(usize, usize)> {
    let n = steps.len();
    if n < 2 || !steps.contains(&0) {
        return None;
    }
    let set: std::collections::HashSet<usize> = steps.iter().copied().collect();
    // Δ is the step whose multiples generate the set; try each candidate.
    steps
        .iter()
        .filter(|&&d| d != 0)
        .copied()
        .find(|&d| (0..n).all(|k| set.contains(&(k * d % slots))))
        .map(|d| (d, n))
}

/// Global positions (`ciphertext · slots + slot`) of every element of `layout`.
pub fn positions(layout: &Layout) -> Vec<Vec<u32>> {
    let mut positions = vec![Vec::new(); layout.elements()];
    for (c, map) in layout.map.iter().enumerate() {
        for (s, &e) in map.iter().enumerate() {
            if e != EMPTY {
                positions[e as usize].push((c * layout.slots + s) as u32);
            }
        }
    }
    positions
}

/// Runs (ciphertext 0, element ignored) covering the given slots.
pub fn slot_runs(slots: impl Iterator<Item = usize>) -> Vec<Run> {
    let mut sorted: Vec<usize> = slots.collect();
    sorted.sort_unstable();
    sorted.dedup();
    let mut runs: Vec<Run> = Vec::new();
    for s in sorted {
        match runs.last_mut() {
            Some(run) if (run.slot + run.count) as usize == s => run.count += 1,
            _ => runs.push(Run {
                ciphertext: 0,
                slot: s as u32,
                count: 1,
                element: 0,
                step: 0,
            }),
        }
    }
    runs
}

/// Every slot of `layout` holding an element.
pub fn occupied(layout: &Layout) -> Vec<Vec<bool>> {
    layout
        .map
        .iter()
        .map(|m| m.iter().map(|&e| e != EMPTY).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lower::Interface;
    use cachemir_ir::plan::Ciphertexts;

    fn run(b: Builder, input: &Layout, output: &Layout, values: &[f64]) -> Vec<f64> {
        let plan = b.finish(Interface {
            inputs: vec![Ciphertexts {
                name: "x".into(),
                layout: input.clone(),
            }],
            outputs: vec![Ciphertexts {
                name: "y".into(),
                layout: output.clone(),
            }],
            ..Default::default()
        });
        plan.validate().unwrap();
        let outputs =
            cachemir_vm::sim::execute(&plan, &HashMap::new(), &[input.encode(values).unwrap()])
                .unwrap();
        output.decode(&outputs[0]).unwrap()
    }

    fn convert(
        input: &Layout,
        output: &Layout,
        origin: Origin<'_>,
    ) -> (Vec<f64>, crate::lower::Counts) {
        let mut b = Builder::new(input.slots);
        let x = Cipher {
            registers: (0..input.ciphertexts())
                .map(|c| b.load(0, c as u32))
                .collect(),
            layout: Arc::new(input.clone()),
        };
        let y = gather(&mut b, &[&x], output, origin, None);
        for (c, r) in y.registers.iter().enumerate() {
            b.store(*r, 0, c as u32);
        }
        let counts = b.counts;
        let values: Vec<f64> = (0..input.elements()).map(|v| v as f64 + 1.0).collect();
        (run(b, input, output, &values), counts)
    }

    #[test]
    fn transpose_across_ciphertexts_is_exact() {
        let input = Layout::row_major(&[6, 5], 8);
        let output = Layout::row_major(&[5, 6], 8);
        let (y, _) = convert(&input, &output, &|e| Some((0, (e % 6) * 5 + e / 6)));
        for (e, v) in y.iter().enumerate() {
            assert_eq!(*v, ((e % 6) * 5 + e / 6) as f64 + 1.0);
        }
    }

    #[test]
    fn broadcast_along_a_stride_uses_doubling() {
        // x: 4 values at slots 0, 16, 32, 48; target: each repeated over 16 consecutive slots.
        let mut map = vec![vec![EMPTY; 64]];
        for h in 0..4 {
            map[0][h * 16] = h as u32;
        }
        let input = Layout::from_map(&[4], 64, map);
        let output = Layout::row_major(&[4, 16], 64);
        let (y, counts) = convert(&input, &output, &|e| Some((0, e / 16)));
        for (e, v) in y.iter().enumerate() {
            assert_eq!(*v, (e / 16) as f64 + 1.0);
        }
        // 16 = 2^4: four doubling rotations, no masks.
        assert_eq!(counts.rotations, 4);
        assert_eq!(counts.plaintext_multiplications, 0);
    }

    #[test]
    fn identity_costs_nothing() {
        let layout = Layout::interleaved(&[8], 32, 8);
        let (y, counts) = convert(&layout, &layout, &|e| Some((0, e)));
        assert_eq!(y, (1..=8).map(f64::from).collect::<Vec<_>>());
        assert_eq!(counts, crate::lower::Counts::default());
    }
}
