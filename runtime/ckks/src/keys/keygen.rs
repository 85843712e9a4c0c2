//! Key generation. Secrets and errors come from a ChaCha20 CSPRNG seeded by OS entropy; the
//! uniform "a" parts are expanded from per-key public seeds.

use rayon::prelude::*;

use super::{GaloisKey, GaloisKeys, PublicKey, RelinKey, SecretKey, SwitchingKey};
use crate::context::{CkksContext, Security};
use crate::error::{CkksError, Result};
use crate::params::SecretDistribution;
use crate::params::security::{MIN_SPARSE_HAMMING_WEIGHT, check_sparse_key};
use crate::ring::automorphism::{
    conjugation_element, inverse_element, ntt_permutation, permute_ntt, rotation_element,
};
use crate::ring::poly::RnsPoly;
use crate::sampling::{Csprng, expand_uniform, small_to_ntt, stream};
use zeroize::Zeroizing;

/// Generates keys for one context.
#[derive(Debug)]
pub struct KeyGenerator {
    ctx: CkksContext,
    rng: Csprng,
}

impl KeyGenerator {
    /// A generator seeded from OS entropy. Errors: [`crate::CkksError::Entropy`].
    pub fn new(ctx: &CkksContext) -> Result<Self> {
        Ok(KeyGenerator {
            ctx: ctx.clone(),
            rng: Csprng::from_os()?,
        })
    }

    /// A generator with an explicit RNG (deterministic tests and benchmarks).
    pub fn with_rng(ctx: &CkksContext, rng: Csprng) -> Self {
        KeyGenerator {
            ctx: ctx.clone(),
            rng,
        }
    }

    /// A fresh secret key from the parameter set's distribution.
    pub fn secret_key(&mut self) -> SecretKey {
        let p = self.ctx.params();
        let n = p.n();
        let coeffs = match p.secret {
            SecretDistribution::UniformTernary => self.rng.ternary(n),
            SecretDistribution::SparseTernary { hamming_weight } => {
                self.rng.sparse_ternary(n, hamming_weight)
            }
        };
        let tables: Vec<_> = self.ctx.inner.ntt.iter().collect();
        let ntt = small_to_ntt(&coeffs, &tables);
        SecretKey {
            coeffs,
            ntt,
            params_id: self.ctx.id(),
        }
    }

    /// The public key (b, a) = (−a·s + e, a) over Q_L·P.
    pub fn public_key(&mut self, sk: &SecretKey) -> Result<PublicKey> {
        self.ctx.check_id(sk.params_id)?;
        let level = self.ctx.max_level();
        let seed = self.rng.seed();
        let moduli = self.ctx.ext_moduli(level);
        let tables = self.ctx.ext_tables(level);
        let a = expand_uniform(&seed, stream::PUBLIC_KEY, &moduli, self.ctx.n());
        let e = Zeroizing::new(self.rng.gaussian(self.ctx.n(), self.ctx.params().sigma));
        let mut b = small_to_ntt(&e, &tables);
        let mut as_ = Zeroizing::new(a.clone());
        as_.mul_assign(&sk.ext_part(&self.ctx, level), &tables);
        b.sub_assign(&as_, &moduli);
        Ok(PublicKey {
            b,
            a,
            seed,
            params_id: self.ctx.id(),
        })
    }

    /// The relinearization key (s² → s) up to `level`.
    pub fn relin_key(&mut self, sk: &SecretKey, level: usize) -> Result<RelinKey> {
        self.ctx.check_id(sk.params_id)?;
        self.ctx.check_level(level)?;
        let s = sk.ext_part(&self.ctx, level);
        let mut s2 = s.clone();
        s2.mul_assign(&s, &self.ctx.ext_tables(level));
        Ok(RelinKey(self.switching_key(&s2, &s, level)))
    }

    /// The Galois key for element g (odd, < 2N) up to `level`. Errors: bad g, level, or secret
    /// key of another parameter set.
    pub fn galois_key(&mut self, sk: &SecretKey, g: u64, level: usize) -> Result<GaloisKey> {
        self.ctx.check_id(sk.params_id)?;
        self.ctx.check_level(level)?;
        if g.is_multiple_of(2) || g >= 2 * self.ctx.n() as u64 {
            return Err(CkksError::InvalidInput(format!(
                "Galois element {g} must be odd and below 2N = {}",
                2 * self.ctx.n()
            )));
        }
        let log_n = self.ctx.params().log_n;
        let s = sk.ext_part(&self.ctx, level);
        let perm = ntt_permutation(log_n, inverse_element(log_n, g));
        let mut s_out = Zeroizing::new(RnsPoly::zero(self.ctx.n(), s.num_limbs()));
        s_out
            .par_limbs_mut()
            .zip(s.par_limbs())
            .for_each(|(o, i)| permute_ntt(i, o, &perm));
        let key = self.switching_key(&s, &s_out, level);
        Ok(GaloisKey {
            galois_element: g,
            key,
            perm: ntt_permutation(log_n, g),
        })
    }

    /// Galois keys for left rotations by each of `steps` slots (and conjugation if asked), all up
    /// to `level`.
    pub fn galois_keys(
        &mut self,
        sk: &SecretKey,
        steps: &[i64],
        conjugation: bool,
        level: usize,
    ) -> Result<GaloisKeys> {
        let log_n = self.ctx.params().log_n;
        let mut elements: Vec<u64> = steps.iter().map(|&k| rotation_element(log_n, k)).collect();
        if conjugation {
            elements.push(conjugation_element(log_n));
        }
        elements.sort_unstable();
        elements.dedup();
        let mut keys = GaloisKeys::default();
        for g in elements {
            if g != 1 {
                keys.insert(self.galois_key(sk, g, level)?);
            }
        }
        Ok(keys)
    }

    /// A key switching ciphertexts from secret `from` to secret `to` (same parameters), up to
    /// `level`; e.g. the sparse → dense key of sparse-secret encapsulation in bootstrapping
    /// (Bossuat et al., ePrint 2022/024). Use with [`crate::Evaluator::switch_key`]. In a
    /// [`Security::Bits128`] context, a `to` secret of Hamming weight below 192 (not covered by the
    /// security table) must pass [`crate::params::security::check_sparse_key`] for Q_ℓ·P:
    /// [`CkksError::InsecureSparseKey`] otherwise (the dense → sparse encapsulation key is
    /// [`crate::bootstrap::mod_raise::EncapsulationKey`], over q_0·P').
    pub fn switching_key_between(
        &mut self,
        from: &SecretKey,
        to: &SecretKey,
        level: usize,
    ) -> Result<SwitchingKey> {
        self.ctx.check_id(from.params_id)?;
        self.ctx.check_id(to.params_id)?;
        self.ctx.check_level(level)?;
        // The key is an RLWE sample under `to`: a secret sparser than the security table covers
        // must satisfy the sparse-key bound on its modulus Q_ℓ·P.
        let weight = to.coeffs.iter().filter(|&&c| c != 0).count();
        if self.ctx.security() == Security::Bits128 && weight < MIN_SPARSE_HAMMING_WEIGHT {
            let p = self.ctx.params();
            let log_q = p.q[..=level]
                .iter()
                .chain(&p.p)
                .map(|&m| (m as f64).log2())
                .sum();
            check_sparse_key(p.log_n, weight, log_q)?;
        }
        let s_in = from.ext_part(&self.ctx, level);
        let s_out = to.ext_part(&self.ctx, level);
        Ok(self.switching_key(&s_in, &s_out, level))
    }

    /// A level-0 switching key from `from` to `to` over the reduced modulus q_0·p_0…p_{k'−1}
    /// (k' = `num_special` of the K special primes), one digit:
    /// (b, a) with b = −a·s_to + e + P'·s_from, P' = p_0⋯p_{k'−1}. Limbs: q_0, then p_0 … p_{k'−1}
    /// (NTT form). Used for the dense → sparse key of sparse-secret encapsulation, whose modulus
    /// must stay small (see [`crate::bootstrap::mod_raise::EncapsulationKey`]).
    pub(crate) fn level0_switching_key(
        &mut self,
        from: &SecretKey,
        to: &SecretKey,
        num_special: usize,
    ) -> Result<(RnsPoly, RnsPoly, [u8; 32])> {
        self.ctx.check_id(from.params_id)?;
        self.ctx.check_id(to.params_id)?;
        let ctx = &self.ctx;
        let k = ctx.num_special();
        if num_special == 0 || num_special > k {
            return Err(CkksError::InvalidInput(format!(
                "{num_special} special primes requested, the parameter set has {k}"
            )));
        }
        let n = ctx.n();
        let nq = ctx.max_level() + 1;
        let idx: Vec<usize> = std::iter::once(0).chain(nq..nq + num_special).collect();
        let moduli: Vec<_> = idx.iter().map(|&i| ctx.inner.moduli[i]).collect();
        let tables: Vec<_> = idx.iter().map(|&i| &ctx.inner.ntt[i]).collect();
        let restrict = |sk: &SecretKey| {
            let mut data = Vec::with_capacity(idx.len() * n);
            for &i in &idx {
                data.extend_from_slice(sk.ntt.limb(i));
            }
            Zeroizing::new(RnsPoly::from_data(n, data))
        };
        let s_in = restrict(from);
        let s_out = restrict(to);
        let seed = self.rng.seed();
        let e = Zeroizing::new(self.rng.gaussian(n, ctx.params().sigma));
        let a = expand_uniform(&seed, stream::SWITCHING_KEY, &moduli, n);
        let mut b = small_to_ntt(&e, &tables);
        let mut as_ = Zeroizing::new(a.clone());
        as_.mul_assign(&s_out, &tables);
        b.sub_assign(&as_, &moduli);
        // P'·s_in vanishes on the special limbs; on q_0 add (P' mod q_0)·s_in.
        let q0 = &moduli[0];
        let p_mod_q0 = moduli[1..]
            .iter()
            .fold(1, |acc, p| q0.mul(acc, q0.reduce(p.value())));
        let pms = q0.shoup(p_mod_q0);
        for (x, &si) in b.limb_mut(0).iter_mut().zip(s_in.limb(0)) {
            *x = q0.add(*x, q0.mul_shoup(si, p_mod_q0, pms));
        }
        Ok((b, a, seed))
    }

    /// Switching key s_in → s_out (both NTT over Q_ℓk·P) up to level ℓk.
    pub(crate) fn switching_key(
        &mut self,
        s_in: &RnsPoly,
        s_out: &RnsPoly,
        level: usize,
    ) -> SwitchingKey {
        let ctx = &self.ctx;
        let n = ctx.n();
        let alpha = ctx.params().alpha();
        let digits = (level + 1).div_ceil(alpha);
        let moduli = ctx.ext_moduli(level);
        let tables = ctx.ext_tables(level);
        let nq = ctx.max_level() + 1;
        let p_mod_q: Vec<u64> = (0..=level)
            .map(|i| {
                let m = &moduli[i];
                ctx.inner.moduli[nq..]
                    .iter()
                    .fold(1, |acc, p| m.mul(acc, m.reduce(p.value())))
            })
            .collect();
        let seed = self.rng.seed();
        let errors: Vec<Zeroizing<Vec<i64>>> = (0..digits)
            .map(|_| Zeroizing::new(self.rng.gaussian(n, ctx.params().sigma)))
            .collect();
        let digits = errors
            .into_par_iter()
            .enumerate()
            .map(|(j, e)| {
                let a = expand_uniform(&seed, stream::SWITCHING_KEY + j as u64, &moduli, n);
                let mut b = small_to_ntt(&e, &tables);
                let mut as_ = Zeroizing::new(a.clone());
                as_.mul_assign(s_out, &tables);
                b.sub_assign(&as_, &moduli);
                for i in (j * alpha)..((j + 1) * alpha).min(level + 1) {
                    let m = &moduli[i];
                    let (pm, pms) = (p_mod_q[i], m.shoup(p_mod_q[i]));
                    let si = s_in.limb(i);
                    for (x, &s) in b.limb_mut(i).iter_mut().zip(si) {
                        *x = m.add(*x, m.mul_shoup(s, pm, pms));
                    }
                }
                (b, a)
            })
            .collect();
        SwitchingKey {
            level,
            digits,
            seed,
            params_id: ctx.id(),
        }
    }
}
