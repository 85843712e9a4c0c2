//! Layout selection: the interleaved period of the residual stream, chosen by the cost of every
//! matrix–vector product; the packing of activations (one row in interleaved replicated packing,
//! several rows stacked: [`stacked_rows`]); the KV-cache layout; and the product layouts of
//! ciphertext–ciphertext matrix products (decode attention, self-attention over a sequence).
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

use super::kernels::stacked;

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

/// Stacked rows: an activation of `rows` rows (all axes but the last) of `width` entries, each
/// row cut into `C = ⌈width / p⌉` chunks of the row period `p`, chunk `c` of every row laid
/// end to end as one long vector (row `ρ` at offset `ρ·p` of its chunk's group), the groups one
/// after the other, in interleaved replicated packing with the long period
/// `P = min(slots, next power of two ≥ rows·p)` (`t = slots / P` replicas). A group takes
/// `G = ⌈rows·p / P⌉` ciphertexts ("parts"), `C·G` in all; a row's chunk never straddles two
/// (`p` divides `P`). With one row this is exactly [`rows_interleaved`] (`P = p`, `G = 1`).
///
/// Interleaving the rows of a chunk (rather than a row's chunks) keeps input and output rows at
/// the same offsets whatever the widths of a matrix product, so its block-diagonal matrix has
/// its nonzero generalised diagonals near diagonal 0 only (kernels/stacked.rs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stack {
    pub rows: usize,
    pub width: usize,
    /// `p`: the interleaved period of one row.
    pub row_period: usize,
    /// `P`: the interleaved period of the stack.
    pub period: usize,
    /// `C = ⌈width / p⌉`.
    pub chunks: usize,
    /// `G = ⌈rows·p / P⌉`: ciphertexts per chunk.
    pub parts: usize,
}

impl Stack {
    /// The stack of `rows × width` at `slots` slots and row period `row_period` (a power of two
    /// up to `slots`).
    pub fn new(rows: usize, width: usize, slots: usize, row_period: usize) -> Self {
        assert!(row_period.is_power_of_two() && row_period <= slots);
        let rows = rows.max(1);
        let period = (rows * row_period).next_power_of_two().min(slots);
        Self {
            rows,
            width,
            row_period,
            period,
            chunks: width.div_ceil(row_period).max(1),
            parts: (rows * row_period).div_ceil(period),
        }
    }

    /// The stack of a tensor of `shape` (rows: all axes but the last).
    pub fn of_shape(shape: &[usize], slots: usize, row_period: usize) -> Self {
        let width = *shape.last().unwrap_or(&1);
        let rows = shape[..shape.len().saturating_sub(1)].iter().product();
        Self::new(rows, width, slots, row_period)
    }

    /// Ciphertexts: `C·G`.
    pub fn ciphertexts(&self) -> usize {
        self.chunks * self.parts
    }

    /// Rows per part: `P / p`.
    pub fn rows_per_part(&self) -> usize {
        self.period / self.row_period
    }

    /// The (row, column) held by virtual entry `v` of the long vector, if any.
    pub fn entry(&self, v: usize) -> Option<(usize, usize)> {
        let (ciphertext, within) = (v / self.period, v % self.period);
        let (chunk, part) = (ciphertext / self.parts, ciphertext % self.parts);
        let row = part * self.rows_per_part() + within / self.row_period;
        let column = chunk * self.row_period + within % self.row_period;
        (row < self.rows && column < self.width).then_some((row, column))
    }

    /// The virtual entry of (row, column).
    pub fn position(&self, row: usize, column: usize) -> usize {
        let (chunk, j) = (column / self.row_period, column % self.row_period);
        let (part, local) = (row / self.rows_per_part(), row % self.rows_per_part());
        (chunk * self.parts + part) * self.period + local * self.row_period + j
    }

    /// The layout of a tensor of `shape` whose virtual entry `v` holds `element(row, column)`.
    fn layout(
        &self,
        shape: &[usize],
        slots: usize,
        ciphertexts: usize,
        element: impl Fn(usize, usize, usize) -> Option<usize>,
    ) -> Layout {
        let per_copy = self.ciphertexts() * self.period;
        Layout::interleaved_relabelled(shape, slots, self.period, ciphertexts, |v| {
            let (row, column) = self.entry(v % per_copy)?;
            element(v / per_copy, row, column)
        })
    }
}

/// The [`Stack`] layout of an activation of `shape`: element `(ρ, col)` (row-major over the
/// rows) at virtual entry [`Stack::position`]; [`rows_interleaved`] for a single row.
pub fn stacked_rows(shape: &[usize], slots: usize, period: usize) -> Layout {
    let stack = Stack::of_shape(shape, slots, period);
    if stack.rows == 1 {
        return rows_interleaved(shape, slots, period);
    }
    stack.layout(shape, slots, stack.ciphertexts(), |_, row, column| {
        Some(row * stack.width + column)
    })
}

/// The product layout of self-attention over `m` tokens (`heads` heads of `head_dim`) for
/// queries, keys and values in [`stacked_rows`] of `[m, heads·head_dim]`: `m` copies of that
/// stack ("diagonals" `δ`), copy `δ` holding at the place of `(i, h·hd + d)` the product term of
/// query row `i` with key (value) row `j = (i + δ) mod m`. Shape `[1, heads, m, m, hd]`
/// (`qKᵀ`, elements `(h, i, j, d)`) or `[1, heads, m, hd, m]` (`softmax·V`, `token_inner`,
/// elements `(h, i, d, j)`).
///
/// # Counts
///
/// With `P = m·p` (the stack fills its period) the queries are already in place in every copy,
/// and the keys (values) of copy `δ` are one whole rotation of theirs by `δ·p·t` slots: `m − 1`
/// rotations, no mask; `m` ciphertext multiplications per stack ciphertext. `qKᵀ` then sums over
/// `d` within each copy (kernels/reduce.rs: `2·δ(hd)` rotations and a mask per ciphertext,
/// `δ(n) = ⌊log2 n⌋ + popcount(n) − 1`) and [`packed_scores`] gathers the scores of all copies
/// into one stack by masks only (the score of `(i, j)` is in copy `(j − i) mod m` at every `d`,
/// so also at `d = j`); `softmax·V` adds the copies (`m − 1` additions per stack ciphertext) and
/// leaves the output in the stack of `[m, heads·hd]`, where the output projection reads it.
/// Replicating the probabilities over `d` in each copy is a general conversion (at most
/// `hd + m − 1` distinct rotation steps of the packed scores, one mask per copy and step).
/// Per-row attention ([`decode_product`] one query row at a time) needs `m` score ciphertexts
/// per stack ciphertext instead of one.
pub fn sequence_product(
    heads: usize,
    m: usize,
    head_dim: usize,
    token_inner: bool,
    slots: usize,
    period: usize,
) -> Layout {
    let stack = Stack::new(m, heads * head_dim, slots, period);
    let shape = if token_inner {
        [1, heads, m, head_dim, m]
    } else {
        [1, heads, m, m, head_dim]
    };
    stack.layout(
        &shape,
        slots,
        m * stack.ciphertexts(),
        |delta, i, column| {
            let (h, d) = (column / head_dim, column % head_dim);
            let j = (i + delta) % m;
            Some(if token_inner {
                ((h * m + i) * head_dim + d) * m + j
            } else {
                ((h * m + i) * m + j) * head_dim + d
            })
        },
    )
}

/// Scores `[.., heads, m, m]` of self-attention packed into the stack of `[m, heads·head_dim]`
/// (`m ≤ head_dim`): score `(h, i, j)` at the place of `(i, h·head_dim + j)`, so a softmax's sum
/// over `j` is a strided sum within each head's block.
pub fn packed_scores(
    shape: &[usize],
    heads: usize,
    m: usize,
    head_dim: usize,
    slots: usize,
    period: usize,
) -> Layout {
    assert!(
        m <= head_dim,
        "{m} scores per row do not fit a head of {head_dim}"
    );
    let stack = Stack::new(m, heads * head_dim, slots, period);
    stack.layout(shape, slots, stack.ciphertexts(), |_, i, column| {
        let (h, j) = (column / head_dim, column % head_dim);
        (j < m).then_some((h * m + i) * m + j)
    })
}

/// The output `[.., heads, m, head_dim]` of `softmax·V` in [`sequence_product`] summed over its
/// copies: element `(h, i, d)` at the place of `(i, h·head_dim + d)` in the stack of
/// `[m, heads·head_dim]`.
pub fn sequence_output(
    shape: &[usize],
    heads: usize,
    m: usize,
    head_dim: usize,
    slots: usize,
    period: usize,
) -> Layout {
    let stack = Stack::new(m, heads * head_dim, slots, period);
    stack.layout(shape, slots, stack.ciphertexts(), |_, i, column| {
        let (h, d) = (column / head_dim, column % head_dim);
        Some((h * m + i) * head_dim + d)
    })
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
/// Self-attention over `S > 1` tokens uses [`sequence_product`] instead (all query rows at once).
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
/// products (IRP kernel for one row, stacked rows for several; analytical counts): candidates are the powers of two from 16 to
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
                stacked::rows_cost(row_count, rows, columns, slots, period)
            })
            .sum();
        if cost < best.0 {
            best = (cost, period);
        }
        period *= 2;
    }
    best.1
}
