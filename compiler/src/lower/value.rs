//! Lowered values: ciphertexts with a layout, or views — data movement recorded as an element map
//! over source ciphertexts and only turned into rotations when a consumer asks for a layout. A
//! reshape, transpose or GQA head replication thereby costs nothing until it meets a kernel, and
//! then exactly the conversion into that kernel's layout.

use super::kernels::convert::{gather, occupied};
use super::{Builder, Cipher};
use cachemir_ir::layout::{EMPTY, Layout, Packing};
use std::sync::Arc;

/// A view's element origins: `(source, element of that source)` per element.
type Origins = Arc<Vec<(u32, u32)>>;

/// An encrypted tensor during lowering.
#[derive(Debug, Clone)]
pub enum Value {
    Cipher(Cipher),
    /// Element `e` of a tensor of `shape` is element `origin[e].1` of `sources[origin[e].0]`.
    View {
        shape: Vec<usize>,
        sources: Vec<Cipher>,
        origin: Origins,
    },
}

impl Value {
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Cipher(c) => &c.layout.shape,
            Value::View { shape, .. } => shape,
        }
    }

    /// Whether the value is a view that reads some source element more than once (a
    /// broadcast, such as a new token's K/V repeated over the cache positions): its rows are
    /// copies, cheapest materialized one row per ciphertext, where the copies are the same
    /// instructions (merged by `lower::dedupe`) rather than a conversion into a stack.
    pub fn repeats_elements(&self) -> bool {
        let Value::View {
            sources, origin, ..
        } = self
        else {
            return false;
        };
        let mut offsets = Vec::with_capacity(sources.len());
        let mut total = 0;
        for source in sources {
            offsets.push(total);
            total += source.layout.elements();
        }
        let mut seen = vec![false; total];
        origin
            .iter()
            .any(|&(s, e)| std::mem::replace(&mut seen[offsets[s as usize] + e as usize], true))
    }

    /// `(sources, origin)`; `None` is the identity origin of a ciphertext (not materialized:
    /// ciphertexts of a long KV cache hold millions of elements).
    fn parts(&self) -> (Vec<Cipher>, Option<Origins>) {
        match self {
            Value::Cipher(c) => (vec![c.clone()], None),
            Value::View {
                sources, origin, ..
            } => (sources.clone(), Some(origin.clone())),
        }
    }

    /// The same elements under another shape of as many elements (Reshape, Squeeze, Unsqueeze,
    /// Flatten: row-major numbering is unchanged), without a pass over the elements.
    pub fn reshaped(&self, shape: &[usize]) -> Value {
        match self {
            Value::Cipher(c) => Value::Cipher(Cipher {
                registers: c.registers.clone(),
                layout: Arc::new(Layout {
                    shape: shape.to_vec(),
                    ..(*c.layout).clone()
                }),
            }),
            Value::View {
                sources, origin, ..
            } => Value::View {
                shape: shape.to_vec(),
                sources: sources.clone(),
                origin: origin.clone(),
            },
        }
    }

    /// A view of `shape` whose element `e` is `operands[map(e).0]` element `map(e).1`.
    pub fn rearrange(
        operands: &[&Value],
        shape: &[usize],
        map: impl Fn(usize) -> (usize, usize),
    ) -> Value {
        let mut sources: Vec<Cipher> = Vec::new();
        let mut operand_parts = Vec::new();
        for operand in operands {
            let (own, origin) = operand.parts();
            // Share sources between operands (same registers = same ciphertexts).
            let index: Vec<u32> = own
                .iter()
                .map(|s| {
                    match sources.iter().position(|t| {
                        t.registers == s.registers && Arc::ptr_eq(&t.layout, &s.layout)
                    }) {
                        Some(i) => i as u32,
                        None => {
                            sources.push(s.clone());
                            (sources.len() - 1) as u32
                        }
                    }
                })
                .collect();
            operand_parts.push((index, origin));
        }
        let elements: usize = shape.iter().product();
        let origin: Vec<(u32, u32)> = (0..elements)
            .map(|e| {
                let (operand, element) = map(e);
                let (index, origin) = &operand_parts[operand];
                let (source, old) = origin.as_ref().map_or((0, element as u32), |o| o[element]);
                (index[source as usize], old)
            })
            .collect();
        Value::View {
            shape: shape.to_vec(),
            sources,
            origin: Arc::new(origin),
        }
    }

    /// The value as ciphertexts: free for a ciphertext and for a view that only renames the
    /// elements of one source (reshape, transpose, squeeze); otherwise a conversion into the
    /// source positions (subsets: slices and splits) or into `fallback`.
    pub fn materialize(&self, b: &mut Builder, fallback: &dyn Fn(&[usize]) -> Layout) -> Cipher {
        let Value::View {
            shape,
            sources,
            origin,
        } = self
        else {
            let Value::Cipher(c) = self else {
                unreachable!()
            };
            return c.clone();
        };
        if sources.len() == 1 {
            let source = &sources[0];
            let mut new_of_old = vec![EMPTY; source.layout.elements()];
            let mut injective = true;
            for (e, &(_, old)) in origin.iter().enumerate() {
                if new_of_old[old as usize] != EMPTY {
                    injective = false;
                    break;
                }
                new_of_old[old as usize] = e as u32;
            }
            if injective {
                let map = source.layout.renamed_map(&new_of_old);
                let bijective = new_of_old.iter().all(|&n| n != EMPTY);
                let packing = match source.layout.packing {
                    // Positions are unchanged, so the interleaved structure is too.
                    p @ Packing::Interleaved { .. } if bijective => p,
                    _ => Packing::Derived,
                };
                let layout = Layout {
                    shape: shape.clone(),
                    slots: source.layout.slots,
                    map,
                    packing,
                };
                if bijective {
                    return Cipher {
                        registers: source.registers.clone(),
                        layout: Arc::new(layout),
                    };
                }
                return self.gather_into(b, &layout, None);
            }
        }
        let target = fallback(shape);
        self.gather_into(b, &target, None)
    }

    /// The value converted into `target` (same shape); `care` as in [`gather`].
    pub fn gather_into(
        &self,
        b: &mut Builder,
        target: &Layout,
        care: Option<&[Vec<bool>]>,
    ) -> Cipher {
        if let Value::Cipher(c) = self
            && *c.layout == *target
        {
            return c.clone();
        }
        let (sources, origin) = self.parts();
        let refs: Vec<&Cipher> = sources.iter().collect();
        gather(
            b,
            &refs,
            target,
            &|e| match &origin {
                Some(origin) => origin.get(e).map(|&(s, o)| (s as usize, o as usize)),
                None => Some((0, e)),
            },
            care,
        )
    }

    /// Converted into `target` where a product with a ciphertext in `target` needs it: slots that
    /// ciphertext leaves empty are left as they come.
    pub fn gather_for_product(&self, b: &mut Builder, target: &Layout) -> Cipher {
        let care = occupied(target);
        self.gather_into(b, target, Some(&care))
    }
}
