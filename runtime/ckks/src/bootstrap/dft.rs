//! The homomorphic DFTs of bootstrapping: CoeffsToSlots and SlotsToCoeffs as products of sparse
//! "special FFT" butterfly stages, grouped into a level budget (Cheon–Han–Kim–Kim–Song,
//! SAC 2018 §4 / Han–Ki, CT-RSA 2020 §4; Bossuat et al., EUROCRYPT 2021, §5).
//!
//! With n slots the decoding map is z = V·w, V\[j\]\[k\] = ξ^{k·5^j}, ξ = e^{2πi/(4n)}, where
//! w_k = a_k + i·a_{k+n} are the message coefficients (see [`crate::encoding`]). Splitting w into
//! even and odd halves gives z_j = E_j + ξ^{5^j}·O_j and z_{j+n/2} = E_j − ξ^{5^j}·O_j, with E, O
//! transforms of size n/2 (5^{n/2} ≡ 1 + 2n mod 4n). Hence V = S_n·S_{n/2}···S_2·P, P the
//! bit-reversal permutation, where stage S_m acts on blocks of m slots with three diagonals
//! (offsets 0, +m/2, −m/2). SlotsToCoeffs applies V·P^{-1} = S_n···S_2 and CoeffsToSlots its
//! inverse S_2^{-1}···S_n^{-1}, so the coefficients sit in bit-reversed order in between, which
//! the slot-wise EvalMod does not mind. Consecutive stages are multiplied into `levels` groups;
//! each group is one BSGS linear transform and one level.
//!
//! Sparse slots (n < N/2) are handled in 2n-slot space, where an n-slot message reads [z, z]:
//! the stages are replicated periodically, CoeffsToSlots ends with diag(1, …, 1, −i, …, −i) so
//! that u + conj(u) = [2·Re y, 2·Im y] fills all 2n slots with real coefficients, and
//! SlotsToCoeffs starts with [a, b] ↦ [a + i·b, a + i·b].

use std::collections::BTreeMap;

use num_complex::Complex64;

use crate::error::Result;
use crate::ops::LinearTransform;

/// A slot-space linear map as generalized diagonals: y_j = Σ_k d_k\[j\]·x_{(j+k) mod n}.
pub(crate) type Diagonals = BTreeMap<usize, Vec<Complex64>>;

/// Entries below this magnitude are dropped when multiplying stages.
const ZERO: f64 = 1e-300;

/// (a ∘ b): x ↦ a(b(x)) on `n` slots: Σ_{k,l} (α_k ⊙ rot_k(β_l)) rot_{k+l}.
pub(crate) fn compose(a: &Diagonals, b: &Diagonals, n: usize) -> Diagonals {
    let mut out: Diagonals = BTreeMap::new();
    for (&k, alpha) in a {
        for (&l, beta) in b {
            let d = out
                .entry((k + l) % n)
                .or_insert_with(|| vec![Complex64::new(0.0, 0.0); n]);
            for j in 0..n {
                d[j] += alpha[j] * beta[(j + k) % n];
            }
        }
    }
    out.retain(|_, d| d.iter().any(|v| v.norm() > ZERO));
    out
}

/// Left multiplication by diag(v).
fn scale_rows(d: &mut Diagonals, v: &[Complex64]) {
    for diag in d.values_mut() {
        for (x, s) in diag.iter_mut().zip(v) {
            *x *= s;
        }
    }
}

/// Periodic extension of an n-slot map to `slots` = 2n slots (valid on n-periodic inputs).
/// Offsets above n/2 (negative rotations) are moved by n so that they stay next to 0 modulo
/// 2n, which keeps the BSGS split small.
fn replicate(d: &Diagonals, n: usize, slots: usize) -> Diagonals {
    d.iter()
        .map(|(&k, v)| {
            let k = if k > n / 2 { k + slots - n } else { k };
            (k, (0..slots).map(|j| v[j % n]).collect())
        })
        .collect()
}

/// ξ_m^{5^j} with ξ_m = e^{2πi/(4m)}.
fn twiddle(m: usize, j: usize) -> Complex64 {
    let four_m = 4 * m as u64;
    let mut e = 1u64;
    for _ in 0..j {
        e = e * 5 % four_m;
    }
    let a = 2.0 * std::f64::consts::PI * e as f64 / four_m as f64;
    Complex64::new(a.cos(), a.sin())
}

/// Butterfly stage S_m on n slots (or its inverse): blocks of m slots, for local j < m/2
/// (u, v) ↦ (u + w_j·v, u − w_j·v), w_j = ξ_m^{5^j}; the inverse is (a, b) ↦ ((a + b)/2,
/// (a − b)/(2·w_j)).
fn stage(n: usize, m: usize, inverse: bool) -> Diagonals {
    let h = m / 2;
    let zero = Complex64::new(0.0, 0.0);
    let (mut d0, mut dp, mut dm) = (vec![zero; n], vec![zero; n], vec![zero; n]);
    let w: Vec<Complex64> = (0..h).map(|j| twiddle(m, j)).collect();
    for i in 0..n {
        let local = i % m;
        if local < h {
            // row of the "u" output: offsets 0 and +h
            let (a, b) = if inverse {
                (Complex64::new(0.5, 0.0), Complex64::new(0.5, 0.0))
            } else {
                (Complex64::new(1.0, 0.0), w[local])
            };
            d0[i] = a;
            dp[i] = b;
        } else {
            // row of the "v" output: offsets −h and 0
            let wj = w[local - h];
            let (a, b) = if inverse {
                (wj.conj() * 0.5, -wj.conj() * 0.5)
            } else {
                (Complex64::new(1.0, 0.0), -wj)
            };
            dm[i] = a;
            d0[i] = b;
        }
    }
    let mut out = BTreeMap::from([(0, d0)]);
    for (k, d) in [(h, dp), ((n - h) % n, dm)] {
        let e = out.entry(k).or_insert_with(|| vec![zero; n]);
        for (x, y) in e.iter_mut().zip(d) {
            *x += y;
        }
    }
    out
}

/// Which homomorphic DFT.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DftKind {
    /// Slots → bit-reversed coefficients (inverse special FFT), then real/imaginary split.
    CoeffsToSlots,
    /// Bit-reversed coefficients → slots (special FFT), after the real/imaginary merge.
    SlotsToCoeffs,
}

/// The grouped stages of a homomorphic DFT for `n` message slots, as linear transforms on
/// `slots` = 2n (sparse) or n = N/2 (full) ciphertext slots, in application order, with the
/// scalar `factor` spread evenly over the groups (|factor|^(1/levels) each). `levels` groups (1 ≤ levels ≤ log2 n) are
/// formed from the log2 n stages, earlier groups taking the extra stage.
///
/// Errors: [`crate::CkksError::InvalidInput`] from the transforms (never for valid n).
pub fn dft_transforms(
    kind: DftKind,
    n: usize,
    full: bool,
    levels: usize,
    factor: f64,
) -> Result<Vec<LinearTransform>> {
    dft_diagonals(kind, n, full, levels, factor)
        .into_iter()
        .map(|(slots, d)| {
            let n1 = baby_steps(d.keys().copied(), slots);
            LinearTransform::with_baby_steps(slots, d, n1)
        })
        .collect()
}

/// The baby-step count n1 (a power of two) minimizing babies + 2·giants for diagonal offsets
/// `ks` on `slots` slots: a giant step costs a full key switch, a double-hoisted baby step an
/// inner product. The DFT groups have offsets clustered around 0 on both sides (mod slots),
/// where the span-based default of [`LinearTransform::new`] picks n1 ≈ √slots.
fn baby_steps(ks: impl Iterator<Item = usize> + Clone, slots: usize) -> usize {
    let cost = |n1: usize| {
        let babies: std::collections::BTreeSet<usize> = ks.clone().map(|k| k % n1).collect();
        let giants: std::collections::BTreeSet<usize> = ks.clone().map(|k| k - k % n1).collect();
        babies.iter().filter(|&&b| b != 0).count() + 2 * giants.iter().filter(|&&g| g != 0).count()
    };
    (0..=slots.trailing_zeros())
        .map(|e| 1usize << e)
        .min_by_key(|&n1| (cost(n1), n1))
        .unwrap_or(1)
}

/// The diagonals behind [`dft_transforms`]: (slots, diagonals) per group.
pub(crate) fn dft_diagonals(
    kind: DftKind,
    n: usize,
    full: bool,
    levels: usize,
    factor: f64,
) -> Vec<(usize, Diagonals)> {
    let log_n = n.trailing_zeros() as usize;
    let slots = if full { n } else { 2 * n };
    let one = Complex64::new(1.0, 0.0);
    let i = Complex64::new(0.0, 1.0);
    // Stages in application order, each on `slots` slots.
    let mut stages: Vec<Diagonals> = match kind {
        DftKind::CoeffsToSlots => (1..=log_n).rev().map(|s| stage(n, 1 << s, true)).collect(),
        DftKind::SlotsToCoeffs => (1..=log_n).map(|s| stage(n, 1 << s, false)).collect(),
    };
    if stages.is_empty() {
        stages.push(BTreeMap::from([(0, vec![one; n])]));
    }
    if !full {
        stages = stages.iter().map(|d| replicate(d, n, slots)).collect();
        match kind {
            DftKind::CoeffsToSlots => {
                let v: Vec<Complex64> = (0..slots).map(|j| if j < n { one } else { -i }).collect();
                if let Some(last) = stages.last_mut() {
                    scale_rows(last, &v);
                }
            }
            DftKind::SlotsToCoeffs => {
                let d0 = (0..slots).map(|j| if j < n { one } else { i }).collect();
                let dn = (0..slots).map(|j| if j < n { i } else { one }).collect();
                let merge = BTreeMap::from([(0, d0), (n, dn)]);
                stages[0] = compose(&stages[0], &merge, slots);
            }
        }
    }
    let count = stages.len();
    let levels = levels.clamp(1, count);
    let mut groups = Vec::with_capacity(levels);
    let mut it = stages.into_iter();
    for g in 0..levels {
        let take = count / levels + usize::from(g < count % levels);
        let mut acc: Option<Diagonals> = None;
        for s in it.by_ref().take(take) {
            acc = Some(match acc {
                None => s,
                Some(a) => compose(&s, &a, slots),
            });
        }
        groups.push(acc.unwrap_or_default());
    }
    // Spread the factor evenly: each group's plaintext is rounded to 1/q_ℓ in absolute terms,
    // so a group with small entries loses relative precision (≈ 2^-50/|entries| at 2^55).
    let f = Complex64::new(factor.abs().powf(1.0 / levels as f64), 0.0);
    for (gi, g) in groups.iter_mut().enumerate() {
        let sign = if gi == 0 && factor < 0.0 { -1.0 } else { 1.0 };
        scale_rows(g, &vec![f * sign; slots]);
    }
    groups.into_iter().map(|d| (slots, d)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn apply(d: &Diagonals, x: &[Complex64]) -> Vec<Complex64> {
        let n = x.len();
        (0..n)
            .map(|j| d.iter().map(|(&k, v)| v[j] * x[(j + k) % n]).sum())
            .collect()
    }

    fn apply_all(groups: &[(usize, Diagonals)], x: &[Complex64]) -> Vec<Complex64> {
        groups.iter().fold(x.to_vec(), |acc, (_, d)| apply(d, &acc))
    }

    fn bitrev(v: &[Complex64]) -> Vec<Complex64> {
        let bits = v.len().trailing_zeros();
        (0..v.len())
            .map(|i| {
                v[if bits == 0 {
                    0
                } else {
                    i.reverse_bits() >> (usize::BITS - bits)
                }]
            })
            .collect()
    }

    fn sample(n: usize) -> Vec<Complex64> {
        (0..n)
            .map(|k| Complex64::new((k as f64 * 0.37).sin(), (k as f64 * 0.11).cos()))
            .collect()
    }

    /// z_j = Σ_k w_k ξ^{k·5^j}, the encoder's decoding map.
    fn decode(w: &[Complex64]) -> Vec<Complex64> {
        let n = w.len();
        (0..n)
            .map(|j| {
                let e = (0..j).fold(1u64, |e, _| e * 5 % (4 * n as u64));
                (0..n)
                    .map(|k| {
                        let a = 2.0 * std::f64::consts::PI * (e * k as u64) as f64 / (4 * n) as f64;
                        w[k] * Complex64::new(a.cos(), a.sin())
                    })
                    .sum()
            })
            .collect()
    }

    #[test]
    fn full_slot_stages_are_the_decoding_map_and_its_inverse() {
        for (n, levels) in [(16, 3), (32, 2), (8, 1)] {
            let w = sample(n);
            let z = decode(&w);
            let stc = dft_diagonals(DftKind::SlotsToCoeffs, n, true, levels, 1.0);
            assert_eq!(stc.len(), levels);
            let back = apply_all(&stc, &bitrev(&w));
            let err = back
                .iter()
                .zip(&z)
                .map(|(a, b)| (a - b).norm())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "StC error {err}");
            let cts = dft_diagonals(DftKind::CoeffsToSlots, n, true, levels, 2.0);
            let y = apply_all(&cts, &z);
            let err = y
                .iter()
                .zip(bitrev(&w))
                .map(|(a, b)| (a - b * 2.0).norm())
                .fold(0.0, f64::max);
            assert!(err < 1e-12, "CtS error {err}");
        }
    }

    #[test]
    fn sparse_stages_split_and_merge_real_and_imaginary_parts() {
        let n = 16;
        let w = sample(n);
        let z = decode(&w);
        let zz: Vec<Complex64> = z.iter().chain(&z).copied().collect();
        let u = apply_all(
            &dft_diagonals(DftKind::CoeffsToSlots, n, false, 3, 1.0),
            &zz,
        );
        let wb = bitrev(&w);
        for j in 0..n {
            assert!((u[j] + u[j].conj() - 2.0 * wb[j].re).norm() < 1e-12);
            assert!((u[j + n] + u[j + n].conj() - 2.0 * wb[j].im).norm() < 1e-12);
        }
        let parts: Vec<Complex64> = (0..2 * n)
            .map(|j| Complex64::new(if j < n { wb[j].re } else { wb[j - n].im }, 0.0))
            .collect();
        let back = apply_all(
            &dft_diagonals(DftKind::SlotsToCoeffs, n, false, 2, 1.0),
            &parts,
        );
        for j in 0..2 * n {
            assert!((back[j] - z[j % n]).norm() < 1e-12);
        }
    }
}

#[cfg(test)]
mod homomorphic_tests {
    use super::*;
    use crate::bootstrap::sets::BootParamSet;
    use crate::*;

    /// Precision of each grouped stage as a homomorphic linear transform (full and sparse).
    #[test]
    #[ignore]
    fn grouped_stages_homomorphic_precision() {
        let ctx = CkksContext::new(
            BootParamSet::ToyBootN12.params().unwrap(),
            Security::InsecureForTesting,
        )
        .unwrap();
        let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([1; 32]));
        let sk = kg.secret_key();
        let eval = Evaluator::new(&ctx);
        let enc = Encoder::new(&ctx);
        let dec = Decryptor::new(&ctx);
        let top = ctx.max_level();
        for (n, full) in [(2048usize, true), (64, false)] {
            let slots = if full { n } else { 2 * n };
            for (gi, (_, d)) in dft_diagonals(DftKind::CoeffsToSlots, n, full, 3, 1.0)
                .into_iter()
                .enumerate()
            {
                let x: Vec<Complex64> = (0..slots)
                    .map(|j| Complex64::new((j as f64 * 0.3).sin(), (j as f64 * 0.7).cos()))
                    .collect();
                let x: Vec<Complex64> = if full {
                    x
                } else {
                    (0..slots).map(|j| x[j % n]).collect()
                };
                let lt = LinearTransform::new(slots, d.clone()).unwrap();
                let gks = kg
                    .galois_keys(&sk, &lt.rotation_steps(), false, top)
                    .unwrap();
                let pt = enc.encode_complex(&x, slots, top, 2f64.powi(50)).unwrap();
                let ct = Encryptor::with_rng(&ctx, Csprng::from_seed([2; 32]))
                    .encrypt_sk(&sk, &pt)
                    .unwrap();
                let out = eval
                    .rescale(&eval.linear_transform(&ct, &lt, &gks).unwrap())
                    .unwrap();
                let got = dec.decrypt_complex(&sk, &out).unwrap();
                let want: Vec<Complex64> = (0..slots)
                    .map(|j| d.iter().map(|(&k, v)| v[j] * x[(j + k) % slots]).sum())
                    .collect();
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).norm())
                    .fold(0.0, f64::max);
                let mag = want.iter().map(|a| a.norm()).fold(0.0, f64::max);
                eprintln!(
                    "n = {n} full = {full} group {gi}: {} diagonals, n1 = {}, {} rotations, |out| {mag:.2}, error 2^{:.1}",
                    d.len(),
                    lt.baby_steps(),
                    lt.rotation_steps().len(),
                    err.log2()
                );
            }
        }
    }
}
