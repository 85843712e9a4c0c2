//! Linear transforms y = M·x on slot vectors from M's generalized diagonals, evaluated with the
//! baby-step giant-step algorithm (Halevi–Shoup, CRYPTO 2014 §4.3 and CRYPTO 2018 §5): with
//! k = g·n1 + b,
//!
//! y = Σ_g rot_{g·n1}( Σ_b rot_{−g·n1}(d_k) ⊙ rot_b(x) ),
//!
//! where the n1 baby-step rotations of x share one hoisted decomposition and stay in Q_ℓ·P
//! (double hoisting, Bossuat et al., EUROCRYPT 2021, §5.2): the plaintext products and the inner
//! sums are computed there, so each giant step costs one ModDown pair and one rotation. Diagonal k holds d_k\[j\] = M\[j\]\[(j + k) mod n\].

use std::collections::BTreeMap;

use num_complex::Complex64;
use rayon::prelude::*;

use super::Evaluator;
use super::keyswitch::mod_down;
use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::encoding::Encoder;
use crate::error::{CkksError, Result};
use crate::keys::GaloisKeys;
use crate::ring::automorphism::rotation_element;
use crate::ring::poly::RnsPoly;

/// A slot-space linear map given by its nonzero diagonals.
#[derive(Debug, Clone)]
pub struct LinearTransform {
    slots: usize,
    diagonals: BTreeMap<usize, Vec<Complex64>>,
    n1: usize,
}

impl LinearTransform {
    /// From diagonals `k ↦ d_k` (k < slots, each of length `slots`). Errors: bad lengths/indices.
    pub fn new(slots: usize, diagonals: BTreeMap<usize, Vec<Complex64>>) -> Result<Self> {
        if slots == 0 || !slots.is_power_of_two() {
            return Err(CkksError::InvalidSlots(format!("{slots} slots")));
        }
        if diagonals.is_empty() {
            return Err(CkksError::InvalidInput("no diagonals".into()));
        }
        for (&k, d) in &diagonals {
            if k >= slots || d.len() != slots {
                return Err(CkksError::InvalidInput(format!(
                    "diagonal {k} of length {} for {slots} slots",
                    d.len()
                )));
            }
        }
        let span = diagonals.keys().last().copied().unwrap_or(0) + 1;
        let n1 = ((span as f64).sqrt().ceil() as usize)
            .next_power_of_two()
            .min(slots);
        Ok(LinearTransform {
            slots,
            diagonals,
            n1,
        })
    }

    /// Like [`LinearTransform::new`] with an explicit baby-step count n1 (a power of two ≤
    /// slots), for diagonal sets where the span-based default is poor (e.g. offsets clustered
    /// around 0 in both directions, as in the bootstrapping DFTs). Errors: as `new`, and
    /// [`CkksError::InvalidInput`] for a bad n1.
    pub fn with_baby_steps(
        slots: usize,
        diagonals: BTreeMap<usize, Vec<Complex64>>,
        n1: usize,
    ) -> Result<Self> {
        if n1 == 0 || !n1.is_power_of_two() || n1 > slots {
            return Err(CkksError::InvalidInput(format!(
                "baby-step count {n1} must be a power of two ≤ {slots}"
            )));
        }
        let mut lt = Self::new(slots, diagonals)?;
        lt.n1 = n1;
        Ok(lt)
    }

    /// From a dense `slots × slots` matrix (rows), keeping the nonzero diagonals.
    pub fn from_matrix(matrix: &[Vec<Complex64>]) -> Result<Self> {
        let n = matrix.len();
        if matrix.iter().any(|r| r.len() != n) {
            return Err(CkksError::InvalidInput("matrix must be square".into()));
        }
        let mut diagonals = BTreeMap::new();
        for k in 0..n {
            let d: Vec<Complex64> = (0..n).map(|j| matrix[j][(j + k) % n]).collect();
            if d.iter().any(|v| v.norm_sqr() > 0.0) {
                diagonals.insert(k, d);
            }
        }
        Self::new(n, diagonals)
    }

    /// Baby-step size n1.
    pub fn baby_steps(&self) -> usize {
        self.n1
    }

    /// The rotation steps whose Galois keys the transform needs.
    pub fn rotation_steps(&self) -> Vec<i64> {
        let mut steps: Vec<i64> = self
            .diagonals
            .keys()
            .flat_map(|&k| [(k % self.n1) as i64, (k - k % self.n1) as i64])
            .filter(|&s| s != 0)
            .collect();
        steps.sort_unstable();
        steps.dedup();
        steps
    }
}

/// A [`LinearTransform`] with its diagonals encoded once at one level (each rotated by its
/// giant step, over Q_ℓ·P, scale q_ℓ), for repeated application with
/// [`Evaluator::linear_transform_encoded`] (e.g. the bootstrapping DFTs): trades memory
/// (one polynomial of ℓ + 1 + K limbs per diagonal) for the per-call encoding.
#[derive(Debug, Clone)]
pub struct EncodedLinearTransform {
    slots: usize,
    level: usize,
    params_id: u64,
    baby_steps: Vec<usize>,
    /// giant step g ↦ (baby step b, encoded rot_{−g}(d_{g+b})).
    giants: BTreeMap<usize, Vec<(usize, RnsPoly)>>,
}

impl EncodedLinearTransform {
    /// The level the diagonals are encoded at (the input ciphertext's level).
    pub fn level(&self) -> usize {
        self.level
    }
    /// In-memory size of the encoded diagonals, bytes.
    pub fn size_bytes(&self) -> usize {
        self.giants
            .values()
            .flatten()
            .map(|(_, p)| p.data().len() * 8)
            .sum()
    }
}

impl LinearTransform {
    /// Encodes the diagonals for ciphertexts at `level` (see [`EncodedLinearTransform`]).
    /// Errors: level out of range, diagonals that do not fit the modulus.
    pub fn encode(&self, ctx: &CkksContext, level: usize) -> Result<EncodedLinearTransform> {
        ctx.check_level(level)?;
        let (n, n1) = (self.slots, self.n1);
        let pt_scale = ctx.params().q[level] as f64;
        let encoder = Encoder::new(ctx);
        let mut giants: BTreeMap<usize, Vec<(usize, RnsPoly)>> = BTreeMap::new();
        for (&k, d) in &self.diagonals {
            let g = k - k % n1;
            // rot_{−g}(d)[j] = d[j − g]
            let shifted: Vec<Complex64> = (0..n).map(|j| d[(j + n - g) % n]).collect();
            let pt = encoder.encode_ext(&shifted, n, level, pt_scale)?;
            giants.entry(g).or_default().push((k % n1, pt));
        }
        let mut baby_steps: Vec<usize> = self.diagonals.keys().map(|&k| k % n1).collect();
        baby_steps.sort_unstable();
        baby_steps.dedup();
        Ok(EncodedLinearTransform {
            slots: n,
            level,
            params_id: ctx.id(),
            baby_steps,
            giants,
        })
    }
}

impl Evaluator {
    /// y = M·x with BSGS and double-hoisted baby steps. Diagonals are encoded at the ciphertext's level
    /// with scale q_ℓ, so the output (not rescaled) has scale ct.scale·q_ℓ and returns to ct.scale
    /// after one [`Evaluator::rescale`]. Errors: slot mismatch, missing Galois keys.
    pub fn linear_transform(
        &self,
        ct: &Ciphertext,
        lt: &LinearTransform,
        gks: &GaloisKeys,
    ) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        let enc = lt.encode(&self.ctx, ct.level)?;
        self.linear_transform_encoded(ct, &enc, gks)
    }

    /// [`Evaluator::linear_transform`] with pre-encoded diagonals. Errors: parameter, level or
    /// slot mismatch, missing Galois keys.
    pub fn linear_transform_encoded(
        &self,
        ct: &Ciphertext,
        lt: &EncodedLinearTransform,
        gks: &GaloisKeys,
    ) -> Result<Ciphertext> {
        self.ctx.check_id(ct.params_id)?;
        self.ctx.check_id(lt.params_id)?;
        if ct.slots != lt.slots {
            return Err(CkksError::InvalidSlots(format!(
                "transform on {} slots, ciphertext has {}",
                lt.slots, ct.slots
            )));
        }
        if ct.level != lt.level {
            return Err(CkksError::LevelMismatch(ct.level, lt.level));
        }
        let level = ct.level;
        let pt_scale = self.ctx.params().q[level] as f64;
        // Look every key up (and check its level) before any work.
        let log_n = self.ctx.params().log_n;
        let baby_keys = lt
            .baby_steps
            .iter()
            .map(|&b| {
                let g = rotation_element(log_n, b as i64);
                if g == 1 {
                    return Ok(None);
                }
                let key = gks.get(g, Some(b as i64))?;
                key.key.check(&self.ctx, level)?;
                Ok(Some(key))
            })
            .collect::<Result<Vec<_>>>()?;
        for &g in lt.giants.keys().filter(|&&g| g != 0) {
            gks.for_step(log_n, g as i64)?.key.check(&self.ctx, level)?;
        }
        // Double hoisting: baby rotations stay in Q_ℓ·P (scaled by P).
        let hoisted = self.hoist(ct)?;
        let babies: BTreeMap<usize, (RnsPoly, RnsPoly)> = lt
            .baby_steps
            .par_iter()
            .zip(baby_keys.par_iter())
            .map(|(&b, key)| (b, self.rotate_ext(&hoisted, *key)))
            .collect();
        let ext_tables = self.ctx.ext_tables(level);
        let n_ring = self.ctx.n();
        let mut result: Option<Ciphertext> = None;
        for (&g, terms) in &lt.giants {
            let ext = ext_tables.len();
            let mut inner0 = RnsPoly::zero(n_ring, ext);
            let mut inner1 = RnsPoly::zero(n_ring, ext);
            for (b, pt) in terms {
                let (r0, r1) = &babies[b];
                inner0.mul_acc(pt, r0, &ext_tables);
                inner1.mul_acc(pt, r1, &ext_tables);
            }
            let (u0, u1) = rayon::join(
                || mod_down(&self.ctx, &inner0, level, &|_, _| {}),
                || mod_down(&self.ctx, &inner1, level, &|_, _| {}),
            );
            let inner = Ciphertext {
                parts: vec![u0, u1],
                level,
                scale: ct.scale * pt_scale,
                slots: ct.slots,
                params_id: ct.params_id,
            };
            let moved = self.rotate(&inner, g as i64, gks)?;
            result = Some(match result {
                None => moved,
                Some(acc) => self.add(&acc, &moved)?,
            });
        }
        result.ok_or_else(|| CkksError::InvalidInput("empty transform".into()))
    }
}
