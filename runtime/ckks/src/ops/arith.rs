//! Addition, subtraction, negation (ct-ct, ct-pt, ct-const), ct-pt and ct-ct multiplication,
//! relinearization, rescale and level-down.

use rayon::prelude::*;

use super::Evaluator;
use super::keyswitch::key_switch_add;
use crate::ciphertext::Ciphertext;
use crate::error::{CkksError, Result};
use crate::keys::{RelinKey, SwitchingKey};
use crate::plaintext::Plaintext;
use crate::ring::basis_ifma;
use std::mem::MaybeUninit;

use crate::ring::poly::{RnsPoly, assume_init};

/// Relative tolerance for scale equality.
const SCALE_TOLERANCE: f64 = 1e-9;

fn same_scale(a: f64, b: f64) -> bool {
    ((a / b) - 1.0).abs() < SCALE_TOLERANCE
}

impl Evaluator {
    fn check_pair(&self, a: &Ciphertext, b: &Ciphertext) -> Result<()> {
        self.ctx.check_id(a.params_id)?;
        self.ctx.check_id(b.params_id)?;
        if a.level != b.level {
            return Err(CkksError::LevelMismatch(a.level, b.level));
        }
        if a.slots != b.slots {
            return Err(CkksError::InvalidSlots(format!(
                "{} vs {} slots",
                a.slots, b.slots
            )));
        }
        Ok(())
    }

    fn check_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<()> {
        self.ctx.check_id(ct.params_id)?;
        self.ctx.check_id(pt.params_id)?;
        if pt.level < ct.level {
            return Err(CkksError::LevelMismatch(ct.level, pt.level));
        }
        if pt.slots != ct.slots {
            return Err(CkksError::InvalidSlots(format!(
                "{} vs {} slots",
                ct.slots, pt.slots
            )));
        }
        Ok(())
    }

    fn add_sub(&self, a: &Ciphertext, b: &Ciphertext, sub: bool) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        if !same_scale(a.scale, b.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), b.scale.log2()));
        }
        let moduli = self.ctx.q_moduli(a.level);
        let (long, short, swapped) = if a.parts.len() >= b.parts.len() {
            (a, b, false)
        } else {
            (b, a, true)
        };
        let mut out = long.clone();
        if sub && swapped {
            for p in out.parts.iter_mut() {
                p.neg_assign(moduli);
            }
            for (o, s) in out.parts.iter_mut().zip(&short.parts) {
                o.add_assign(s, moduli);
            }
        } else {
            for (o, s) in out.parts.iter_mut().zip(&short.parts) {
                if sub {
                    o.sub_assign(s, moduli);
                } else {
                    o.add_assign(s, moduli);
                }
            }
        }
        Ok(out)
    }

    /// a + b (same level, scale and slots).
    pub fn add(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.add_sub(a, b, false)
    }

    /// a − b (same level, scale and slots).
    pub fn sub(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.add_sub(a, b, true)
    }

    /// −a.
    pub fn negate(&self, a: &Ciphertext) -> Result<Ciphertext> {
        self.ctx.check_id(a.params_id)?;
        let mut out = a.clone();
        for p in out.parts.iter_mut() {
            p.neg_assign(self.ctx.q_moduli(a.level));
        }
        Ok(out)
    }

    /// ct ± pt (pt at level ≥ ct's level, same scale).
    fn add_sub_plain(&self, ct: &Ciphertext, pt: &Plaintext, sub: bool) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        if !same_scale(ct.scale, pt.scale) {
            return Err(CkksError::ScaleMismatch(ct.scale.log2(), pt.scale.log2()));
        }
        let mut out = ct.clone();
        let m = pt.poly.prefix(ct.level + 1);
        let moduli = self.ctx.q_moduli(ct.level);
        if sub {
            out.parts[0].sub_assign(&m, moduli);
        } else {
            out.parts[0].add_assign(&m, moduli);
        }
        Ok(out)
    }

    /// ct + pt.
    pub fn add_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.add_sub_plain(ct, pt, false)
    }

    /// ct − pt.
    pub fn sub_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.add_sub_plain(ct, pt, true)
    }

    /// round(c·scale) as residues mod q_0 … q_ℓ.
    fn const_residues(&self, c: f64, scale: f64, level: usize) -> Result<Vec<u64>> {
        let v = (c * scale).round();
        if !v.is_finite() || v.abs() >= 1.7e38 {
            return Err(CkksError::Overflow(format!(
                "constant {c} at scale 2^{:.1}",
                scale.log2()
            )));
        }
        let v = v as i128;
        Ok(self
            .ctx
            .q_moduli(level)
            .iter()
            .map(|m| m.reduce_i128(v))
            .collect())
    }

    /// ct + c for a real constant c (added to every slot), at the ciphertext's scale.
    pub fn add_const(&self, ct: &Ciphertext, c: f64) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let r = self.const_residues(c, ct.scale, ct.level)?;
        let mut out = ct.clone();
        out.parts[0].add_scalar_assign(&r, self.ctx.q_moduli(ct.level));
        Ok(out)
    }

    /// ct · c for a real constant c encoded at `const_scale` (the result's scale is
    /// ct.scale · const_scale; rescale afterwards). Use [`Evaluator::mul_integer`] for exact
    /// integer factors.
    pub fn mul_const(&self, ct: &Ciphertext, c: f64, const_scale: f64) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let r = self.const_residues(c, const_scale, ct.level)?;
        let mut out = ct.clone();
        for p in out.parts.iter_mut() {
            p.mul_scalar_assign(&r, self.ctx.q_moduli(ct.level));
        }
        out.scale = ct.scale * const_scale;
        Ok(out)
    }

    /// ct · k for an integer k (scale unchanged).
    pub fn mul_integer(&self, ct: &Ciphertext, k: i64) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let r = self.const_residues(k as f64, 1.0, ct.level)?;
        let mut out = ct.clone();
        for p in out.parts.iter_mut() {
            p.mul_scalar_assign(&r, self.ctx.q_moduli(ct.level));
        }
        Ok(out)
    }

    /// ct · pt (pt at level ≥ ct's level); the result's scale is the product of the scales.
    pub fn mul_plain(&self, ct: &Ciphertext, pt: &Plaintext) -> Result<Ciphertext> {
        self.check_plain(ct, pt)?;
        let m = pt.poly.prefix(ct.level + 1);
        let tables = self.ctx.q_tables(ct.level);
        let mut out = ct.clone();
        for p in out.parts.iter_mut() {
            p.mul_assign(&m, &tables);
        }
        out.scale = ct.scale * pt.scale;
        Ok(out)
    }

    /// Tensor product of two degree-1 ciphertexts: (a0·b0, a0·b1 + a1·b0, a1·b1), degree 2, scale
    /// the product of the scales.
    pub fn mul_no_relin(&self, a: &Ciphertext, b: &Ciphertext) -> Result<Ciphertext> {
        self.check_pair(a, b)?;
        a.expect_degree(1)?;
        b.expect_degree(1)?;
        let n = self.ctx.n();
        let tables = self.ctx.q_tables(a.level);
        let limbs = a.level + 1;
        let (a0, a1, b0, b1) = (&a.parts[0], &a.parts[1], &b.parts[0], &b.parts[1]);
        let ifma = &self.ctx.inner.ifma;
        let fill = |o0: &mut [MaybeUninit<u64>],
                    o1: &mut [MaybeUninit<u64>],
                    o2: &mut [MaybeUninit<u64>]| {
            o0.par_chunks_exact_mut(n)
                .zip(o1.par_chunks_exact_mut(n))
                .zip(o2.par_chunks_exact_mut(n))
                .zip(tables.par_iter())
                .enumerate()
                .for_each(|(i, (((o0, o1), o2), t))| {
                    let (x0, x1, y0, y1) = (a0.limb(i), a1.limb(i), b0.limb(i), b1.limb(i));
                    #[cfg(target_arch = "x86_64")]
                    if let Some(red) = &ifma[i]
                        && n.is_multiple_of(8)
                    {
                        // SAFETY: IFMA detected (the reducer exists), q_i < 2^50, limbs reduced
                        // and of N words; tensor_limb writes every output element.
                        unsafe { basis_ifma::tensor_limb([x0, x1], [y0, y1], [o0, o1, o2], red) };
                        return;
                    }
                    let _ = ifma;
                    for o in [&mut *o0, &mut *o1, &mut *o2] {
                        o.fill(MaybeUninit::new(0));
                    }
                    // SAFETY: just zero-filled.
                    let (o0, o1, o2) =
                        unsafe { (assume_init(o0), assume_init(o1), assume_init(o2)) };
                    t.mul_acc(o0, x0, y0);
                    t.mul_acc(o1, x0, y1);
                    t.mul_acc(o1, x1, y0);
                    t.mul_acc(o2, x1, y1);
                });
        };
        let (mut d1, mut d2) = (RnsPoly::zero(n, 0), RnsPoly::zero(n, 0));
        // SAFETY: every limb of the three outputs is written (IFMA kernel or zero + accumulate).
        let d0 = unsafe {
            RnsPoly::new_uninit_with(n, limbs, |o0| {
                d1 = RnsPoly::new_uninit_with(n, limbs, |o1| {
                    d2 = RnsPoly::new_uninit_with(n, limbs, |o2| fill(o0, o1, o2));
                });
            })
        };
        Ok(Ciphertext {
            parts: vec![d0, d1, d2],
            level: a.level,
            scale: a.scale * b.scale,
            slots: a.slots,
            params_id: a.params_id,
        })
    }

    /// Relinearizes a degree-2 ciphertext back to degree 1 by key switching c_2 (s² → s).
    pub fn relinearize(&self, ct: &Ciphertext, rlk: &RelinKey) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        ct.expect_degree(2)?;
        rlk.0.check(&self.ctx, ct.level)?;
        let (c0, c1) = key_switch_add(
            &self.ctx,
            &ct.parts[2],
            ct.level,
            &rlk.0,
            Some((&ct.parts[0], &ct.parts[1])),
        );
        Ok(Ciphertext {
            parts: vec![c0, c1],
            ..ct.clone_meta()
        })
    }

    /// Switches a degree-1 ciphertext from the key's input secret to its output secret
    /// (see [`crate::KeyGenerator::switching_key_between`]).
    pub fn switch_key(&self, ct: &Ciphertext, key: &SwitchingKey) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        ct.expect_degree(1)?;
        key.check(&self.ctx, ct.level)?;
        let zero = RnsPoly::zero(self.ctx.n(), ct.level + 1);
        let (c0, c1) = key_switch_add(
            &self.ctx,
            &ct.parts[1],
            ct.level,
            key,
            Some((&ct.parts[0], &zero)),
        );
        Ok(Ciphertext {
            parts: vec![c0, c1],
            ..ct.clone_meta()
        })
    }

    /// ct · X^k (negacyclic: X^N = −1) for 0 ≤ k < 2N; scale and level unchanged. With full
    /// slots, X^{N/2} multiplies every slot by i.
    pub fn mul_monomial(&self, ct: &Ciphertext, k: usize) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let n = self.ctx.n();
        if k >= 2 * n {
            return Err(CkksError::InvalidInput(format!("monomial degree {k} ≥ 2N")));
        }
        let tables = self.ctx.q_tables(ct.level);
        let mut mono = RnsPoly::zero(n, ct.level + 1);
        mono.par_limbs_mut()
            .zip(tables.par_iter())
            .for_each(|(l, t)| {
                let q = t.modulus().value();
                l[k % n] = if k < n { 1 } else { q - 1 };
                t.forward(l);
            });
        let mut out = ct.clone();
        for p in out.parts.iter_mut() {
            p.mul_assign(&mono, &tables);
        }
        Ok(out)
    }

    /// ct-ct multiplication followed by relinearization (no rescale).
    pub fn mul_relin(&self, a: &Ciphertext, b: &Ciphertext, rlk: &RelinKey) -> Result<Ciphertext> {
        rlk.0.check(&self.ctx, a.level)?;
        let t = self.mul_no_relin(a, b)?;
        self.relinearize(&t, rlk)
    }

    /// Rescale: divides by the top prime q_ℓ with rounding, ℓ → ℓ − 1, scale / q_ℓ.
    pub fn rescale(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let l = ct.level;
        if l == 0 {
            return Err(CkksError::LevelTooLow {
                needed: 1,
                level: 0,
            });
        }
        let ql = self.ctx.params().q[l];
        let parts = ct.parts.iter().map(|p| self.rescale_poly(p, l)).collect();
        Ok(Ciphertext {
            parts,
            level: l - 1,
            scale: ct.scale / ql as f64,
            slots: ct.slots,
            params_id: ct.params_id,
        })
    }

    /// (x − [x]_{q_ℓ}) / q_ℓ over q_0 … q_{ℓ−1}, [·] centered (rounding division).
    fn rescale_poly(&self, p: &RnsPoly, l: usize) -> RnsPoly {
        let n = self.ctx.n();
        let inner = &self.ctx.inner;
        let mut top = p.limb(l).to_vec();
        inner.ntt[l].inverse(&mut top);
        let ml = inner.moduli[l];
        let mut out = p.prefix(l);
        out.par_limbs_mut().enumerate().for_each(|(i, x)| {
            let m = &inner.moduli[i];
            let mut t: Vec<u64> = top.iter().map(|&v| m.reduce_i64(ml.center(v))).collect();
            inner.ntt[i].forward(&mut t);
            let (w, ws) = inner.rescale_inv[l][i];
            #[cfg(target_arch = "x86_64")]
            if inner.ifma[i].is_some() && n.is_multiple_of(8) {
                // x ← (x − t)·q_ℓ^{-1}, computed as t ← (x − t)·w then copied back.
                let ws52 = (((w as u128) << 52) / m.value() as u128) as u64;
                // SAFETY: IFMA detected (the reducer exists), q_i < 2^50, limbs reduced.
                unsafe { basis_ifma::sub_mul_limb(x, &mut t, m.value(), w, ws52) };
                x.copy_from_slice(&t);
                return;
            }
            for (xv, &tv) in x.iter_mut().zip(&t) {
                *xv = m.mul_shoup(m.sub(*xv, tv), w, ws);
            }
        });
        out
    }

    /// Drops limbs down to `level` (scale unchanged).
    pub fn level_down(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        if level > ct.level {
            return Err(CkksError::LevelTooLow {
                needed: level,
                level: ct.level,
            });
        }
        let mut out = ct.clone();
        for p in out.parts.iter_mut() {
            p.truncate(level + 1);
        }
        out.level = level;
        Ok(out)
    }
}

impl Ciphertext {
    /// A degree-less copy of the metadata (parts empty), for struct update syntax.
    pub(crate) fn clone_meta(&self) -> Ciphertext {
        Ciphertext {
            parts: Vec::new(),
            level: self.level,
            scale: self.scale,
            slots: self.slots,
            params_id: self.params_id,
        }
    }
}
