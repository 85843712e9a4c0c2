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

use rayon::prelude::*;

use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::error::{CkksError, Result};
use crate::keys::{GaloisKeys, SecretKey};
use crate::ops::Evaluator;
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
