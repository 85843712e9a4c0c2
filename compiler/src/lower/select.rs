//! Layout selection: the interleaved period of the residual stream, chosen by the cost of every
//! matrix–vector product; the packing of activations (rows in interleaved replicated packing);
//! the KV-cache layout; and the product layouts of ciphertext–ciphertext matrix products.
//!
//! Decode attention follows Cachemir (arXiv 2602.11470, §4.2): with the query `q` in interleaved
//! packing (period `D`, `t = slots / D` replicas), slot `i·t + r` holds `q[(i + r) mod D]`, so the
//! replica index `r` can stand for the key position. The product of head `h`, key position `j`
//! and head dimension `d` sits at
//! `Φ(h, j, d)`: ciphertext `⌊j/t⌋`, slot `((h·hd + d − (j mod t)) mod D)·t + (j mod t)`,
//! where `q` already is (no conversion), the cached keys and values are stored (appending the
//! new token is a masked addition), and the sum over `d` (for `qKᵀ`) or over `j` (for `softmax·V`)
//! is a strided rotate-and-sum.

use cachemir_ir::layout::{EMPTY, Layout, Packing};
use cachemir_ir::{Graph, InputRole, Op, Secrecy};

use super::kernels::matvec;

/// Interleaved replicated packing of every row (all axes but the last) on its own
/// `⌈last / period⌉` ciphertexts.
pub fn rows_interleaved(shape: &[usize], slots: usize, period: usize) -> Layout {
    let width = *shape.last().unwrap_or(&1);
    let rows: usize = shape[..shape.len().saturating_sub(1)].iter().product();
    let chunks = width.div_ceil(period).max(1);
    let mut layout = Layout::interleaved_relabelled(shape, slots, period, rows * chunks, |v| {
        let (row, within) = (v / (chunks * period), v % (chunks * period));
        (within < width).then_some(row * width + within)
    });
    if rows == 1 {
        layout.packing = Packing::Interleaved { period };
    }
    layout
}

/// The slot of `Φ(h, j, d)` (see the module documentation) as (ciphertext, slot).
pub fn decode_position(
    h: usize,
    j: usize,
    d: usize,
    head_dim: usize,
    slots: usize,
    period: usize,
) -> (usize, usize) {
    let t = slots / period;
    let r = j % t;
    let i = (h * head_dim + d + period - r % period) % period;
    (j / t, i * t + r)
}

/// The KV-cache layout of a `[1, kv_heads, tokens, head_dim]` state: entry `(g, j, d)` at
/// `Φ(g·group, j, d)`, i.e. where the first query head of its group reads it. `⌈tokens/t⌉`
/// ciphertexts; appending token `j` writes slots of ciphertext `⌊j/t⌋` only.
pub fn kv_cache(shape: &[usize], slots: usize, period: usize, group: usize) -> Layout {
    let (kv_heads, tokens, head_dim) = (shape[1], shape[2], shape[3]);
    let t = slots / period;
    let mut map = vec![vec![EMPTY; slots]; tokens.div_ceil(t).max(1)];
    for g in 0..kv_heads {
        for j in 0..tokens {
            for d in 0..head_dim {
                let (c, s) = decode_position(g * group, j, d, head_dim, slots, period);
                map[c][s] = ((g * tokens + j) * head_dim + d) as u32;
            }
        }
    }
    Layout::from_map(shape, slots, map)
}

/// The product layout of decode attention over `[heads, outer, inner]` elements where
/// `token_inner` says whether the key position is the inner (summed) axis (`softmax·V`) or the
/// outer one (`qKᵀ`).
///
/// # Counts
///
/// With `H` query heads over `kv` KV heads (`G = H / kv`), head dimension `hd`, `P` cached
/// tokens plus the new one (`T = P + 1`), `t = slots / period`, `C = ⌈T/t⌉` product
/// ciphertexts, `C_p = ⌈P/t⌉` cached ones, and `δ(n) = ⌊log2 n⌋ + popcount(n) − 1` (a doubling
/// sum of `n` terms), one decode product costs:
///
/// - the keys (values) into this layout: on each cached ciphertext the GQA copies for heads
///   `g·G + m`, `0 < m < G`, are whole rotations by `m·hd·t` slots without masks, `r_G = G − 1`
///   rotations (hoisted from 2 steps on), or `r_G = δ(G)` by doubling from `G = 4` on (and
///   `δ(G)` additions); the new token goes from the projection's interleaved output into replica
///   `P mod t` of ciphertext `⌊P/t⌋` in one masked group per distinct shift `(h − ⌊h/G⌋)·hd`:
///   `H − kv + 1` masks and `H − kv` rotations (hoisted). Additions: the contributions
///   (`G` per cached ciphertext, 1 with doubling, and `H − kv + 1`) minus `C`;
/// - the other factor nothing: the query's interleaved packing already holds `q[h·hd + d]` at
///   every `Φ(h, j, d)`, and `qKᵀ`'s sum leaves score `(h, j)` on every `Φ(h, j, d)`;
/// - `C` ciphertext multiplications;
/// - `qKᵀ`'s sum over `d` (stride `t`, `hd` terms, not cyclic as `hd < period`): per ciphertext
///   `δ(hd)` rotations, a mask keeping the chain starts and `δ(hd)` rotations spreading the sum
///   back over its chain, so `2·C·δ(hd)` rotations, `C` masks, `2·C·δ(hd)` additions;
/// - `softmax·V`'s sum over `j`: `C − 1` additions across ciphertexts, then stride `1 − t` over
///   `w = min(t, T)` terms: `2·δ(w)` rotations, one mask, `2·δ(w)` additions.
///
/// In total `qKᵀ`: `C_p·r_G + H − kv + 2·C·δ(hd)` rotations, `H − kv + 1 + C` ct-pt and `C`
/// ct-ct multiplications; `softmax·V`: `C_p·r_G + H − kv + 2·δ(min(t, T))` rotations,
/// `H − kv + 2` ct-pt and `C` ct-ct multiplications. Appending the new token to a
/// [`kv_cache`] state (the output's conversion, the cache itself stays in place) costs `kv`
/// masks and `kv − 1` rotations with GQA (shifts `g·(G − 1)·hd`), one mask without, whatever `P`.
///
/// Self-attention over `S` tokens runs one query row at a time against keys (values) converted
/// once: key row `j` is already in place in replica `j mod t` of ciphertext `⌊j/t⌋` (no GQA), so
/// the conversion is `S` masks and `S − C` additions, then per row the multiplication and sum
/// above with `C = ⌈S/t⌉`: `qKᵀ` `2·S·C·δ(hd)` rotations and `S + S·C` ct-pt multiplications,
/// `softmax·V` `2·S·δ(min(t, S))` rotations and `2·S` ct-pt multiplications, `S·C` ct-ct each.
///
/// `tests/tests/attention_kernels.rs` checks these against the lowered kernels.
pub fn decode_product(
    heads: usize,
    outer: usize,
    inner: usize,
    token_inner: bool,
    slots: usize,
    period: usize,
) -> Layout {
    let (tokens, head_dim) = if token_inner {
        (inner, outer)
    } else {
        (outer, inner)
    };
    let t = slots / period;
    let mut map = vec![vec![EMPTY; slots]; tokens.div_ceil(t).max(1)];
    for h in 0..heads {
        for o in 0..outer {
            for i in 0..inner {
                let (j, d) = if token_inner { (i, o) } else { (o, i) };
                let (c, s) = decode_position(h, j, d, head_dim, slots, period);
                map[c][s] = ((h * outer + o) * inner + i) as u32;
            }
        }
    }
    Layout::from_map(&[1, heads, 1, outer, inner], slots, map)
}

/// Row-major product layout for general ciphertext–ciphertext products `[batch, m, n, k]` with the
/// summed axis `k` padded to a power of two, so the sum is a rotate-and-sum of stride 1.
pub fn general_product(shape: &[usize], slots: usize) -> Layout {
    let k = *shape.last().expect("rank ≥ 1");
    let padded = k.next_power_of_two().min(slots.max(k));
    let padded = if k > slots {
        k.next_multiple_of(slots)
    } else {
        padded
    };
    let outer: usize = shape[..shape.len() - 1].iter().product();
    let total = outer * padded;
    let mut map = vec![vec![EMPTY; slots]; total.div_ceil(slots).max(1)];
    for o in 0..outer {
        for i in 0..k {
            let p = o * padded + i;
            map[p / slots][p % slots] = (o * k + i) as u32;
        }
    }
    Layout::from_map(shape, slots, map)
}

/// The interleaved period minimising the summed cost of the graph's encrypted matrix–vector
/// products (IRP kernel, analytical counts): candidates are the powers of two from 16 to
/// `slots`, at least the widest query of a decode attention (which must fit one chunk) and at
/// most the widest last-axis reduction (so norms sum whole chunks).
pub fn choose_period(graph: &Graph, slots: usize) -> usize {
    let mut products: Vec<(usize, usize, usize)> = Vec::new(); // (row count, rows, columns)
    let mut minimum = 16usize;
    let mut widest_reduction = 0usize;
    // Head dimensions of the KV caches (`[1, kv_heads, tokens, head_dim]` states).
    let cache_head_dims: Vec<usize> = graph
        .inputs()
        .iter()
        .filter(|i| matches!(i.role, InputRole::State { .. }))
        .map(|i| &graph.input_type(i).shape)
        .filter(|shape| shape.len() == 4)
        .map(|shape| shape[3])
        .collect();
    for node in graph.node_indices() {
        let n = graph.node(node);
        let operands = graph.operands(node);
        let encrypted = |i: usize| {
            operands
                .get(i)
                .and_then(|v| graph.value_type(*v))
                .is_some_and(|t| t.secrecy == Secrecy::Encrypted)
        };
        match &n.op {
            Op::MatMul | Op::Gemm { .. } if encrypted(0) && !encrypted(1) => {
                let a = graph.value_type(operands[0]).expect("typed").shape.clone();
                let w = graph.value_type(operands[1]).expect("typed").shape.clone();
                if w.len() == 2 {
                    let row_count: usize = a[..a.len() - 1].iter().product();
                    let (k, m) = match n.op {
                        Op::Gemm { trans_b: true, .. } => (w[1], w[0]),
                        _ => (w[0], w[1]),
                    };
                    products.push((row_count, k, m));
                }
            }
            Op::MatMul if encrypted(0) && encrypted(1) => {
                let a = &graph.value_type(operands[0]).expect("typed").shape;
                let b = &graph.value_type(operands[1]).expect("typed").shape;
                if a.len() >= 2 && a[a.len() - 2] == 1 {
                    let heads: usize = a[..a.len() - 2].iter().product();
                    // The chunk holds every head's query (`qKᵀ`: `k` is the head dimension) or
                    // output (`softmax·V`: `n` is), never a scores row, whose width grows with
                    // the cache and would tie the period (so the cache layout) to the step.
                    let (k, n) = (a[a.len() - 1], b[b.len() - 1]);
                    let head_dim = if cache_head_dims.contains(&n) && !cache_head_dims.contains(&k)
                    {
                        n
                    } else {
                        k
                    };
                    minimum = minimum.max((heads * head_dim).next_power_of_two());
                }
            }
            Op::Reduce { axes, .. } if encrypted(0) => {
                let shape = &graph.value_type(operands[0]).expect("typed").shape;
                let rank = shape.len() as i64;
                if axes.iter().all(|&a| a == -1 || a == rank - 1) {
                    widest_reduction = widest_reduction.max(shape[shape.len() - 1]);
                }
            }
            _ => {}
        }
    }
    let minimum = minimum.min(slots);
    // A sum over a whole chunk lands in every slot (no mask, and the broadcast back is free):
    // keep the chunk no wider than the widest last-axis reduction (norms over the residual).
    let maximum = if widest_reduction > 0 {
        widest_reduction.next_power_of_two().clamp(minimum, slots)
    } else {
        slots
    };
    let mut best = (f64::INFINITY, slots);
    let mut period = minimum;
    while period <= maximum {
        let cost: f64 = products
            .iter()
            .map(|&(row_count, rows, columns)| {
                row_count as f64
                    * matvec::cost(&matvec::interleaved_counts(rows, columns, slots, period))
            })
            .sum();
        if cost < best.0 {
            best = (cost, period);
        }
        period *= 2;
    }
    best.1
}
