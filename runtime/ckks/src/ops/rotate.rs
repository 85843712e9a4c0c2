//! Rotations and conjugation by Galois automorphisms, single and hoisted.
//!
//! A Galois key for g switches s → σ_g^{-1}(s). For ct = (c_0, c_1): key-switch c_1 to
//! (u_0, u_1) with u_0 + u_1·σ_g^{-1}(s) ≈ c_1·s, then apply σ_g (an NTT-domain permutation):
//! σ_g(c_0 + u_0) + σ_g(u_1)·s ≈ σ_g(m). The decomposition + ModUp of c_1 does not depend on g,
//! so many rotations of one ciphertext share it (hoisting: Halevi–Shoup, CRYPTO 2018, §5;
//! Bossuat et al., EUROCRYPT 2021, §5). A single rotation is the hoisted path with one element,
//! so both give bit-identical results.

use rayon::prelude::*;

use super::Evaluator;
use super::keyswitch::{Decomposed, decompose, inner_product, key_switch_finish};
use crate::ciphertext::Ciphertext;
use crate::error::Result;
use crate::keys::{GaloisKey, GaloisKeys};
use crate::ring::automorphism::{conjugation_element, permute_ntt, rotation_element};
use crate::ring::poly::RnsPoly;

thread_local! {
    /// Per-thread copy of the limb being permuted (avoids an allocation per limb).
    static SCRATCH: std::cell::RefCell<Vec<u64>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// A ciphertext with its c_1 decomposed and ModUp'ed once, ready for many rotations.
#[derive(Debug, Clone)]
pub struct HoistedCiphertext {
    c0: RnsPoly,
    dec: Decomposed,
    meta: Ciphertext,
}

impl HoistedCiphertext {
    /// Level of the hoisted ciphertext.
    pub fn level(&self) -> usize {
        self.meta.level
    }
}

impl Evaluator {
    /// Decomposes c_1 once (ℓ + 1 INTTs, dnum ModUps) for later [`Evaluator::rotate_hoisted`].
    pub fn hoist(&self, ct: &Ciphertext) -> Result<HoistedCiphertext> {
        self.ctx.check_id(ct.params_id)?;
        ct.expect_degree(1)?;
        Ok(HoistedCiphertext {
            c0: ct.parts[0].clone(),
            dec: decompose(&self.ctx, &ct.parts[1], ct.level),
            meta: ct.clone_meta(),
        })
    }

    /// σ_g applied to a hoisted ciphertext with g's key.
    fn galois_hoisted(&self, h: &HoistedCiphertext, key: &GaloisKey) -> Result<Ciphertext> {
        self.galois_decomposed(&h.c0, &h.dec, &h.meta, key)
    }

    /// σ_g of (c0, c1) given c1's decomposition, with g's key.
    fn galois_decomposed(
        &self,
        c0: &RnsPoly,
        dec: &Decomposed,
        meta: &Ciphertext,
        key: &GaloisKey,
    ) -> Result<Ciphertext> {
        let level = meta.level;
        key.key.check(&self.ctx, level)?;
        let moduli = self.ctx.q_moduli(level);
        // Per finished limb pair: σ_g as an index permutation, fused with + σ_g(c_0) for part 0.
        let finish = |i: usize, r0: &mut [u64], r1: &mut [u64]| {
            SCRATCH.with_borrow_mut(|src| {
                let perm = &key.perm;
                src.clear();
                src.extend_from_slice(r0);
                let m = &moduli[i];
                let c0 = c0.limb(i);
                for (o, &p) in r0.iter_mut().zip(perm) {
                    *o = m.add(src[p as usize], c0[p as usize]);
                }
                src.clear();
                src.extend_from_slice(r1);
                permute_ntt(src, r1, perm);
            });
        };
        let (u0, u1) = key_switch_finish(&self.ctx, dec, &key.key, &finish);
        let parts = vec![u0, u1];
        Ok(Ciphertext {
            parts,
            ..meta.clone_meta()
        })
    }

    /// σ_g(P·c_0 + a_0, a_1) over Q_ℓ·P without ModDown, where (a_0, a_1) is the key-switching
    /// inner product: it decrypts to P·σ_g(m). These are the baby steps of double hoisting
    /// (Bossuat et al., EUROCRYPT 2021, §5.2): products with plaintexts and sums stay in Q_ℓ·P
    /// and one ModDown per giant step replaces one per baby step. `key = None` is the identity
    /// (P·c_0, P·c_1).
    pub(crate) fn rotate_ext(
        &self,
        h: &HoistedCiphertext,
        key: Option<&GaloisKey>,
    ) -> (RnsPoly, RnsPoly) {
        let ctx = &self.ctx;
        let level = h.meta.level;
        let n = ctx.n();
        let nq = ctx.max_level() + 1;
        let moduli = ctx.q_moduli(level);
        let p_mod_q: Vec<u64> = moduli
            .iter()
            .map(|m| {
                ctx.inner.moduli[nq..]
                    .iter()
                    .fold(1, |acc, p| m.mul(acc, m.reduce(p.value())))
            })
            .collect();
        let ext = level + 1 + ctx.num_special();
        // P·c on the q limbs, 0 on the special limbs.
        let times_p = |c: &RnsPoly, out: &mut RnsPoly| {
            out.par_limbs_mut()
                .take(level + 1)
                .enumerate()
                .for_each(|(i, o)| {
                    let (m, w) = (&moduli[i], p_mod_q[i]);
                    let ws = m.shoup(w);
                    for (x, &y) in o.iter_mut().zip(c.limb(i)) {
                        *x = m.add(*x, m.mul_shoup(y, w, ws));
                    }
                });
        };
        match key {
            None => {
                let mut r0 = RnsPoly::zero(n, ext);
                let mut r1 = RnsPoly::zero(n, ext);
                times_p(&h.c0, &mut r0);
                times_p(&self.recompose_c1(h), &mut r1);
                (r0, r1)
            }
            Some(key) => {
                let (mut a0, a1) = inner_product(ctx, &h.dec, &key.key);
                times_p(&h.c0, &mut a0);
                let permute = |a: RnsPoly| {
                    let mut out = RnsPoly::zero(n, ext);
                    out.par_limbs_mut()
                        .zip(a.par_limbs())
                        .for_each(|(o, i)| permute_ntt(i, o, &key.perm));
                    out
                };
                rayon::join(|| permute(a0), || permute(a1))
            }
        }
    }

    /// Left rotations of a hoisted ciphertext by each of `steps` slots (in parallel over the
    /// rotations and, within each, over RNS limbs). All keys are looked up and checked before any
    /// work ([`crate::CkksError::MissingGaloisKey`], [`crate::CkksError::KeyLevelTooLow`]).
    pub fn rotate_hoisted(
        &self,
        h: &HoistedCiphertext,
        steps: &[i64],
        gks: &GaloisKeys,
    ) -> Result<Vec<Ciphertext>> {
        let log_n = self.ctx.params().log_n;
        let keys = steps
            .iter()
            .map(|&k| {
                let g = rotation_element(log_n, k);
                if g == 1 {
                    Ok(None)
                } else {
                    let key = gks.get(g, Some(k))?;
                    key.key.check(&self.ctx, h.meta.level)?;
                    Ok(Some(key))
                }
            })
            .collect::<Result<Vec<_>>>()?;
        keys.into_par_iter()
            .map(|key| match key {
                Some(key) => self.galois_hoisted(h, key),
                None => Ok(Ciphertext {
                    parts: vec![h.c0.clone(), self.recompose_c1(h)],
                    ..h.meta.clone_meta()
                }),
            })
            .collect()
    }

    /// The original c_1 from a hoisted ciphertext (its digits' own limbs).
    pub(crate) fn recompose_c1(&self, h: &HoistedCiphertext) -> RnsPoly {
        let n = self.ctx.n();
        let alpha = self.ctx.params().alpha();
        let level = h.meta.level;
        let mut c1 = RnsPoly::zero(n, level + 1);
        for i in 0..=level {
            c1.limb_mut(i)
                .copy_from_slice(h.dec.digits[i / alpha].limb(i));
        }
        c1
    }

    /// One automorphism: the hoisted path with a single element (so results are bit-identical to
    /// [`Evaluator::rotate_hoisted`]), without copying c_0.
    fn galois_single(&self, ct: &Ciphertext, key: &GaloisKey) -> Result<Ciphertext> {
        ct.expect_degree(1)?;
        key.key.check(&self.ctx, ct.level)?;
        let dec = decompose(&self.ctx, &ct.parts[1], ct.level);
        self.galois_decomposed(&ct.parts[0], &dec, ct, key)
    }

    /// Left rotation by `step` slots (slot j of the result is slot j + step of the input).
    pub fn rotate(&self, ct: &Ciphertext, step: i64, gks: &GaloisKeys) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let g = rotation_element(self.ctx.params().log_n, step);
        if g == 1 {
            return Ok(ct.clone());
        }
        let key = gks.get(g, Some(step))?;
        self.galois_single(ct, key)
    }

    /// Complex conjugation of every slot.
    pub fn conjugate(&self, ct: &Ciphertext, gks: &GaloisKeys) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let key = gks.get(conjugation_element(self.ctx.params().log_n), None)?;
        self.galois_single(ct, key)
    }

    /// Applies σ_g for an arbitrary Galois element g with a key present in `gks`.
    pub fn apply_galois(&self, ct: &Ciphertext, g: u64, gks: &GaloisKeys) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let key = gks.get(g, None)?;
        self.galois_single(ct, key)
    }
}
