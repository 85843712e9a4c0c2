//! Hybrid key switching (Han–Ki, "Better bootstrapping for approximate homomorphic encryption",
//! CT-RSA 2020, §3; RNS form of Cheon–Han–Kim–Kim–Song, SAC 2018):
//!
//! 1. **Decompose** d ∈ R_{Q_ℓ} (NTT form) into digits d_j = d mod Q_j (α consecutive limbs) and
//!    ModUp each digit to Q_ℓ·P by fast basis conversion (one INTT of d, one NTT per new limb).
//! 2. **Inner product** with the key: (Σ_j D_j·b_j, Σ_j D_j·a_j) over Q_ℓ·P.
//! 3. **ModDown** each result: (x − Conv_{P→Q}(\[x\]_P))·P^{-1}, dividing the key noise by P.
//!
//! Step 1 does not depend on the key, so rotations of one ciphertext share it (hoisting).

use rayon::prelude::*;

use crate::context::CkksContext;
use crate::keys::SwitchingKey;
use crate::ring::basis_ifma;
use std::mem::MaybeUninit;

use crate::ring::basis::as_uninit;
use crate::ring::poly::{RnsPoly, assume_init, write_copy};

/// The ModUp'ed digits of a polynomial: `digits[j]` has ℓ + 1 + K limbs (NTT form) over
/// q_0 … q_ℓ, p_0 … p_{K−1}.
#[derive(Debug, Clone)]
pub struct Decomposed {
    pub(crate) level: usize,
    pub(crate) digits: Vec<RnsPoly>,
}

/// Decomposes and ModUps `c` (NTT form, ℓ + 1 limbs). Each converted limb is NTT'ed while in
/// cache.
pub(crate) fn decompose(ctx: &CkksContext, c: &RnsPoly, level: usize) -> Decomposed {
    let n = ctx.n();
    let alpha = ctx.params().alpha();
    let k = ctx.num_special();
    let ext = level + 1 + k;
    let q_tables = ctx.q_tables(level);
    let ext_tables = ctx.ext_tables(level);
    let coeff = c.intt_prefix(level + 1, &q_tables);
    let num_digits = (level + 1).div_ceil(alpha);
    let digits = (0..num_digits)
        .into_par_iter()
        .map(|j| {
            let start = j * alpha;
            let end = ((j + 1) * alpha).min(level + 1);
            let conv = ctx.inner.modup[j][level]
                .as_ref()
                .expect("digit present at this level");
            // Target t of the converter is ext limb t (t < start) or t + (end − start).
            let targets: Vec<_> = (0..ext)
                .filter(|&t| t < start || t >= end)
                .map(|t| ext_tables[t])
                .collect();
            let mut scratch = vec![0u64; conv.scratch_len(n)];
            let init = |buf: &mut [MaybeUninit<u64>]| {
                let (before, rest) = buf.split_at_mut(start * n);
                let (mid, after) = rest.split_at_mut((end - start) * n);
                write_copy(mid, &c.data()[start * n..end * n]);
                let mut outs: Vec<&mut [MaybeUninit<u64>]> = before
                    .chunks_exact_mut(n)
                    .chain(after.chunks_exact_mut(n))
                    .collect();
                conv.convert(
                    &coeff.data()[start * n..end * n],
                    &mut outs,
                    &mut scratch,
                    &|t, limb| targets[t].forward(limb),
                );
            };
            // SAFETY: the digit's own limbs are copied and the converter writes every other limb.
            unsafe { RnsPoly::new_uninit_with(n, ext, init) }
        })
        .collect();
    Decomposed { level, digits }
}

/// Limb t of (Σ_j D_j·b_j, Σ_j D_j·a_j) over Q_ℓ·P (t indexes q_0 … q_ℓ, p_0 … p_{K−1}); writes
/// every element of `o0` and `o1`.
fn dot_limb(
    ctx: &CkksContext,
    dec: &Decomposed,
    key: &SwitchingKey,
    t: usize,
    o0: &mut [MaybeUninit<u64>],
    o1: &mut [MaybeUninit<u64>],
) {
    let n = ctx.n();
    let level = dec.level;
    let nq = ctx.max_level() + 1;
    let (kt, modulus_index) = if t <= level {
        (t, t)
    } else {
        (key.level + 1 + (t - level - 1), nq + t - level - 1)
    };
    #[cfg(target_arch = "x86_64")]
    if let Some(red) = &ctx.inner.ifma[modulus_index]
        && n.is_multiple_of(16)
        && dec.digits.len() <= 14
    {
        let d: Vec<&[u64]> = dec.digits.iter().map(|p| p.limb(t)).collect();
        let b: Vec<&[u64]> = key.digits.iter().map(|(b, _)| b.limb(kt)).collect();
        let a: Vec<&[u64]> = key.digits.iter().map(|(_, a)| a.limb(kt)).collect();
        // SAFETY: IFMA detected (the reducer exists), all residues are reduced modulo this
        // prime < 2^50, every limb has N words, at most 14 digits; dot2_limb writes every
        // output element.
        unsafe { basis_ifma::dot2_limb(&d, &b[..d.len()], &a[..d.len()], o0, o1, red) };
        return;
    }
    o0.fill(MaybeUninit::new(0));
    o1.fill(MaybeUninit::new(0));
    // SAFETY: just zero-filled.
    let (o0, o1) = unsafe { (assume_init(o0), assume_init(o1)) };
    let tab = &ctx.inner.ntt[modulus_index];
    for (d, (b, a)) in dec.digits.iter().zip(&key.digits) {
        let dl = d.limb(t);
        tab.mul_acc(o0, dl, b.limb(kt));
        tab.mul_acc(o1, dl, a.limb(kt));
    }
}

/// (Σ_j D_j·b_j, Σ_j D_j·a_j) over Q_ℓ·P; the key must have level ≥ ℓ (checked by callers).
pub(crate) fn inner_product(
    ctx: &CkksContext,
    dec: &Decomposed,
    key: &SwitchingKey,
) -> (RnsPoly, RnsPoly) {
    let n = ctx.n();
    let ext = dec.level + 1 + ctx.num_special();
    let fill = |buf0: &mut [MaybeUninit<u64>], buf1: &mut [MaybeUninit<u64>]| {
        buf0.par_chunks_exact_mut(n)
            .zip(buf1.par_chunks_exact_mut(n))
            .enumerate()
            .for_each(|(t, (o0, o1))| dot_limb(ctx, dec, key, t, o0, o1));
    };
    let mut acc1 = RnsPoly::zero(n, 0);
    // SAFETY: dot_limb writes every limb of both outputs.
    let acc0 = unsafe {
        RnsPoly::new_uninit_with(n, ext, |buf0| {
            acc1 = RnsPoly::new_uninit_with(n, ext, |buf1| fill(buf0, buf1));
        })
    };
    (acc0, acc1)
}

/// A hook run on limb i of both halves of a key-switching result, `(i, u0_i, u1_i)`.
pub(crate) type FinishPair<'a> = dyn Fn(usize, &mut [u64], &mut [u64]) + Sync + 'a;

thread_local! {
    /// Per-thread buffers for one limb of both inner-product halves.
    static DOT: std::cell::RefCell<(Vec<u64>, Vec<u64>)> =
        const { std::cell::RefCell::new((Vec::new(), Vec::new())) };
}

/// Inner product and ModDown of both halves fused per q-limb (no Q_ℓ·P accumulators in
/// memory): the special limbs of the inner product are computed and converted to Q_ℓ first, then
/// for each q_i the conversions are NTT'ed, limb i of the inner product is computed while they
/// are in cache, combined as (x − conv)·P^{-1}, and `finish(i, u0_i, u1_i)` runs.
pub(crate) fn key_switch_finish(
    ctx: &CkksContext,
    dec: &Decomposed,
    key: &SwitchingKey,
    finish: &FinishPair<'_>,
) -> (RnsPoly, RnsPoly) {
    let n = ctx.n();
    let level = dec.level;
    let k = ctx.num_special();
    let nq = ctx.max_level() + 1;
    let p_tables: Vec<_> = ctx.inner.ntt[nq..].iter().collect();
    // Special limbs of both halves, to coefficient form.
    let mut p1 = RnsPoly::zero(n, 0);
    // SAFETY: dot_limb writes every limb of both outputs.
    let mut p0 = unsafe {
        RnsPoly::new_uninit_with(n, k, |b0| {
            p1 = RnsPoly::new_uninit_with(n, k, |b1| {
                b0.par_chunks_exact_mut(n)
                    .zip(b1.par_chunks_exact_mut(n))
                    .enumerate()
                    .for_each(|(kk, (o0, o1))| dot_limb(ctx, dec, key, level + 1 + kk, o0, o1));
            });
        })
    };
    rayon::join(|| p0.intt(&p_tables), || p1.intt(&p_tables));
    let conv = &ctx.inner.moddown;
    let mut s0 = vec![0u64; conv.scratch_len(n)];
    let mut s1 = vec![0u64; conv.scratch_len(n)];
    let tables = ctx.q_tables(level);
    let post = |i: usize, limbs: &mut [&mut [u64]]| {
        let [r0, r1] = limbs else {
            unreachable!("two outputs")
        };
        tables[i].forward(r0);
        tables[i].forward(r1);
        DOT.with_borrow_mut(|(x0, x1)| {
            x0.resize(n, 0);
            x1.resize(n, 0);
            dot_limb(ctx, dec, key, i, as_uninit(x0), as_uninit(x1));
            sub_mul_p_inv(ctx, i, x0, r0);
            sub_mul_p_inv(ctx, i, x1, r1);
        });
        finish(i, r0, r1);
    };
    let mut u1 = RnsPoly::zero(n, 0);
    // SAFETY: convert_many writes all ℓ + 1 target limbs of both outputs.
    let u0 = unsafe {
        RnsPoly::new_uninit_with(n, level + 1, |b0| {
            u1 = RnsPoly::new_uninit_with(n, level + 1, |b1| {
                let outs = vec![
                    b0.chunks_exact_mut(n).collect::<Vec<_>>(),
                    b1.chunks_exact_mut(n).collect::<Vec<_>>(),
                ];
                conv.convert_many(&[p0.data(), p1.data()], outs, vec![&mut s0, &mut s1], &post);
            });
        })
    };
    (u0, u1)
}

/// r ← (x − r)·P^{-1} mod q_i (the last step of ModDown).
fn sub_mul_p_inv(ctx: &CkksContext, i: usize, x: &[u64], r: &mut [u64]) {
    let m = &ctx.inner.moduli[i];
    let (pi, pis) = ctx.inner.p_inv[i];
    #[cfg(target_arch = "x86_64")]
    if ctx.inner.ifma[i].is_some() && r.len().is_multiple_of(8) {
        let ws = (((pi as u128) << 52) / m.value() as u128) as u64;
        // SAFETY: IFMA detected (the reducer exists), q_i < 2^50, limbs reduced.
        unsafe { basis_ifma::sub_mul_limb(x, r, m.value(), pi, ws) };
        return;
    }
    for (rv, &xv) in r.iter_mut().zip(x) {
        *rv = m.mul_shoup(m.sub(xv, *rv), pi, pis);
    }
}

/// ModDown: x over Q_ℓ·P (NTT) ↦ round(x / P) over Q_ℓ (NTT). `finish(i, limb)` runs on each
/// finished limb i while it is in cache (used by rotations to add c_0 and permute).
pub(crate) fn mod_down(
    ctx: &CkksContext,
    x: &RnsPoly,
    level: usize,
    finish: &(dyn Fn(usize, &mut [u64]) + Sync),
) -> RnsPoly {
    let n = ctx.n();
    let nq = ctx.max_level() + 1;
    let p_tables: Vec<_> = ctx.inner.ntt[nq..].iter().collect();
    let p_part = x.intt_range(level + 1, &p_tables);
    let mut scratch = vec![0u64; ctx.inner.moddown.scratch_len(n)];
    let tables = ctx.q_tables(level);
    let init = |buf: &mut [MaybeUninit<u64>]| {
        let mut outs: Vec<&mut [MaybeUninit<u64>]> = buf.chunks_exact_mut(n).collect();
        ctx.inner.moddown.convert(
            p_part.data(),
            &mut outs,
            &mut scratch,
            &|i, r: &mut [u64]| {
                tables[i].forward(r);
                sub_mul_p_inv(ctx, i, x.limb(i), r);
                finish(i, r);
            },
        );
    };
    // SAFETY: the converter writes all ℓ + 1 target limbs.
    unsafe { RnsPoly::new_uninit_with(n, level + 1, init) }
}

/// Full key switch of `c` (NTT, level ℓ): returns (u_0, u_1) with u_0 + u_1·s_out ≈ c·s_in.
#[cfg(test)]
pub(crate) fn key_switch(
    ctx: &CkksContext,
    c: &RnsPoly,
    level: usize,
    key: &SwitchingKey,
) -> (RnsPoly, RnsPoly) {
    key_switch_add(ctx, c, level, key, None)
}

/// Key switch of `c` plus `(add_0, add_1)` (NTT, level ℓ), the additions fused into ModDown.
pub(crate) fn key_switch_add(
    ctx: &CkksContext,
    c: &RnsPoly,
    level: usize,
    key: &SwitchingKey,
    add: Option<(&RnsPoly, &RnsPoly)>,
) -> (RnsPoly, RnsPoly) {
    let dec = decompose(ctx, c, level);
    let moduli = ctx.q_moduli(level);
    let finish = |i: usize, r0: &mut [u64], r1: &mut [u64]| {
        if let Some((p0, p1)) = add {
            let m = &moduli[i];
            for (x, &y) in r0.iter_mut().zip(p0.limb(i)) {
                *x = m.add(*x, y);
            }
            for (x, &y) in r1.iter_mut().zip(p1.limb(i)) {
                *x = m.add(*x, y);
            }
        }
    };
    key_switch_finish(ctx, &dec, key, &finish)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::context::Security;
    use crate::params::ParamSet;
    use crate::sampling::{Csprng, expand_uniform};
    use std::time::Instant;

    /// Key-switching error e = u_0 + u_1·s − d·s² against the analytical bound
    /// 8·σ·sqrt(N·Σ_j Q_j²/12)/P (digits times key errors, divided by P) plus the ModDown
    /// rounding 8·sqrt(2N/3)/sqrt(12) + 1 (rounding errors times the ternary secret), for uniform d.
    #[test]
    fn key_switching_error_within_bound() {
        for set in [ParamSet::ToyN12, ParamSet::ToyN13] {
            let ctx = CkksContext::from_set(set, Security::InsecureForTesting).unwrap();
            let mut kg = crate::keys::KeyGenerator::with_rng(&ctx, Csprng::from_seed([3; 32]));
            let sk = kg.secret_key();
            let rlk = kg.relin_key(&sk, ctx.max_level()).unwrap();
            let p = ctx.params();
            let n = ctx.n() as f64;
            for level in [ctx.max_level(), 1] {
                let d = expand_uniform(&[8; 32], 5, ctx.q_moduli(level), ctx.n());
                let (u0, u1) = key_switch(&ctx, &d, level, &rlk.0);
                let tables = ctx.q_tables(level);
                let moduli = ctx.q_moduli(level);
                let s = sk.q_part(level);
                let mut e = u1.clone();
                e.mul_assign(&s, &tables);
                e.add_assign(&u0, moduli);
                let mut ds2 = d.clone();
                ds2.mul_assign(&s, &tables);
                ds2.mul_assign(&s, &tables);
                e.sub_assign(&ds2, moduli);
                e.intt(&tables);
                let crt = crate::ring::crt::CrtReconstructor::new(moduli);
                let idx: Vec<usize> = (0..ctx.n()).collect();
                let max = crt
                    .centered_f64(e.data(), ctx.n(), &idx)
                    .into_iter()
                    .fold(0.0f64, |m, x| m.max(x.abs()));
                let alpha = p.alpha();
                let sum_qj2: f64 = (0..=level)
                    .step_by(alpha)
                    .map(|start| {
                        let end = (start + alpha).min(level + 1);
                        p.q[start..end]
                            .iter()
                            .map(|&q| (q as f64).log2())
                            .sum::<f64>()
                    })
                    .map(|bits| (2.0 * bits).exp2())
                    .sum();
                let big_p = p.log_p().exp2();
                let bound_ks = 8.0 * p.sigma * (n * sum_qj2 / 12.0).sqrt() / big_p;
                let bound_rd = 8.0 * (2.0 * n / 3.0).sqrt() / 12f64.sqrt() + 1.0;
                let bound = bound_ks + bound_rd;
                eprintln!(
                    "{set:?} level {level}: key-switch error max {max:.1} (log2 {:.2}) <= bound {bound:.1}",
                    max.log2()
                );
                assert!(max <= bound, "{set:?} level {level}: {max} > {bound}");
            }
        }
    }

    /// Phase timings at N = 2^16 (run with `--release -- --ignored --nocapture`).
    #[test]
    #[ignore]
    fn profile_key_switch_phases_n16() {
        let ctx = CkksContext::from_set(ParamSet::N16Boot, Security::Bits128).unwrap();
        let level = ctx.max_level();
        let mut kg = crate::keys::KeyGenerator::with_rng(&ctx, Csprng::from_seed([1; 32]));
        let sk = kg.secret_key();
        let rlk = kg.relin_key(&sk, level).unwrap();
        let c = expand_uniform(&[7; 32], 99, ctx.q_moduli(level), ctx.n());
        for _ in 0..3 {
            let t = Instant::now();
            let dec = decompose(&ctx, &c, level);
            let t1 = t.elapsed();
            let (a0, a1) = inner_product(&ctx, &dec, &rlk.0);
            let t2 = t.elapsed();
            let r0 = mod_down(&ctx, &a0, level, &|_, _| {});
            let t3 = t.elapsed();
            let r1 = mod_down(&ctx, &a1, level, &|_, _| {});
            let t4 = t.elapsed();
            eprintln!(
                "decompose {:?}  inner {:?}  mod_down {:?} + {:?}",
                t1,
                t2 - t1,
                t3 - t2,
                t4 - t3
            );
            drop((r0, r1));
        }
        let tabs = ctx.q_tables(level);
        let mut p = c.clone();
        let t = Instant::now();
        p.intt(&tabs);
        p.ntt(&tabs);
        eprintln!("23 INTT + 23 NTT {:?}", t.elapsed());
    }
}
