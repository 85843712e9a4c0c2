//! Public- and secret-key encryption, decryption, and noise-flooded decryption.
//!
//! Public-key encryption (CKKS, ASIACRYPT 2017, §3.4), computed over Q_ℓ·P and divided by P
//! (ModDown) so the encryption noise shrinks to rounding size: with v ternary and e_0, e_1
//! Gaussian, ct = (⌊(v·b + e_0)/P⌉ + m, ⌊(v·a + e_1)/P⌉). Secret-key: ct = (−a·s + e + m, a) with a uniform.
//! Decryption returns c_0 + c_1·s (+ c_2·s²). For results that leave the client, decryption
//! with noise flooding adds a fresh Gaussian of standard deviation 2^flood_bits to the
//! coefficients before decoding, so the output no longer reveals the ciphertext noise (the
//! IND-CPA^D countermeasure of Li–Micciancio, EUROCRYPT 2021, §5).

use num_complex::Complex64;
use rayon::prelude::*;

use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::encoding::Encoder;
use crate::error::{CkksError, Result};
use crate::keys::{PublicKey, SecretKey};
use crate::ops::keyswitch::mod_down;
use crate::plaintext::Plaintext;
use crate::ring::poly::RnsPoly;
use crate::sampling::{Csprng, expand_uniform, small_to_ntt, stream};
use zeroize::Zeroizing;

/// Encrypts plaintexts under a public or a secret key.
#[derive(Debug)]
pub struct Encryptor {
    ctx: CkksContext,
    rng: Csprng,
}

impl Encryptor {
    /// An encryptor seeded from OS entropy.
    pub fn new(ctx: &CkksContext) -> Result<Self> {
        Ok(Encryptor {
            ctx: ctx.clone(),
            rng: Csprng::from_os()?,
        })
    }

    /// An encryptor with an explicit RNG (reproducible tests and benchmarks).
    pub fn with_rng(ctx: &CkksContext, rng: Csprng) -> Self {
        Encryptor {
            ctx: ctx.clone(),
            rng,
        }
    }

    /// Public-key encryption of `pt` at the plaintext's level.
    pub fn encrypt_pk(&mut self, pk: &PublicKey, pt: &Plaintext) -> Result<Ciphertext> {
        let ctx = &self.ctx;
        ctx.check_id(pk.params_id)?;
        ctx.check_id(pt.params_id)?;
        let level = pt.level;
        let n = ctx.n();
        let q_limbs = ctx.max_level() + 1;
        let tables = ctx.ext_tables(level);
        let v = Zeroizing::new(self.rng.ternary(n));
        let sigma = ctx.params().sigma;
        let e0 = Zeroizing::new(self.rng.gaussian(n, sigma));
        let e1 = Zeroizing::new(self.rng.gaussian(n, sigma));
        let v = Zeroizing::new(small_to_ntt(&v, &tables));
        let mut c0 = small_to_ntt(&e0, &tables);
        let mut c1 = small_to_ntt(&e1, &tables);
        // c_0 += v·b, c_1 += v·a on Q_ℓ·P (public key limbs indexed in place, no copies).
        c0.par_limbs_mut()
            .zip(c1.par_limbs_mut())
            .zip(v.par_limbs())
            .zip(tables.par_iter())
            .enumerate()
            .for_each(|(t, (((o0, o1), vl), tab))| {
                let kt = if t <= level {
                    t
                } else {
                    q_limbs + t - level - 1
                };
                tab.mul_acc(o0, vl, pk.b.limb(kt));
                tab.mul_acc(o1, vl, pk.a.limb(kt));
            });
        let (mut c0, c1) = rayon::join(
            || mod_down(ctx, &c0, level, &|_, _| {}),
            || mod_down(ctx, &c1, level, &|_, _| {}),
        );
        c0.add_assign(&pt.poly, ctx.q_moduli(level));
        Ok(Ciphertext {
            parts: vec![c0, c1],
            level,
            scale: pt.scale,
            slots: pt.slots,
            params_id: ctx.id(),
        })
    }

    /// Secret-key encryption of `pt` (smaller noise than public-key encryption).
    pub fn encrypt_sk(&mut self, sk: &SecretKey, pt: &Plaintext) -> Result<Ciphertext> {
        let ctx = &self.ctx;
        ctx.check_id(sk.params_id)?;
        ctx.check_id(pt.params_id)?;
        let level = pt.level;
        let tables = ctx.q_tables(level);
        let moduli = ctx.q_moduli(level);
        let seed = self.rng.seed();
        let a = expand_uniform(&seed, stream::ENCRYPTION, moduli, ctx.n());
        let e = Zeroizing::new(self.rng.gaussian(ctx.n(), ctx.params().sigma));
        let mut c0 = small_to_ntt(&e, &tables);
        let mut as_ = Zeroizing::new(a.clone());
        as_.mul_assign(&sk.q_part(level), &tables);
        c0.sub_assign(&as_, moduli);
        c0.add_assign(&pt.poly, moduli);
        Ok(Ciphertext {
            parts: vec![c0, a],
            level,
            scale: pt.scale,
            slots: pt.slots,
            params_id: ctx.id(),
        })
    }
}

/// Decrypts ciphertexts with the secret key.
#[derive(Debug, Clone)]
pub struct Decryptor {
    ctx: CkksContext,
}

impl Decryptor {
    /// A decryptor for `ctx`.
    pub fn new(ctx: &CkksContext) -> Self {
        Decryptor { ctx: ctx.clone() }
    }

    /// c_0 + c_1·s (+ c_2·s²) in NTT form.
    fn phase(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<RnsPoly> {
        self.ctx.check_id(sk.params_id)?;
        self.ctx.check_id(ct.params_id)?;
        let level = ct.level;
        let tables = self.ctx.q_tables(level);
        let s = sk.q_part(level);
        // Horner: ((c_d·s + c_{d−1})·s + …) + c_0
        let mut acc = ct.parts[ct.parts.len() - 1].clone();
        for part in ct.parts.iter().rev().skip(1) {
            acc.mul_assign(&s, &tables);
            acc.add_assign(part, self.ctx.q_moduli(level));
        }
        Ok(acc)
    }

    /// The decrypted plaintext (level, scale, slots of the ciphertext).
    pub fn decrypt(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<Plaintext> {
        Ok(Plaintext {
            poly: self.phase(sk, ct)?,
            level: ct.level,
            scale: ct.scale,
            slots: ct.slots,
            params_id: ct.params_id,
        })
    }

    /// Decrypts and decodes to complex slots.
    pub fn decrypt_complex(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<Complex64>> {
        let mut m = self.phase(sk, ct)?;
        m.intt(&self.ctx.q_tables(ct.level));
        Ok(Encoder::new(&self.ctx).decode_coeff_poly(&m, ct.level, ct.scale, ct.slots))
    }

    /// Decrypts and decodes to real slots.
    pub fn decrypt_real(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<Vec<f64>> {
        Ok(self
            .decrypt_complex(sk, ct)?
            .into_iter()
            .map(|c| c.re)
            .collect())
    }

    /// Decrypts with noise flooding: adds a rounded Gaussian of standard deviation 2^flood_bits
    /// (1 ≤ flood_bits ≤ 60) to every coefficient, then decodes. Choose flood_bits ≈ the
    /// ciphertext noise bits + the statistical security parameter (e.g. +30), below the scale.
    pub fn decrypt_flooded(
        &self,
        sk: &SecretKey,
        ct: &Ciphertext,
        flood_bits: u32,
        rng: &mut Csprng,
    ) -> Result<Vec<Complex64>> {
        if !(1..=60).contains(&flood_bits) {
            return Err(CkksError::InvalidInput(format!(
                "flood_bits = {flood_bits} outside 1..=60"
            )));
        }
        let level = ct.level;
        let mut m = self.phase(sk, ct)?;
        let tables = self.ctx.q_tables(level);
        m.intt(&tables);
        let noise = rng.gaussian(self.ctx.n(), (flood_bits as f64).exp2());
        for (i, m_i) in self.ctx.q_moduli(level).iter().enumerate() {
            for (x, &e) in m.limb_mut(i).iter_mut().zip(&noise) {
                *x = m_i.add(*x, m_i.reduce_i64(e));
            }
        }
        Ok(Encoder::new(&self.ctx).decode_coeff_poly(&m, level, ct.scale, ct.slots))
    }
}
