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
    gather_in_steps(b, sources, target, origin, care, true)
}

fn gather_in_steps(
    b: &mut Builder,
    sources: &[&Cipher],
    target: &Layout,
    origin: Origin<'_>,
    care: Option<&[Vec<bool>]>,
    two_steps: bool,
) -> Cipher {
    let slots = b.slots;
    let positions: Vec<Positions> = sources.iter().map(|s| Positions::of(&s.layout)).collect();
    let (wanted, candidates) = candidates(sources, target, origin, &positions, slots);
    let groups = cover(&wanted, &candidates);
    // A replicated target reached by many groups: gather one copy of each element first (few
    // groups when the source is structured), then replicate that clean copy, whose groups are
    // whole rotations in arithmetic progression (doubling) for the usual replication patterns.
    let rotations = groups
        .iter()
        .filter(|(k, _)| k.step != 0)
        .map(|(k, _)| (k.source, k.source_part, k.step))
        .collect::<std::collections::HashSet<_>>()
        .len();
    if two_steps
        && rotations > REPLICATE_SEPARATELY_ABOVE
        && let Some(single) = one_copy(target, &positions, origin)
    {
        // Both on scratch builders continuing this one's register numbering, and the cheaper by
        // the cost model appended: the instructions building here would have given.
        let mut two = b.scratch();
        let first = gather_in_steps(&mut two, sources, &single, origin, None, false);
        let in_two_steps =
            gather_in_steps(&mut two, &[&first], target, &|e| Some((0, e)), care, false);
        let mut one = b.scratch();
        let direct = emit(&mut one, sources, target, care, groups);
        if super::matvec::cost(&two.counts) < super::matvec::cost(&one.counts) {
            b.append(two);
            return in_two_steps;
        }
        b.append(one);
        return direct;
    }
    emit(b, sources, target, care, groups)
}

/// The instructions of a cover's `groups`: hoisted rotations per source ciphertext, masks where
/// a group's rotated ciphertext brings slots that must stay clean, doubling for whole-ciphertext
/// broadcasts, and the sum per target ciphertext.
fn emit(
    b: &mut Builder,
    sources: &[&Cipher],
    target: &Layout,
    care: Option<&[Vec<bool>]>,
    groups: Vec<(Key, Vec<SlotRun>)>,
) -> Cipher {
    let slots = b.slots;
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
    let needs_mask = |key: &Key, members: &[SlotRun]| -> bool {
        let count: usize = members.iter().map(|r| r.len as usize).sum();
        if count == occupied[key.source as usize][key.source_part as usize] {
            return false;
        }
        let Some(care) = care else { return true };
        // Every source slot outside the group must land on a slot nobody cares about.
        let mut assigned = vec![false; slots];
        for run in members {
            let first = run.start as usize % slots;
            assigned[first..first + run.len as usize].fill(true);
        }
        let map = &sources[key.source as usize].layout.map[key.source_part as usize];
        let step = key.step as usize;
        let care = &care[key.target_part as usize];
        map.iter().enumerate().any(|(q, &e)| {
            if e == EMPTY {
                return false;
            }
            let d = (q + slots - step) & (slots - 1);
            !assigned[d] && care[d]
        })
    };
    // Rotations, hoisted per source ciphertext; doubling for whole-ciphertext broadcasts.
    let mut contributions: Vec<Vec<Register>> = vec![Vec::new(); target.ciphertexts()];
    type Groups = Vec<(Key, Vec<SlotRun>)>;
    let mut by_source: BTreeMap<(u32, u32), Groups> = BTreeMap::new();
    for (key, members) in groups {
        by_source
            .entry((key.source, key.source_part))
            .or_default()
            .push((key, members));
    }
    for ((source, part), groups) in by_source {
        let register = sources[source as usize].registers[part as usize];
        let masks: Vec<bool> = groups.iter().map(|(k, m)| needs_mask(k, m)).collect();
        // Doubling applies per target ciphertext when all its groups are unmasked and their
        // steps are an arithmetic progression from 0.
        let mut rest: Vec<usize> = Vec::new();
        let mut per_target: BTreeMap<u32, Vec<usize>> = BTreeMap::new();
        for (g, (k, _)) in groups.iter().enumerate() {
            per_target.entry(k.target_part).or_default().push(g);
        }
        for (target_part, members) in per_target {
            // The progression search is quadratic in the steps: only where doubling applies.
            let unmasked = members.len() >= 4 && members.iter().all(|&g| !masks[g]);
            let steps: Vec<usize> = members.iter().map(|&g| groups[g].0.step as usize).collect();
            match unmasked.then(|| progression(&steps, slots)).flatten() {
                Some((start, delta, n)) => {
                    let sum = strided_sum(b, register, delta, n);
                    contributions[target_part as usize].push(b.rotate(sum, start as i64));
                }
                _ => rest.extend(members),
            }
        }
        let steps: Vec<i64> = rest.iter().map(|&g| groups[g].0.step as i64).collect();
        let rotated = b.rotate_hoisted(register, &steps);
        for (&g, rotated) in rest.iter().zip(rotated) {
            let (key, members) = &groups[g];
            let value = if masks[g] {
                let runs = slot_runs_of(members, slots);
                b.multiply_plain(rotated, Plaintext::Fill { runs, value: 1.0 })
            } else {
                rotated
            };
            contributions[key.target_part as usize].push(value);
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

/// A candidate group: target slots of `target_part` served by rotating ciphertext
/// `source_part` of source `source` by `step` slots.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Key {
    source: u32,
    source_part: u32,
    target_part: u32,
    step: u32,
}

/// Multiply-rotate hashing of the four words of a [`Key`] (Fx-style): the cover hashes a key
/// per wanted run, millions for a long KV cache, where SipHash's resistance to chosen keys buys
/// nothing (the keys come from the compiler).
#[derive(Default, Clone, Copy)]
struct KeyHasher(u64);

impl std::hash::Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u32(&mut self, word: u32) {
        self.write_u64(u64::from(word));
    }

    fn write_u64(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

type KeyMap<V> = HashMap<Key, V, std::hash::BuildHasherDefault<KeyHasher>>;

/// `len` consecutive global target slots (`ciphertext · slots + slot`) from `start`.
#[derive(Clone, Copy, Debug)]
struct SlotRun {
    start: u32,
    len: u32,
}

/// Target slots wanting an element: a run of slots sharing one candidate list
/// `candidates[first..first + count]`.
struct Want {
    run: SlotRun,
    first: u32,
    count: u32,
}

/// The candidate groups of every occupied target slot. Step 0 from the same slot index is the
/// only candidate when available, since it is free and usually what a layout-preserving consumer
/// wants. Consecutive slots with the same single candidate share one [`Want`]: layouts of millions
/// of slots (a long KV cache) cost a few thousand runs, not an allocation per slot.
fn candidates(
    sources: &[&Cipher],
    target: &Layout,
    origin: Origin<'_>,
    positions: &[Positions],
    slots: usize,
) -> (Vec<Want>, Vec<Key>) {
    // Slot counts are powers of two: shifts and masks instead of divisions in the per-slot loop.
    let (shift, mask) = (slots.trailing_zeros(), slots - 1);
    let mut wanted: Vec<Want> = Vec::new();
    let mut candidates: Vec<Key> = Vec::new();
    for (c, map) in target.map.iter().enumerate() {
        for (s, &e) in map.iter().enumerate() {
            if e == EMPTY {
                continue;
            }
            let (i, j) = origin(e as usize).expect("every target element has an origin");
            let held = positions[i].of_element(j);
            assert!(!held.is_empty(), "source element {j} is in no slot");
            // Same slot: look it up where it is likely (the same ciphertext index, the first)
            // rather than scanning an element replicated over millions of slots.
            let source_map = &sources[i].layout.map;
            let same_slot = if held.len() <= 16 {
                held.iter().copied().find(|&p| p as usize & mask == s)
            } else {
                [c, 0]
                    .into_iter()
                    .find(|&pc| source_map.get(pc).is_some_and(|m| m[s] == j as u32))
                    .map(|pc| (pc * slots + s) as u32)
            };
            let key = |p: u32| Key {
                source: i as u32,
                source_part: p >> shift,
                target_part: c as u32,
                step: ((p as usize + slots - s) & mask) as u32,
            };
            let global = (c * slots + s) as u32;
            let single = match same_slot {
                Some(p) => Some(key(p)),
                None if held.len() == 1 => Some(key(held[0])),
                None => None,
            };
            if let Some(k) = single {
                if let Some(last) = wanted.last_mut()
                    && last.count == 1
                    && candidates[last.first as usize] == k
                    && last.run.start + last.run.len == global
                {
                    last.run.len += 1;
                    continue;
                }
                wanted.push(Want {
                    run: SlotRun {
                        start: global,
                        len: 1,
                    },
                    first: candidates.len() as u32,
                    count: 1,
                });
                candidates.push(k);
                continue;
            }
            let first = candidates.len() as u32;
            candidates.extend(held.iter().take(64).map(|&p| key(p)));
            wanted.push(Want {
                run: SlotRun {
                    start: global,
                    len: 1,
                },
                first,
                count: candidates.len() as u32 - first,
            });
        }
    }
    (wanted, candidates)
}

/// Greedy cover: each wanted slot joins its most popular candidate (ties: the smaller key).
/// Returns the groups sorted by key, each with its target slots as ascending runs.
fn cover(wanted: &[Want], candidates: &[Key]) -> Vec<(Key, Vec<SlotRun>)> {
    // Popularity per candidate entry, looked up once rather than at every comparison.
    let mut popularity_of: Vec<u64> = Vec::new();
    if wanted.iter().any(|w| w.count > 1) {
        let mut popularity: KeyMap<u64> = KeyMap::default();
        for w in wanted {
            for k in &candidates[w.first as usize..(w.first + w.count) as usize] {
                *popularity.entry(*k).or_insert(0) += u64::from(w.run.len);
            }
        }
        popularity_of = candidates.iter().map(|k| popularity[k]).collect();
    }
    let mut group_of: KeyMap<usize> = KeyMap::default();
    let mut grouped: Vec<(Key, Vec<SlotRun>)> = Vec::new();
    // Consecutive runs usually share their group: remember the last one to skip the hashing.
    let mut last: Option<(Key, usize)> = None;
    for w in wanted {
        let range = w.first as usize..(w.first + w.count) as usize;
        let best = if w.count == 1 {
            candidates[range.start]
        } else {
            candidates[range
                .max_by(|&x, &y| {
                    popularity_of[x]
                        .cmp(&popularity_of[y])
                        .then(candidates[y].cmp(&candidates[x]))
                })
                .expect("at least one candidate")]
        };
        let index = match last {
            Some((key, index)) if key == best => index,
            _ => {
                let index = *group_of.entry(best).or_insert_with(|| {
                    grouped.push((best, Vec::new()));
                    grouped.len() - 1
                });
                last = Some((best, index));
                index
            }
        };
        let runs = &mut grouped[index].1;
        match runs.last_mut() {
            Some(r) if r.start + r.len == w.run.start => r.len += w.run.len,
            _ => runs.push(w.run),
        }
    }
    grouped.sort_unstable_by_key(|g| g.0);
    grouped
}

/// Mask runs (ciphertext 0) of a group's target slots, which all lie in one ciphertext.
fn slot_runs_of(members: &[SlotRun], slots: usize) -> Vec<Run> {
    slot_runs(
        members
            .iter()
            .flat_map(|r| (r.start..r.start + r.len).map(move |g| g as usize % slots)),
    )
}

/// Rotation count above which reaching a replicated target in two steps (one copy, then
/// replication) is tried; below it, direct groups cost no more than the two steps would.
const REPLICATE_SEPARATELY_ABOVE: usize = 8;

/// `target` with each element kept in one slot only — the replica reachable from the sources
/// by the rotation step that serves the most elements, so the first step is a few whole-
/// ciphertext moves — or `None` when nothing is replicated.
fn one_copy(target: &Layout, positions: &[Positions], origin: Origin<'_>) -> Option<Layout> {
    let slots = target.slots;
    let replicas = Positions::of(target);
    if (0..target.elements()).all(|e| replicas.of_element(e).len() <= 1) {
        return None;
    }
    let step = |p: u32, q: u32| {
        let (p, q) = (p as usize, q as usize);
        (
            p / slots,
            q / slots,
            (p % slots + slots - q % slots) % slots,
        )
    };
    let mut popularity: HashMap<(usize, usize, usize), u32> = HashMap::new();
    for e in 0..target.elements() {
        let Some((i, j)) = origin(e) else { continue };
        for &q in replicas.of_element(e) {
            for &p in positions[i].of_element(j).iter().take(64) {
                *popularity.entry(step(p, q)).or_insert(0) += 1;
            }
        }
    }
    let mut map = vec![vec![EMPTY; slots]; target.ciphertexts()];
    for e in 0..target.elements() {
        let Some((i, j)) = origin(e) else { continue };
        let best = replicas
            .of_element(e)
            .iter()
            .flat_map(|&q| {
                positions[i]
                    .of_element(j)
                    .iter()
                    .take(64)
                    .map(move |&p| (q, step(p, q)))
            })
            .max_by_key(|&(q, key)| (popularity[&key], std::cmp::Reverse(q)));
        if let Some((q, _)) = best {
            map[q as usize / slots][q as usize % slots] = e as u32;
        }
    }
    Some(Layout::from_map(&target.shape, slots, map))
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

/// `Some((start, Δ, n))` when `steps` (mod `slots`) are exactly `{start + kΔ : k < n}`.
fn progression(steps: &[usize], slots: usize) -> Option<(usize, usize, usize)> {
    let n = steps.len();
    if n < 2 {
        return None;
    }
    let set: std::collections::HashSet<usize> = steps.iter().copied().collect();
    // Prefer a progression from 0 (no extra rotation), then any start.
    let mut starts: Vec<usize> = steps.to_vec();
    starts.sort_unstable_by_key(|&s| (s != 0, s));
    for start in starts {
        // Δ is the distance from the start to some member; try each.
        let found = steps
            .iter()
            .map(|&t| (t + slots - start) % slots)
            .filter(|&d| d != 0)
            .find(|&d| (0..n).all(|k| set.contains(&((start + k * d) % slots))));
        if let Some(delta) = found {
            return Some((start, delta, n));
        }
    }
    None
}

/// Global positions (`ciphertext · slots + slot`) of every element of a layout, in slot order.
/// Layouts holding each element once (a KV cache, an attention product: millions of slots) are
/// stored as one position per element, found in a single pass; replicated ones flat, with
/// offsets per element (two passes).
#[derive(Debug)]
pub struct Positions {
    /// Per element: its position, or [`EMPTY`] when held by no slot (each element held once).
    once: Vec<u32>,
    /// Offsets per element into `positions` (replicated layouts; empty otherwise).
    offsets: Vec<u32>,
    positions: Vec<u32>,
}

impl Positions {
    pub fn of(layout: &Layout) -> Self {
        let mut once = vec![EMPTY; layout.elements()];
        let mut replicated = false;
        'scan: for (c, map) in layout.map.iter().enumerate() {
            let base = c * layout.slots;
            for (s, &e) in map.iter().enumerate() {
                if e != EMPTY {
                    let at = &mut once[e as usize];
                    if *at != EMPTY {
                        replicated = true;
                        break 'scan;
                    }
                    *at = (base + s) as u32;
                }
            }
        }
        if !replicated {
            return Self {
                once,
                offsets: Vec::new(),
                positions: Vec::new(),
            };
        }
        drop(once);
        let mut offsets = vec![0u32; layout.elements() + 1];
        for map in &layout.map {
            for &e in map {
                if e != EMPTY {
                    offsets[e as usize + 1] += 1;
                }
            }
        }
        for k in 1..offsets.len() {
            offsets[k] += offsets[k - 1];
        }
        let mut next = offsets.clone();
        let mut positions = vec![0u32; offsets[offsets.len() - 1] as usize];
        for (c, map) in layout.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                if e != EMPTY {
                    let at = &mut next[e as usize];
                    positions[*at as usize] = (c * layout.slots + s) as u32;
                    *at += 1;
                }
            }
        }
        Self {
            once: Vec::new(),
            offsets,
            positions,
        }
    }

    /// The positions of `element`.
    pub fn of_element(&self, element: usize) -> &[u32] {
        if self.offsets.is_empty() {
            let at = &self.once[element];
            if *at == EMPTY {
                &[]
            } else {
                std::slice::from_ref(at)
            }
        } else {
            &self.positions[self.offsets[element] as usize..self.offsets[element + 1] as usize]
        }
    }
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

    fn run(b: Builder, input: &Layout, output: &Layout, values: &[f64]) -> Vec<f64> {
        output
            .decode(&super::super::run_on_sim(b, input, output, values))
            .unwrap()
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
    fn positions_list_every_slot_of_every_element_in_slot_order() {
        let mut replicated = Layout::interleaved(&[6], 32, 8);
        replicated.map[0][5] = EMPTY;
        for layout in [
            Layout::row_major(&[5, 7], 16),
            Layout::interleaved(&[12], 64, 8),
            replicated,
        ] {
            let positions = Positions::of(&layout);
            for e in 0..layout.elements() {
                let scanned: Vec<u32> = (0..layout.ciphertexts() * layout.slots)
                    .filter(|&p| layout.map[p / layout.slots][p % layout.slots] == e as u32)
                    .map(|p| p as u32)
                    .collect();
                assert_eq!(positions.of_element(e), scanned, "element {e}");
            }
        }
    }

    #[test]
    fn a_kernel_built_on_a_scratch_builder_and_appended_is_built_as_directly() {
        // A transpose across ciphertexts: rotations and masks (plaintexts interned after one
        // the builder already holds, so the scratch builder's indices must be renumbered).
        let input = Layout::row_major(&[6, 5], 8);
        let output = Layout::row_major(&[5, 6], 8);
        let origin = |e: usize| Some((0, (e % 6) * 5 + e / 6));
        let start = |b: &mut Builder| {
            let registers: Vec<Register> = (0..input.ciphertexts())
                .map(|c| b.load(0, c as u32))
                .collect();
            let fill = Plaintext::Fill {
                runs: slot_runs(0..3),
                value: 2.0,
            };
            b.multiply_plain(registers[0], fill);
            Cipher {
                registers,
                layout: Arc::new(input.clone()),
            }
        };
        let mut direct = Builder::new(8);
        let x = start(&mut direct);
        let out = gather(&mut direct, &[&x], &output, &origin, None).registers;
        let mut appended = Builder::new(8);
        let x = start(&mut appended);
        let mut scratch = appended.scratch();
        let registers = gather(&mut scratch, &[&x], &output, &origin, None).registers;
        appended.append(scratch);
        assert!(direct.counts.rotations > 0 && direct.plaintexts.len() > 1);
        assert_eq!(registers, out);
        assert_eq!(appended.instructions, direct.instructions);
        assert_eq!(appended.instruction_sites, direct.instruction_sites);
        assert_eq!(appended.plaintexts, direct.plaintexts);
        assert_eq!(appended.counts, direct.counts);
        assert_eq!(appended.rotations, direct.rotations);
        assert_eq!(appended.registers, direct.registers);
    }

    #[test]
    fn identity_costs_nothing() {
        let layout = Layout::interleaved(&[8], 32, 8);
        let (y, counts) = convert(&layout, &layout, &|e| Some((0, e)));
        assert_eq!(y, (1..=8).map(f64::from).collect::<Vec<_>>());
        assert_eq!(counts, crate::lower::Counts::default());
    }
}
