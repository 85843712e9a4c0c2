//! AVX-512 IFMA kernels (x86-64 with `avx512ifma`) for the two lazy-reduction inner products of
//! key switching: the fast basis conversion (`conv_group`) and the digit × key products
//! (`dot2_limb`).
//!
//! For target primes t < 2^50 and source residues y_i < 2^50 (|B| ≤ 14), with up to four targets
//! sharing each source load: lo = Σ lo52(y_i·w_i), hi = Σ hi52(y_i·w_i) with
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

/// Whether the running CPU has AVX-512 IFMA (and `CACHEMIR_NO_IFMA` is not set, which forces the
/// portable paths, e.g. to test them).
pub(crate) fn available() -> bool {
    static AVAILABLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        if std::env::var_os("CACHEMIR_NO_IFMA").is_some() {
            return false;
        }
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx512ifma")
                && std::arch::is_x86_feature_detected!("avx512f")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

/// Broadcast constants of [`Reducer`].
#[cfg(target_arch = "x86_64")]
struct VecConsts {
    mask52: std::arch::x86_64::__m512i,
    t: std::arch::x86_64::__m512i,
    t2: std::arch::x86_64::__m512i,
    t4: std::arch::x86_64::__m512i,
    c52: std::arch::x86_64::__m512i,
    c52s: std::arch::x86_64::__m512i,
    mu: std::arch::x86_64::__m512i,
}

#[cfg(target_arch = "x86_64")]
impl VecConsts {
    #[target_feature(enable = "avx512f")]
    fn new(red: &Reducer) -> Self {
        use std::arch::x86_64::*;
        VecConsts {
            mask52: _mm512_set1_epi64(((1u64 << 52) - 1) as i64),
            t: _mm512_set1_epi64(red.t as i64),
            t2: _mm512_set1_epi64((2 * red.t) as i64),
            t4: _mm512_set1_epi64((4 * red.t) as i64),
            c52: _mm512_set1_epi64(red.c52 as i64),
            c52s: _mm512_set1_epi64(red.c52_shoup as i64),
            mu: _mm512_set1_epi64(red.mu as i64),
        }
    }
}

/// (h·2^52 + l) mod t per lane, for h < 2^52 − 2^4 and l < 2^56.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
#[inline]
fn reduce(
    k: &VecConsts,
    h: std::arch::x86_64::__m512i,
    l: std::arch::x86_64::__m512i,
) -> std::arch::x86_64::__m512i {
    use std::arch::x86_64::*;
    let zero = _mm512_setzero_si512();
    // Normalise: h < 2^52, l < 2^52.
    let h = _mm512_add_epi64(h, _mm512_srli_epi64::<52>(l));
    let l = _mm512_and_si512(l, k.mask52);
    // r1 = h·2^52 mod t ∈ [0, 2t) (Shoup, 52-bit words).
    let q1 = _mm512_madd52hi_epu64(zero, h, k.c52s);
    let r1 = _mm512_and_si512(
        _mm512_sub_epi64(
            _mm512_madd52lo_epu64(zero, h, k.c52),
            _mm512_madd52lo_epu64(zero, q1, k.t),
        ),
        k.mask52,
    );
    // r2 = l mod t ∈ [0, 3t) (Barrett with ⌊2^52/t⌋).
    let q2 = _mm512_madd52hi_epu64(zero, l, k.mu);
    let r2 = _mm512_sub_epi64(l, _mm512_madd52lo_epu64(zero, q2, k.t));
    let mut s = _mm512_add_epi64(r1, r2);
    s = _mm512_min_epu64(s, _mm512_sub_epi64(s, k.t4));
    s = _mm512_min_epu64(s, _mm512_sub_epi64(s, k.t2));
    _mm512_min_epu64(s, _mm512_sub_epi64(s, k.t))
}

/// out0[c] = Σ_j d_j[c]·b_j[c] mod t and out1[c] = Σ_j d_j[c]·a_j[c] mod t (n multiple of 16);
/// writes every element of the (possibly uninitialised) outputs.
///
/// # Safety
/// The CPU must support `avx512f` and `avx512ifma`; every slice has length ≥ n = out0.len();
/// all values below t < 2^50; at most 14 terms.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) unsafe fn dot2_limb(
    d: &[&[u64]],
    b: &[&[u64]],
    a: &[&[u64]],
    out0: &mut [std::mem::MaybeUninit<u64>],
    out1: &mut [std::mem::MaybeUninit<u64>],
    red: &Reducer,
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    const UNROLL: usize = 2;
    let n = out0.len();
    debug_assert!(n.is_multiple_of(LANES * UNROLL) && d.len() <= 14 && out1.len() >= n);
    debug_assert!(d.iter().chain(b).chain(a).all(|s| s.len() >= n));
    let zero = _mm512_setzero_si512();
    let k = VecConsts::new(red);
    let load = |p: &[u64], off: usize| {
        // SAFETY: off + 8 ≤ n ≤ p.len() (caller contract).
        unsafe { _mm512_loadu_si512(p.as_ptr().add(off) as *const __m512i) }
    };
    for c in (0..n).step_by(LANES * UNROLL) {
        let mut lo0 = [zero; UNROLL];
        let mut hi0 = [zero; UNROLL];
        let mut lo1 = [zero; UNROLL];
        let mut hi1 = [zero; UNROLL];
        for j in 0..d.len() {
            for u in 0..UNROLL {
                let off = c + u * LANES;
                let dv = load(d[j], off);
                let bv = load(b[j], off);
                let av = load(a[j], off);
                lo0[u] = _mm512_madd52lo_epu64(lo0[u], dv, bv);
                hi0[u] = _mm512_madd52hi_epu64(hi0[u], dv, bv);
                lo1[u] = _mm512_madd52lo_epu64(lo1[u], dv, av);
                hi1[u] = _mm512_madd52hi_epu64(hi1[u], dv, av);
            }
        }
        for u in 0..UNROLL {
            let off = c + u * LANES;
            let r0 = reduce(&k, hi0[u], lo0[u]);
            let r1 = reduce(&k, hi1[u], lo1[u]);
            // SAFETY: off + 8 ≤ n ≤ out0.len(), out1.len().
            unsafe {
                _mm512_storeu_si512(out0.as_mut_ptr().add(off) as *mut __m512i, r0);
                _mm512_storeu_si512(out1.as_mut_ptr().add(off) as *mut __m512i, r1);
            }
        }
    }
}

/// r[c] = (x[c] − r[c])·w mod t for reduced inputs (t < 2^50), with the 52-bit Shoup constant
/// `w_shoup52` = ⌊w·2^52/t⌋ (the last step of ModDown and rescale). n multiple of 8.
///
/// # Safety
/// The CPU must support `avx512f` and `avx512ifma`; `x.len() ≥ r.len()`; values reduced mod t.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) unsafe fn sub_mul_limb(x: &[u64], r: &mut [u64], t: u64, w: u64, w_shoup52: u64) {
    use std::arch::x86_64::*;
    let n = r.len();
    debug_assert!(n.is_multiple_of(8) && x.len() >= n);
    let zero = _mm512_setzero_si512();
    let tv = _mm512_set1_epi64(t as i64);
    let wv = _mm512_set1_epi64(w as i64);
    let ws = _mm512_set1_epi64(w_shoup52 as i64);
    let mask52 = _mm512_set1_epi64(((1u64 << 52) - 1) as i64);
    for c in (0..n).step_by(8) {
        // SAFETY: c + 8 ≤ n ≤ x.len(), r.len().
        let (xv, rv) = unsafe {
            (
                _mm512_loadu_si512(x.as_ptr().add(c) as *const __m512i),
                _mm512_loadu_si512(r.as_ptr().add(c) as *const __m512i),
            )
        };
        let d = _mm512_sub_epi64(_mm512_add_epi64(xv, tv), rv); // ∈ [1, 2t)
        let q = _mm512_madd52hi_epu64(zero, d, ws);
        let s = _mm512_and_si512(
            _mm512_sub_epi64(
                _mm512_madd52lo_epu64(zero, d, wv),
                _mm512_madd52lo_epu64(zero, q, tv),
            ),
            mask52,
        );
        let s = _mm512_min_epu64(s, _mm512_sub_epi64(s, tv));
        // SAFETY: as above.
        unsafe { _mm512_storeu_si512(r.as_mut_ptr().add(c) as *mut __m512i, s) };
    }
}

/// Up to [`GROUP`] targets per pass over the sources, so each y vector is loaded once for all
/// of them (the sources of an 8-limb digit are 4 MiB at N = 2^16, more than L2).
pub(crate) const GROUP: usize = 4;

/// The conversion's inner product for `outs.len() ≤ GROUP` targets at once (8 coefficients per
/// step, one accumulator pair per target): outs[g][c] = (Σ_i y[i·n + c]·w[g][i]
/// + v[c]·neg_b[g]) mod t_g. Writes every element of every output.
///
/// # Safety
/// The CPU must support `avx512f` and `avx512ifma` ([`available`]); `y.len() ≥ nb·n`,
/// `v.len() ≥ n`, every output ≥ n; all y, w, v, neg_b and t below 2^50, nb = `w[g].len()` ≤ 14
/// for all g.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) unsafe fn conv_group(
    y: &[u64],
    n: usize,
    w: &[&[u64]],
    v: &[u64],
    neg_b: &[u64],
    outs: &mut [&mut [std::mem::MaybeUninit<u64>]],
    reds: &[&Reducer],
) {
    use std::arch::x86_64::*;
    const LANES: usize = 8;
    let g = outs.len();
    let nb = w[0].len();
    debug_assert!(g <= GROUP && w.len() == g && reds.len() == g && neg_b.len() == g);
    debug_assert!(n.is_multiple_of(LANES) && nb <= 14 && y.len() >= nb * n && v.len() >= n);
    debug_assert!(outs.iter().all(|o| o.len() >= n));
    let zero = _mm512_setzero_si512();
    let ks: Vec<VecConsts> = reds.iter().map(|r| VecConsts::new(r)).collect();
    // Weights as broadcast vectors, [i][g].
    let wv: Vec<[__m512i; GROUP]> = (0..nb)
        .map(|i| {
            let mut row = [zero; GROUP];
            for (slot, wg) in row.iter_mut().zip(w) {
                *slot = _mm512_set1_epi64(wg[i] as i64);
            }
            row
        })
        .collect();
    let mut nbv = [zero; GROUP];
    for (slot, &b) in nbv.iter_mut().zip(neg_b) {
        *slot = _mm512_set1_epi64(b as i64);
    }
    let load = |p: &[u64], off: usize| {
        // SAFETY: off + 8 ≤ p.len() by the caller's length contract.
        unsafe { _mm512_loadu_si512(p.as_ptr().add(off) as *const __m512i) }
    };
    for c in (0..n).step_by(LANES) {
        let mut lo = [zero; GROUP];
        let mut hi = [zero; GROUP];
        for (i, row) in wv.iter().enumerate() {
            let yv = load(y, i * n + c);
            for k in 0..g {
                lo[k] = _mm512_madd52lo_epu64(lo[k], yv, row[k]);
                hi[k] = _mm512_madd52hi_epu64(hi[k], yv, row[k]);
            }
        }
        let vv = load(v, c);
        for k in 0..g {
            let l = _mm512_madd52lo_epu64(lo[k], vv, nbv[k]);
            let h = _mm512_madd52hi_epu64(hi[k], vv, nbv[k]);
            let s = reduce(&ks[k], h, l);
            // SAFETY: c + 8 ≤ n ≤ outs[k].len().
            unsafe { _mm512_storeu_si512(outs[k].as_mut_ptr().add(c) as *mut __m512i, s) };
        }
    }
}

/// Tensor product of two degree-1 ciphertext limbs modulo t < 2^50:
/// d0 = a0·b0, d1 = a0·b1 + a1·b0, d2 = a1·b1 (n multiple of 8). Writes every output element.
///
/// # Safety
/// The CPU must support `avx512f` and `avx512ifma`; all inputs have length ≥ n = d0.len() and
/// are reduced modulo t < 2^50; d1, d2 have length ≥ n.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512ifma")]
pub(crate) unsafe fn tensor_limb(
    a: [&[u64]; 2],
    b: [&[u64]; 2],
    d: [&mut [std::mem::MaybeUninit<u64>]; 3],
    red: &Reducer,
) {
    use std::arch::x86_64::*;
    let n = d[0].len();
    debug_assert!(n.is_multiple_of(8) && d.iter().all(|x| x.len() >= n));
    debug_assert!(a.iter().chain(&b).all(|x| x.len() >= n));
    let zero = _mm512_setzero_si512();
    let k = VecConsts::new(red);
    let load = |p: &[u64], off: usize| {
        // SAFETY: off + 8 ≤ n ≤ p.len().
        unsafe { _mm512_loadu_si512(p.as_ptr().add(off) as *const __m512i) }
    };
    let [d0, d1, d2] = d;
    for c in (0..n).step_by(8) {
        let (a0, a1, b0, b1) = (load(a[0], c), load(a[1], c), load(b[0], c), load(b[1], c));
        let r0 = reduce(
            &k,
            _mm512_madd52hi_epu64(zero, a0, b0),
            _mm512_madd52lo_epu64(zero, a0, b0),
        );
        let h1 = _mm512_madd52hi_epu64(_mm512_madd52hi_epu64(zero, a0, b1), a1, b0);
        let l1 = _mm512_madd52lo_epu64(_mm512_madd52lo_epu64(zero, a0, b1), a1, b0);
        let r1 = reduce(&k, h1, l1);
        let r2 = reduce(
            &k,
            _mm512_madd52hi_epu64(zero, a1, b1),
            _mm512_madd52lo_epu64(zero, a1, b1),
        );
        // SAFETY: c + 8 ≤ n ≤ each output's length.
        unsafe {
            _mm512_storeu_si512(d0.as_mut_ptr().add(c) as *mut __m512i, r0);
            _mm512_storeu_si512(d1.as_mut_ptr().add(c) as *mut __m512i, r1);
            _mm512_storeu_si512(d2.as_mut_ptr().add(c) as *mut __m512i, r2);
        }
    }
}
