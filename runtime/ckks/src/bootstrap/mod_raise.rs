//! ModRaise, the sparse-slot trace, and the ephemeral sparse secret of sparse-secret
//! encapsulation.
//!
//! ModRaise (Cheon–Han–Kim–Kim–Song, EUROCRYPT 2018, §3.1): a ciphertext (c_0, c_1) mod q_0 with
//! c_0 + c_1·s = m + e is read with centered representatives modulo the whole chain Q_L, where it
//! decrypts to m + e + q_0·I(X) with I integral and ‖I‖_∞ ≤ K (K depends on the Hamming weight of
//! s, see [`super::eval_mod::range_bound`]).
//!
//! Sparse-secret encapsulation (Bossuat, Troncoso-Pastoriza, Hubaux, ePrint 2022/024, §4): the main
//! secret s stays dense; before ModRaise the level-0 ciphertext is switched to an ephemeral sparse
//! secret s' (Hamming weight h, so I is small), raised, and switched back to s at the top level.
//! The dense → sparse key ([`EncapsulationKey`]) is an RLWE sample under the sparse s', so, as in
//! the paper, its modulus is kept small: q_0 times one special prime P' (not q_0·P), with key
//! switching restricted to that modulus (ModUp of the single q_0 digit to q_0·P', inner product,
//! ModDown by P'). Its modulus is checked against
//! [`crate::params::security::max_log_q_sparse_key`] for [`crate::Security::Bits128`] contexts.
//! The sparse → dense key is an ordinary switching key under the dense s over Q_L·P.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::context::Security;
use crate::error::{CkksError, Result};
use crate::keys::{GaloisKeys, KeyGenerator, SecretKey};
use crate::ops::Evaluator;
use crate::params::security::check_sparse_key;
use crate::ring::poly::RnsPoly;
use crate::sampling::{Csprng, small_to_ntt};

/// Reads a level-0 ciphertext modulo Q_`level` (centered lift of each part from q_0).
/// Errors: [`CkksError::LevelMismatch`] if `ct` is not at level 0, bad level or parameters.
pub fn mod_raise(ctx: &CkksContext, ct: &Ciphertext, level: usize) -> Result<Ciphertext> {
    ctx.check_id(ct.params_id)?;
    ctx.check_level(level)?;
    if ct.level != 0 {
        return Err(CkksError::LevelMismatch(ct.level, 0));
    }
    let n = ctx.n();
    let inner = &ctx.inner;
    let q0 = inner.moduli[0];
    let parts = ct
        .parts
        .iter()
        .map(|p| {
            let mut coeffs = p.limb(0).to_vec();
            inner.ntt[0].inverse(&mut coeffs);
            let centered: Vec<i64> = coeffs.iter().map(|&c| q0.center(c)).collect();
            let mut out = RnsPoly::zero(n, level + 1);
            out.par_limbs_mut().enumerate().for_each(|(i, limb)| {
                let m = &inner.moduli[i];
                for (x, &c) in limb.iter_mut().zip(&centered) {
                    *x = m.reduce_i64(c);
                }
                inner.ntt[i].forward(limb);
            });
            out
        })
        .collect();
    Ok(Ciphertext {
        parts,
        level,
        scale: ct.scale,
        slots: ct.slots,
        params_id: ct.params_id,
    })
}

/// Rotation steps of the trace onto the n-slot subring: n·2^i for 2^i < N/(2n).
pub fn trace_steps(log_n: u32, slots: usize) -> Vec<i64> {
    let gap = (1usize << (log_n - 1)) / slots;
    (0..gap.trailing_zeros())
        .map(|i| (slots << i) as i64)
        .collect()
}

/// The normalized trace (N/(2n))^{-1}·Σ_{g ≡ 1 mod 4n} σ_g onto polynomials in Y = X^{N/(2n)}:
/// keeps the coefficients of X^j with N/(2n) | j and zeroes the others (log2(N/(2n)) rotations,
/// no level). The factor (N/(2n))^{-1} is applied exactly, as an integer mod Q_ℓ, before the
/// rotations, so the key-switching noise they add is not multiplied by it (as in Lattigo): the
/// CoeffsToSlots matrices then need no 1/(N/(2n)) factor, which would cost encoding precision.
pub fn trace(eval: &Evaluator, ct: &Ciphertext, gks: &GaloisKeys) -> Result<Ciphertext> {
    let ctx = eval.context();
    let log_n = ctx.params().log_n;
    let gap = ctx.params().max_slots() / ct.slots;
    let mut acc = ct.clone();
    let moduli = ctx.q_moduli(ct.level);
    let inv: Vec<u64> = moduli.iter().map(|m| m.inv(m.reduce(gap as u64))).collect();
    for p in acc.parts.iter_mut() {
        p.mul_scalar_assign(&inv, moduli);
    }
    for step in trace_steps(log_n, ct.slots) {
        let rot = eval.rotate(&acc, step, gks)?;
        acc = eval.add(&acc, &rot)?;
    }
    Ok(acc)
}

/// A fresh sparse ternary secret with exactly `hamming_weight` nonzero coefficients (the
/// ephemeral secret of sparse-secret encapsulation), independent of the parameter set's
/// distribution. Errors: weight outside 1..=N, entropy failure.
pub fn sparse_secret(ctx: &CkksContext, hamming_weight: usize) -> Result<SecretKey> {
    if hamming_weight == 0 || hamming_weight > ctx.n() {
        return Err(CkksError::InvalidInput(format!(
            "Hamming weight {hamming_weight} outside 1..={}",
            ctx.n()
        )));
    }
    let mut rng = Csprng::from_os()?;
    let coeffs = rng.sparse_ternary(ctx.n(), hamming_weight);
    let tables: Vec<_> = ctx.inner.ntt.iter().collect();
    let ntt = small_to_ntt(&coeffs, &tables);
    Ok(SecretKey {
        coeffs,
        ntt,
        params_id: ctx.id(),
    })
}

/// Number of special primes in the modulus q_0·P' of the dense → sparse encapsulation key.
/// One prime suffices: ModUp of the single q_0 digit is exact, so the switching error is
/// d·e/P' + rounding with ‖d‖ ≤ q_0/2, i.e. about (q_0/P')·σ·sqrt(N/12) per coefficient (≈ 2^8
/// at N = 2^16 with q_0 ≈ P' ≈ 2^60), against a message of q_0/2^8 after the pre-multiplication.
pub const ENCAPSULATION_SPECIAL_PRIMES: usize = 1;

/// The dense → sparse switching key of sparse-secret encapsulation: one digit (b, a) over the
/// reduced modulus q_0·P' (limbs q_0, p_0; NTT form) with b = −a·s' + e + P'·s, an RLWE sample
/// under the ephemeral sparse secret s'. Applied by [`EncapsulationKey::switch`] to level-0
/// ciphertexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EncapsulationKey {
    pub(crate) b: RnsPoly,
    pub(crate) a: RnsPoly,
    pub(crate) seed: [u8; 32],
    pub(crate) hamming_weight: usize,
    pub(crate) params_id: u64,
}

impl EncapsulationKey {
    /// The key switching level-0 ciphertexts from `dense` to `sparse` over q_0·P'
    /// ([`ENCAPSULATION_SPECIAL_PRIMES`] special primes). For a [`Security::Bits128`] context the
    /// modulus is checked against the sparse-secret bound for the Hamming weight of `sparse`.
    /// Errors: [`CkksError::InsecureSparseKey`], mismatched parameters, weight < 32 under
    /// `Bits128`.
    pub fn generate(
        kg: &mut KeyGenerator,
        ctx: &CkksContext,
        dense: &SecretKey,
        sparse: &SecretKey,
    ) -> Result<Self> {
        ctx.check_id(dense.params_id)?;
        ctx.check_id(sparse.params_id)?;
        let hamming_weight = sparse.coeffs.iter().filter(|&&c| c != 0).count();
        if ctx.security() == Security::Bits128 {
            check_sparse_key(
                ctx.params().log_n,
                hamming_weight,
                Self::modulus_bits(ctx, ENCAPSULATION_SPECIAL_PRIMES),
            )?;
        }
        let (b, a, seed) = kg.level0_switching_key(dense, sparse, ENCAPSULATION_SPECIAL_PRIMES)?;
        Ok(EncapsulationKey {
            b,
            a,
            seed,
            hamming_weight,
            params_id: ctx.id(),
        })
    }

    /// log2(q_0·p_0⋯p_{k−1}), bits.
    fn modulus_bits(ctx: &CkksContext, num_special: usize) -> f64 {
        let p = ctx.params();
        (p.q[0] as f64).log2()
            + p.p[..num_special]
                .iter()
                .map(|&x| (x as f64).log2())
                .sum::<f64>()
    }

    /// Number of RNS limbs of the key's modulus (1 + number of special primes).
    pub fn num_limbs(&self) -> usize {
        self.b.num_limbs()
    }

    /// Number of special primes in P'.
    pub fn num_special(&self) -> usize {
        self.b.num_limbs() - 1
    }

    /// log2 of the key's modulus q_0·P', bits.
    pub fn log_modulus(&self, ctx: &CkksContext) -> f64 {
        Self::modulus_bits(ctx, self.num_special())
    }

    /// Hamming weight of the sparse secret the key encrypts under.
    pub fn hamming_weight(&self) -> usize {
        self.hamming_weight
    }

    /// In-memory size, bytes.
    pub fn size_bytes(&self) -> usize {
        (self.b.data().len() + self.a.data().len()) * 8
    }

    /// Switches a level-0 ciphertext (c_0, c_1) from the dense to the sparse secret: ModUp of
    /// d = c_1 to q_0·P' (the centered lift, exact for one source limb), (d·b, d·a) over q_0·P',
    /// ModDown by P' (HPS-centered), and c_0 added. Errors: [`CkksError::LevelMismatch`] unless
    /// at level 0, mismatched parameters, a ciphertext of degree ≠ 1.
    pub fn switch(&self, ctx: &CkksContext, ct: &Ciphertext) -> Result<Ciphertext> {
        ctx.check_id(ct.params_id)?;
        ctx.check_id(self.params_id)?;
        if ct.level != 0 {
            return Err(CkksError::LevelMismatch(ct.level, 0));
        }
        if ct.parts.len() != 2 {
            return Err(CkksError::InvalidInput(format!(
                "encapsulation switches ciphertexts of 2 parts, got {}",
                ct.parts.len()
            )));
        }
        if self.num_special() != 1 {
            return Err(CkksError::InvalidInput(format!(
                "encapsulation key with {} special primes (1 supported)",
                self.num_special()
            )));
        }
        let inner = &ctx.inner;
        let nq = ctx.max_level() + 1;
        let (q0, p0) = (inner.moduli[0], inner.moduli[nq]);
        let (tq, tp) = (&inner.ntt[0], &inner.ntt[nq]);
        // ModUp: the centered lift of d from q_0 to p_0.
        let d_q = ct.parts[1].limb(0);
        let mut d_p = d_q.to_vec();
        tq.inverse(&mut d_p);
        for x in d_p.iter_mut() {
            *x = p0.reduce_i64(q0.center(*x));
        }
        tp.forward(&mut d_p);
        let p_inv = q0.inv(q0.reduce(p0.value()));
        let p_inv_s = q0.shoup(p_inv);
        // (d·k over q_0 − Conv_{p_0→q_0}([d·k]_{p_0}))·p_0^{-1} mod q_0, NTT form.
        let half = |k: &RnsPoly| -> Vec<u64> {
            let mut r: Vec<u64> = d_p
                .iter()
                .zip(k.limb(1))
                .map(|(&x, &y)| p0.mul(x, y))
                .collect();
            tp.inverse(&mut r);
            for x in r.iter_mut() {
                *x = q0.reduce_i64(p0.center(*x));
            }
            tq.forward(&mut r);
            for ((x, &d), &y) in r.iter_mut().zip(d_q).zip(k.limb(0)) {
                *x = q0.mul_shoup(q0.sub(q0.mul(d, y), *x), p_inv, p_inv_s);
            }
            r
        };
        let (mut u0, u1) = rayon::join(|| half(&self.b), || half(&self.a));
        for (x, &c) in u0.iter_mut().zip(ct.parts[0].limb(0)) {
            *x = q0.add(*x, c);
        }
        let n = ctx.n();
        Ok(Ciphertext {
            parts: vec![RnsPoly::from_data(n, u0), RnsPoly::from_data(n, u1)],
            level: 0,
            scale: ct.scale,
            slots: ct.slots,
            params_id: ct.params_id,
        })
    }
}
