//! AVX-512 IFMA kernel of the fast basis conversion's inner product (x86-64 with `avx512ifma`).
//!
//! For one target prime t < 2^50 and source residues y_i < 2^50 (|B| ≤ 14), 32 coefficients at a
//! time (four independent accumulator chains): lo = Σ lo52(y_i·w_i), hi = Σ hi52(y_i·w_i) with
//! `vpmadd52{lo,hi}uq`, so the exact sum is hi·2^52 + lo. The reduction modulo t is vectorised
//! too: hi·2^52 mod t by a 52-bit Shoup multiplication, lo mod t by a 52-bit Barrett step, then
//! conditional subtractions (`min(x, x − k·t)`).

use crate::ring::modulus::Modulus;

/// Constants of the reduction modulo t.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Reducer {
    t: u64,
    /// 2^52 mod t.
    c52: u64,
    /// ⌊c52 · 2^52 / t⌋ (52-bit Shoup constant).
    c52_shoup: u64,
    /// ⌊2^52 / t⌋.
    mu: u64,
}

impl Reducer {
    pub(crate) fn new(m: &Modulus) -> Self {
        let t = m.value();
        let c52 = m.reduce(1 << 52);
        Reducer {
            t,
            c52,
            c52_shoup: (((c52 as u128) << 52) / t as u128) as u64,
            mu: (1u64 << 52) / t,
        }
    }
}

/// Whether the running CPU has AVX-512 IFMA.
pub(crate) fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512ifma")
            && std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// out[c] = (Σ_i y[i·n + c]·w[i] + v[c]·neg_b) mod t for c < n (n a multiple of 32).
///
/// # Safety
/// The CPU must support `avx512f` and `avx512ifma` ([`available`]); `y.len() ≥ w.len()·n`,
/// `v.len() ≥ n`, `out.len() ≥ n`; all y, w, v, neg_b and t below 2^50 and `w.len() ≤ 14`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) unsafe fn conv_limb(
    y: &[u64],
    n: usize,
    w: &[u64],
    v: &[u64],
    neg_b: u64,
    out: &mut [u64],
    red: &Reducer,
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    const UNROLL: usize = 4;
    let nb = w.len();
    debug_assert!(y.len() >= nb * n && v.len() >= n && out.len() >= n);
    debug_assert!(n.is_multiple_of(LANES * UNROLL) && nb <= 14);
    let wv: Vec<__m512i> = w.iter().map(|&x| _mm512_set1_epi64(x as i64)).collect();
    let nbv = _mm512_set1_epi64(neg_b as i64);
    let zero = _mm512_setzero_si512();
    let mask52 = _mm512_set1_epi64(((1u64 << 52) - 1) as i64);
    let tv = _mm512_set1_epi64(red.t as i64);
    let t2 = _mm512_set1_epi64((2 * red.t) as i64);
    let t4 = _mm512_set1_epi64((4 * red.t) as i64);
    let c52 = _mm512_set1_epi64(red.c52 as i64);
    let c52s = _mm512_set1_epi64(red.c52_shoup as i64);
    let mu = _mm512_set1_epi64(red.mu as i64);
    let load = |p: &[u64], off: usize| {
        debug_assert!(off + LANES <= p.len());
        // SAFETY: off + 8 ≤ p.len() by the caller's length contract.
        unsafe { _mm512_loadu_si512(p.as_ptr().add(off) as *const __m512i) }
    };
    for c in (0..n).step_by(LANES * UNROLL) {
        let mut lo = [zero; UNROLL];
        let mut hi = [zero; UNROLL];
        for (i, &wi) in wv.iter().enumerate() {
            for u in 0..UNROLL {
                let yv = load(y, i * n + c + u * LANES);
                lo[u] = _mm512_madd52lo_epu64(lo[u], yv, wi);
                hi[u] = _mm512_madd52hi_epu64(hi[u], yv, wi);
            }
        }
        for u in 0..UNROLL {
            let vv = load(v, c + u * LANES);
            let l = _mm512_madd52lo_epu64(lo[u], vv, nbv);
            let h = _mm512_madd52hi_epu64(hi[u], vv, nbv);
            // Normalise: h < 2^52, l < 2^52.
            let h = _mm512_add_epi64(h, _mm512_srli_epi64::<52>(l));
            let l = _mm512_and_si512(l, mask52);
            // r1 = h·2^52 mod t ∈ [0, 2t) (Shoup, 52-bit words).
            let q1 = _mm512_madd52hi_epu64(zero, h, c52s);
            let r1 = _mm512_and_si512(
                _mm512_sub_epi64(
                    _mm512_madd52lo_epu64(zero, h, c52),
                    _mm512_madd52lo_epu64(zero, q1, tv),
                ),
                mask52,
            );
            // r2 = l mod t ∈ [0, 3t) (Barrett with ⌊2^52/t⌋).
            let q2 = _mm512_madd52hi_epu64(zero, l, mu);
            let r2 = _mm512_sub_epi64(l, _mm512_madd52lo_epu64(zero, q2, tv));
            let mut s = _mm512_add_epi64(r1, r2);
            s = _mm512_min_epu64(s, _mm512_sub_epi64(s, t4));
            s = _mm512_min_epu64(s, _mm512_sub_epi64(s, t2));
            s = _mm512_min_epu64(s, _mm512_sub_epi64(s, tv));
            let off = c + u * LANES;
            debug_assert!(off + LANES <= out.len());
            // SAFETY: off + 8 ≤ n ≤ out.len().
            unsafe { _mm512_storeu_si512(out.as_mut_ptr().add(off) as *mut __m512i, s) };
        }
    }
}
