//! Layouts: which tensor element sits in which ciphertext and slot.
//!
//! A [`Layout`] is an explicit slot map: for every ciphertext `c` and slot `s`, the row-major index
//! of the tensor element held there, or nothing. Replication is an element held by several slots;
//! strides, interleaving and padding are whatever the map says. Being explicit, one type describes
//! every packing the compiler chooses — row-major, block-replicated (Halevi–Shoup diagonal method),
//! interleaved replicated packing (IRP; Cachemir, arXiv 2602.11470, §4.1) and the KV-cache layouts —
//! and a client encodes inputs and decodes outputs from the plan alone with [`Layout::encode`] and
//! [`Layout::decode`]. Serialized as runs of slots whose element index advances by a constant step,
//! so structured layouts stay small in a plan file.
//!
//! Invariant of the values the compiler emits: slots outside the map hold zero ("clean").

use serde::{Deserialize, Serialize};

/// The map entry of an empty slot.
pub const EMPTY: u32 = u32::MAX;

/// The most slots a ciphertext has (N = 2^21): a bound on layouts read from a file.
pub const MAX_SLOTS: usize = 1 << 20;

/// The most slot-map entries (ciphertexts × slots) of one layout read from a file: 2^28, i.e.
/// 1 GiB of map and 8192 ciphertexts of 2^15 slots. A file states these counts in a few bytes,
/// so without a bound a corrupt or hostile file would make its reader allocate without limit;
/// [`with_decode_budget`] bounds all the layouts of one decoding together.
pub const MAX_LAYOUT_SLOTS: usize = 1 << 28;

thread_local! {
    /// Slot-map entries the layouts decoded on this thread may still expand to; `None` outside
    /// [`with_decode_budget`].
    static DECODE_BUDGET: std::cell::Cell<Option<usize>> = const { std::cell::Cell::new(None) };
}

/// Runs `decode` (a deserialization of untrusted bytes on this thread) with at most `entries`
/// slot-map entries (ciphertexts × slots) over all the layouts it expands; a layout past the
/// budget fails with [`LayoutError::OverBudget`].
pub fn with_decode_budget<T>(entries: usize, decode: impl FnOnce() -> T) -> T {
    /// Restores the enclosing budget, also when `decode` panics.
    struct Restore(Option<usize>);
    impl Drop for Restore {
        fn drop(&mut self) {
            DECODE_BUDGET.set(self.0);
        }
    }
    let _restore = Restore(DECODE_BUDGET.replace(Some(entries)));
    decode()
}

/// How a layout was built (for reports and for kernels that need a specific packing).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Packing {
    /// Element `e` at global position `e` (ciphertext `e / slots`, slot `e % slots`).
    RowMajor,
    /// A vector of length `d ≤ period` repeated every `period` slots (the diagonal method's input).
    BlockReplicated { period: usize },
    /// Interleaved replicated packing: chunk `c` of `period` elements in ciphertext `c`, slot
    /// `i·t + r` holding element `c·period + (i + r) mod period`, with `t = slots / period`.
    Interleaved { period: usize },
    /// Anything else the compiler derived (relabelled, replicated or cache layouts).
    Derived,
}

/// Where each element of a tensor of `shape` sits in `ciphertexts()` ciphertexts of `slots` slots.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "CompactLayout", try_from = "CompactLayout")]
pub struct Layout {
    /// The tensor's shape; elements are numbered row-major.
    pub shape: Vec<usize>,
    /// Slots per ciphertext (N/2 for full packing).
    pub slots: usize,
    /// `map[c][s]`: the element in slot `s` of ciphertext `c`, or [`EMPTY`].
    pub map: Vec<Vec<u32>>,
    pub packing: Packing,
}

/// Errors of layouts built from untrusted data (a plan file) or of values that do not fit.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LayoutError {
    #[error(
        "layout of shape {shape:?}: element {element} is outside the tensor ({elements} elements)"
    )]
    ElementOutOfRange {
        shape: Vec<usize>,
        element: u64,
        elements: usize,
    },
    #[error("layout of shape {shape:?}: a run leaves ciphertext {ciphertext}'s {slots} slots")]
    SlotOutOfRange {
        shape: Vec<usize>,
        ciphertext: usize,
        slots: usize,
    },
    #[error("layout of shape {shape:?}: element {element} is in no slot")]
    Missing { shape: Vec<usize>, element: usize },
    #[error("layout of shape {shape:?}: {given} values given for {expected} elements")]
    Values {
        shape: Vec<usize>,
        given: usize,
        expected: usize,
    },
    #[error(
        "layout of shape {shape:?}: {given} ciphertexts of {given_slots} slots given for {expected} of {slots}"
    )]
    Ciphertexts {
        shape: Vec<usize>,
        given: usize,
        given_slots: usize,
        expected: usize,
        slots: usize,
    },
    #[error("a layout needs a power-of-two slot count up to {MAX_SLOTS}, got {0}")]
    Slots(usize),
    #[error(
        "layout of shape {shape:?} in {ciphertexts} ciphertexts of {slots} slots: more than {MAX_LAYOUT_SLOTS} slots or elements"
    )]
    TooLarge {
        shape: Vec<usize>,
        ciphertexts: usize,
        slots: usize,
    },
    #[error("a layout of {entries} slots past the decoding's budget ({left} slots left)")]
    OverBudget { entries: usize, left: usize },
}

impl Layout {
    /// Number of tensor elements.
    pub fn elements(&self) -> usize {
        self.shape.iter().product()
    }

    /// Number of ciphertexts.
    pub fn ciphertexts(&self) -> usize {
        self.map.len()
    }

    /// Row-major: element `e` at global position `e`; ⌈elements / slots⌉ ciphertexts.
    pub fn row_major(shape: &[usize], slots: usize) -> Self {
        let elements: usize = shape.iter().product();
        let count = elements.div_ceil(slots).max(1);
        let mut map = vec![vec![EMPTY; slots]; count];
        for e in 0..elements {
            map[e / slots][e % slots] = e as u32;
        }
        Self {
            shape: shape.to_vec(),
            slots,
            map,
            packing: Packing::RowMajor,
        }
    }

    /// The flattened tensor (length `d ≤ period`, `period` a power of two dividing `slots`)
    /// repeated every `period` slots in one ciphertext: rotating by `k` rotates every block
    /// cyclically, which the diagonal method needs (Halevi–Shoup, CRYPTO 2014, §4.1).
    pub fn block_replicated(shape: &[usize], slots: usize, period: usize) -> Self {
        let elements: usize = shape.iter().product();
        assert!(elements <= period && period <= slots && slots.is_multiple_of(period));
        let map = vec![
            (0..slots)
                .map(|s| {
                    let e = s % period;
                    if e < elements { e as u32 } else { EMPTY }
                })
                .collect(),
        ];
        Self {
            shape: shape.to_vec(),
            slots,
            map,
            packing: Packing::BlockReplicated { period },
        }
    }

    /// Interleaved replicated packing (IRP; Cachemir §4.1): the flattened tensor is cut into
    /// chunks of `period` elements (a power of two dividing `slots`), one ciphertext each; with
    /// `t = slots / period`, slot `i·t + r` of chunk `c` holds element `c·period + (i + r) mod
    /// period`. Every element appears `t` times (once per `r`); rotating by `k·t` rotates the
    /// chunk cyclically by `k`, and a sum over the chunk by rotations of `t·2^j` leaves the total
    /// in every slot.
    pub fn interleaved(shape: &[usize], slots: usize, period: usize) -> Self {
        let elements: usize = shape.iter().product();
        Self::interleaved_relabelled(
            shape,
            slots,
            period,
            elements.div_ceil(period).max(1),
            |v| (v < elements).then_some(v),
        )
    }

    /// IRP of a virtual vector of `chunks · period` entries where virtual entry `v` holds the
    /// tensor element `element(v)` (or nothing): the output layout of a matrix–vector kernel whose
    /// weight columns are permuted or duplicated (e.g. a GQA key projection that writes each KV
    /// head once per query head it serves).
    pub fn interleaved_relabelled(
        shape: &[usize],
        slots: usize,
        period: usize,
        chunks: usize,
        element: impl Fn(usize) -> Option<usize>,
    ) -> Self {
        assert!(period.is_power_of_two() && period <= slots && slots.is_multiple_of(period));
        let t = slots / period;
        let map = (0..chunks)
            .map(|c| {
                (0..slots)
                    .map(|s| {
                        let (i, r) = (s / t, s % t);
                        let v = c * period + (i + r) % period;
                        element(v).map_or(EMPTY, |e| e as u32)
                    })
                    .collect()
            })
            .collect();
        Self {
            shape: shape.to_vec(),
            slots,
            map,
            packing: Packing::Interleaved { period },
        }
    }

    /// A layout from an explicit map.
    pub fn from_map(shape: &[usize], slots: usize, map: Vec<Vec<u32>>) -> Self {
        Self {
            shape: shape.to_vec(),
            slots,
            map,
            packing: Packing::Derived,
        }
    }

    /// The slot map with every element `o` renamed `new_of_old[o]` (`EMPTY` empties the slot):
    /// transposes, reshapes and subsets of a tensor cost nothing when the slots already hold
    /// what they need.
    pub fn renamed_map(&self, new_of_old: &[u32]) -> Vec<Vec<u32>> {
        self.map
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&o| {
                        if o == EMPTY {
                            EMPTY
                        } else {
                            new_of_old[o as usize]
                        }
                    })
                    .collect()
            })
            .collect()
    }

    /// Global positions (`ciphertext · slots + slot`) of every element, in slot order.
    pub fn positions(&self) -> Vec<Vec<usize>> {
        let mut positions = vec![Vec::new(); self.elements()];
        for (c, map) in self.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                if e != EMPTY {
                    positions[e as usize].push(c * self.slots + s);
                }
            }
        }
        positions
    }

    /// Encodes row-major `values` into slot vectors (empty slots zero).
    pub fn encode(&self, values: &[f64]) -> Result<Vec<Vec<f64>>, LayoutError> {
        if values.len() != self.elements() {
            return Err(LayoutError::Values {
                shape: self.shape.clone(),
                given: values.len(),
                expected: self.elements(),
            });
        }
        Ok(self
            .map
            .iter()
            .map(|c| {
                c.iter()
                    .map(|&e| if e == EMPTY { 0.0 } else { values[e as usize] })
                    .collect()
            })
            .collect())
    }

    /// Decodes slot vectors into row-major values, reading each element's first slot.
    pub fn decode(&self, ciphertexts: &[Vec<f64>]) -> Result<Vec<f64>, LayoutError> {
        let given_slots = ciphertexts.first().map_or(self.slots, Vec::len);
        if ciphertexts.len() != self.ciphertexts()
            || ciphertexts.iter().any(|c| c.len() != self.slots)
        {
            return Err(LayoutError::Ciphertexts {
                shape: self.shape.clone(),
                given: ciphertexts.len(),
                given_slots,
                expected: self.ciphertexts(),
                slots: self.slots,
            });
        }
        let mut values = vec![f64::NAN; self.elements()];
        let mut seen = vec![false; self.elements()];
        for (c, map) in self.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                if e != EMPTY && !seen[e as usize] {
                    seen[e as usize] = true;
                    values[e as usize] = ciphertexts[c][s];
                }
            }
        }
        if let Some(element) = seen.iter().position(|s| !s) {
            return Err(LayoutError::Missing {
                shape: self.shape.clone(),
                element,
            });
        }
        Ok(values)
    }

    /// Checks a layout read from a file: power-of-two slots, rows of `slots` entries, elements in
    /// range, every element somewhere.
    pub fn validate(&self) -> Result<(), LayoutError> {
        if !self.slots.is_power_of_two() {
            return Err(LayoutError::Slots(self.slots));
        }
        let elements = self.elements();
        // Every element needs a slot: more elements than slots leaves one out (and would make
        // `seen` as large as the shape claims).
        let capacity = self.ciphertexts() * self.slots;
        if elements > capacity {
            return Err(LayoutError::Missing {
                shape: self.shape.clone(),
                element: capacity,
            });
        }
        let mut seen = vec![false; elements];
        for (c, map) in self.map.iter().enumerate() {
            if map.len() != self.slots {
                return Err(LayoutError::SlotOutOfRange {
                    shape: self.shape.clone(),
                    ciphertext: c,
                    slots: self.slots,
                });
            }
            for &e in map {
                if e != EMPTY {
                    if e as usize >= elements {
                        return Err(LayoutError::ElementOutOfRange {
                            shape: self.shape.clone(),
                            element: e as u64,
                            elements,
                        });
                    }
                    seen[e as usize] = true;
                }
            }
        }
        match seen.iter().position(|s| !s) {
            Some(element) => Err(LayoutError::Missing {
                shape: self.shape.clone(),
                element,
            }),
            None => Ok(()),
        }
    }

    /// Occupied slots over all slots (1.0 = every slot holds an element).
    pub fn occupancy(&self) -> f64 {
        let used: usize = self
            .map
            .iter()
            .map(|c| c.iter().filter(|&&e| e != EMPTY).count())
            .sum();
        used as f64 / (self.ciphertexts() * self.slots) as f64
    }
}

/// A run of `count` slots of one ciphertext, from `slot`, holding elements `element`,
/// `element + step`, … (`element` = [`EMPTY`] for empty runs, which are not stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Run {
    pub ciphertext: u32,
    pub slot: u32,
    pub count: u32,
    pub element: u32,
    pub step: i64,
}

/// Compresses slot maps into runs (empty slots omitted).
pub fn runs_of(map: &[Vec<u32>]) -> Vec<Run> {
    let mut runs = Vec::new();
    for (c, slots) in map.iter().enumerate() {
        let mut s = 0;
        while s < slots.len() {
            let e = slots[s];
            if e == EMPTY {
                s += 1;
                continue;
            }
            let step = if s + 1 < slots.len() && slots[s + 1] != EMPTY {
                slots[s + 1] as i64 - e as i64
            } else {
                0
            };
            let mut count = 1;
            while s + count < slots.len()
                && slots[s + count] != EMPTY
                && slots[s + count] as i64 == e as i64 + step * count as i64
            {
                count += 1;
            }
            runs.push(Run {
                ciphertext: c as u32,
                slot: s as u32,
                count: count as u32,
                element: e,
                step,
            });
            s += count;
        }
    }
    runs
}

/// Expands runs into `ciphertexts` slot maps of `slots` slots; `elements` bounds the element
/// indices.
pub fn map_of_runs(
    runs: &[Run],
    ciphertexts: usize,
    slots: usize,
    shape: &[usize],
) -> Result<Vec<Vec<u32>>, LayoutError> {
    let too_large = || LayoutError::TooLarge {
        shape: shape.to_vec(),
        ciphertexts,
        slots,
    };
    let elements = shape
        .iter()
        .try_fold(1usize, |n, &d| n.checked_mul(d))
        .ok_or_else(too_large)?;
    let entries = ciphertexts
        .checked_mul(slots)
        .filter(|&n| n <= MAX_LAYOUT_SLOTS)
        .ok_or_else(too_large)?;
    if let Some(left) = DECODE_BUDGET.get() {
        let left = left
            .checked_sub(entries)
            .ok_or(LayoutError::OverBudget { entries, left })?;
        DECODE_BUDGET.set(Some(left));
    }
    let mut map = vec![vec![EMPTY; slots]; ciphertexts];
    for run in runs {
        let c = run.ciphertext as usize;
        let end = run.slot as usize + run.count as usize;
        if c >= ciphertexts || end > slots {
            return Err(LayoutError::SlotOutOfRange {
                shape: shape.to_vec(),
                ciphertext: c,
                slots,
            });
        }
        for k in 0..run.count as usize {
            // i128: no overflow for any u32 element, i64 step and u32 count.
            let e = i128::from(run.element) + i128::from(run.step) * k as i128;
            if e < 0 || e >= elements as i128 || e >= i128::from(EMPTY) {
                return Err(LayoutError::ElementOutOfRange {
                    shape: shape.to_vec(),
                    element: e.clamp(0, i128::from(u64::MAX)) as u64,
                    elements,
                });
            }
            map[c][run.slot as usize + k] = e as u32;
        }
    }
    Ok(map)
}

/// The serialized form of a [`Layout`].
#[derive(Serialize, Deserialize)]
struct CompactLayout {
    shape: Vec<usize>,
    slots: usize,
    ciphertexts: usize,
    packing: Packing,
    runs: Vec<Run>,
}

impl From<Layout> for CompactLayout {
    fn from(layout: Layout) -> Self {
        Self {
            runs: runs_of(&layout.map),
            ciphertexts: layout.ciphertexts(),
            shape: layout.shape,
            slots: layout.slots,
            packing: layout.packing,
        }
    }
}

impl TryFrom<CompactLayout> for Layout {
    type Error = LayoutError;

    fn try_from(compact: CompactLayout) -> Result<Self, LayoutError> {
        if !compact.slots.is_power_of_two() || compact.slots > MAX_SLOTS {
            return Err(LayoutError::Slots(compact.slots));
        }
        let map = map_of_runs(
            &compact.runs,
            compact.ciphertexts,
            compact.slots,
            &compact.shape,
        )?;
        Ok(Self {
            shape: compact.shape,
            slots: compact.slots,
            map,
            packing: compact.packing,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interleaved_holds_every_element_t_times_and_rotates_by_multiples_of_t() {
        let layout = Layout::interleaved(&[1, 8], 32, 8);
        let t = 4;
        let positions = layout.positions();
        assert!(positions.iter().all(|p| p.len() == t));
        let values: Vec<f64> = (0..8).map(|v| v as f64).collect();
        let slots = &layout.encode(&values).unwrap()[0];
        // Rotating left by k·t rotates the chunk by k: slot (i, r) then holds x[(i + r + k) mod 8].
        let k = 3;
        for s in 0..32 {
            let (i, r) = (s / t, s % t);
            assert_eq!(slots[(s + k * t) % 32], ((i + r + k) % 8) as f64);
        }
        assert_eq!(layout.decode(std::slice::from_ref(slots)).unwrap(), values);
    }

    #[test]
    fn runs_round_trip_through_json() {
        for layout in [
            Layout::row_major(&[3, 5], 8),
            Layout::block_replicated(&[5], 16, 8),
            Layout::interleaved(&[12], 64, 8),
        ] {
            let json = serde_json::to_string(&layout).unwrap();
            let back: Layout = serde_json::from_str(&json).unwrap();
            assert_eq!(back, layout);
            back.validate().unwrap();
        }
        // IRP stores one run per interleaved group, not one per slot.
        let runs = runs_of(&Layout::interleaved(&[128], 1 << 15, 128).map);
        assert!(runs.len() <= 3 * 128, "{} runs", runs.len());
    }

    #[test]
    fn corrupt_layouts_are_errors() {
        let mut layout = Layout::row_major(&[4], 4);
        layout.map[0][3] = EMPTY;
        assert!(matches!(
            layout.validate(),
            Err(LayoutError::Missing { element: 3, .. })
        ));
        let json = r#"{"shape":[2],"slots":4,"ciphertexts":1,"packing":"RowMajor","runs":[{"ciphertext":0,"slot":3,"count":2,"element":0,"step":1}]}"#;
        assert!(serde_json::from_str::<Layout>(json).is_err());
    }
}
