//! Canonical-embedding encoder (Cheon–Kim–Kim–Song, ASIACRYPT 2017, §3.2–3.3) with full and
//! sparse slot counts.
//!
//! With n slots (a power of two, n ≤ N/2), a message z ∈ C^n is the polynomial
//! m(Y) = Σ_{k<2n} a_k Y^k, Y = X^{N/(2n)}, with z_j = m(ξ^{5^j}), ξ = e^{iπ/(2n)}. Writing
//! w_k = a_k + i·a_{k+n} and 5^j ≡ 1 + 4t_j (mod 4n) gives z_j = DFT_n(w_k ξ^k)\[t_j\], so encoding
//! is a permutation, one inverse complex FFT of size n and a twist; decoding is the reverse. The
//! coefficients are multiplied by the scale Δ and rounded.

mod fft;

use num_complex::Complex64;
use rayon::prelude::*;

use crate::context::CkksContext;
use crate::error::{CkksError, Result};
use crate::plaintext::Plaintext;
use crate::ring::crt::CrtReconstructor;
use crate::ring::poly::RnsPoly;
pub use fft::EncoderTables;

/// Encodes and decodes slot vectors.
#[derive(Debug, Clone)]
pub struct Encoder {
    ctx: CkksContext,
}

fn check_slots(ctx: &CkksContext, slots: usize) -> Result<()> {
    if slots == 0 || !slots.is_power_of_two() || slots > ctx.n() / 2 {
        return Err(CkksError::InvalidSlots(format!(
            "{slots} slots: must be a power of two in 1..={}",
            ctx.n() / 2
        )));
    }
    Ok(())
}

impl Encoder {
    /// An encoder for `ctx`.
    pub fn new(ctx: &CkksContext) -> Self {
        Encoder { ctx: ctx.clone() }
    }

    /// Scaled, rounded integer coefficients (as f64, length N) of the encoding of `values`, with
    /// the checks documented on [`Encoder::encode_complex`].
    fn coefficients(
        &self,
        values: &[Complex64],
        slots: usize,
        level: usize,
        scale: f64,
    ) -> Result<Vec<f64>> {
        check_slots(&self.ctx, slots)?;
        self.ctx.check_level(level)?;
        if values.len() > slots {
            return Err(CkksError::InvalidInput(format!(
                "{} values for {slots} slots",
                values.len()
            )));
        }
        if values
            .iter()
            .any(|v| !v.re.is_finite() || !v.im.is_finite())
        {
            return Err(CkksError::InvalidInput("non-finite value".into()));
        }
        if !(scale.is_finite() && scale >= 1.0) {
            return Err(CkksError::InvalidInput(format!(
                "scale {scale} must be ≥ 1"
            )));
        }
        let t = &self.ctx.inner.encoder;
        let mut w = vec![Complex64::new(0.0, 0.0); slots];
        let perm = t.slot_permutation(slots);
        for (j, v) in values.iter().enumerate() {
            w[perm[j]] = *v;
        }
        t.inverse_fft(&mut w);
        t.untwist(&mut w);
        let n = self.ctx.n();
        let gap = n / (2 * slots);
        let log_q = self.ctx.params().q[..=level]
            .iter()
            .map(|&q| (q as f64).log2())
            .sum::<f64>();
        let limit = (log_q - 1.0).exp2();
        let mut coeffs = vec![0.0f64; n];
        for (k, c) in w.iter().enumerate() {
            coeffs[k * gap] = (c.re * scale).round();
            coeffs[(k + slots) * gap] = (c.im * scale).round();
        }
        if coeffs.iter().any(|c| c.abs() >= limit) {
            return Err(CkksError::Overflow(format!(
                "encoded coefficient exceeds Q_{level}/2 = 2^{:.1} at scale 2^{:.1}",
                log_q - 1.0,
                scale.log2()
            )));
        }
        Ok(coeffs)
    }

    /// Encodes up to `slots` complex values (zero-padded) at `level` and scale `scale`
    /// (e.g. 2^40). Errors: bad slot count, values longer than `slots` or non-finite, level out
    /// of range, or coefficients that do not fit Q_ℓ/2 ([`CkksError::Overflow`]).
    pub fn encode_complex(
        &self,
        values: &[Complex64],
        slots: usize,
        level: usize,
        scale: f64,
    ) -> Result<Plaintext> {
        let coeffs = self.coefficients(values, slots, level, scale)?;
        let poly = coeffs_to_ntt(&coeffs, &self.ctx.q_tables(level));
        Ok(Plaintext {
            poly,
            level,
            scale,
            slots,
            params_id: self.ctx.id(),
        })
    }

    /// Encodes over the extended basis Q_ℓ·P (NTT form), for products with ciphertexts kept in
    /// Q_ℓ·P by double hoisting.
    pub(crate) fn encode_ext(
        &self,
        values: &[Complex64],
        slots: usize,
        level: usize,
        scale: f64,
    ) -> Result<RnsPoly> {
        let coeffs = self.coefficients(values, slots, level, scale)?;
        Ok(coeffs_to_ntt(&coeffs, &self.ctx.ext_tables(level)))
    }

    /// Encodes real values (imaginary parts zero).
    pub fn encode_real(
        &self,
        values: &[f64],
        slots: usize,
        level: usize,
        scale: f64,
    ) -> Result<Plaintext> {
        let v: Vec<Complex64> = values.iter().map(|&x| Complex64::new(x, 0.0)).collect();
        self.encode_complex(&v, slots, level, scale)
    }

    /// Decodes a plaintext to its `slots` complex values.
    pub fn decode_complex(&self, pt: &Plaintext) -> Result<Vec<Complex64>> {
        self.ctx.check_id(pt.params_id)?;
        let mut poly = pt.poly.clone();
        poly.intt(&self.ctx.q_tables(pt.level));
        Ok(self.decode_coeff_poly(&poly, pt.level, pt.scale, pt.slots))
    }

    /// Decodes real parts.
    pub fn decode_real(&self, pt: &Plaintext) -> Result<Vec<f64>> {
        Ok(self.decode_complex(pt)?.into_iter().map(|c| c.re).collect())
    }

    /// Decoding of a coefficient-form polynomial at `level` (used by decryption).
    pub(crate) fn decode_coeff_poly(
        &self,
        poly: &RnsPoly,
        level: usize,
        scale: f64,
        slots: usize,
    ) -> Vec<Complex64> {
        let n = self.ctx.n();
        let gap = n / (2 * slots);
        let idx: Vec<usize> = (0..2 * slots).map(|k| k * gap).collect();
        let crt = CrtReconstructor::new(self.ctx.q_moduli(level));
        let vals = crt.centered_f64(poly.data(), n, &idx);
        let mut w: Vec<Complex64> = (0..slots)
            .map(|k| Complex64::new(vals[k] / scale, vals[k + slots] / scale))
            .collect();
        let t = &self.ctx.inner.encoder;
        t.twist(&mut w);
        t.forward_fft(&mut w);
        let perm = t.slot_permutation(slots);
        perm.iter().map(|&p| w[p]).collect()
    }
}

/// Integer-valued f64 coefficients → RNS polynomial in NTT form over `tables`.
fn coeffs_to_ntt(coeffs: &[f64], tables: &[&crate::ring::ntt::NttTable]) -> RnsPoly {
    let mut poly = RnsPoly::zero(coeffs.len(), tables.len());
    poly.par_limbs_mut()
        .zip(tables.par_iter())
        .for_each(|(limb, tab)| {
            let m = tab.modulus();
            for (x, &c) in limb.iter_mut().zip(coeffs) {
                *x = reduce_f64(m, c);
            }
            tab.forward(limb);
        });
    poly
}

/// Reduces a rounded f64 (any magnitude below 2^1023) modulo q exactly.
fn reduce_f64(m: &crate::ring::modulus::Modulus, c: f64) -> u64 {
    if c.abs() < 9.2e18 {
        return m.reduce_i64(c as i64);
    }
    // c = mant · 2^exp with |mant| < 2^53 exactly.
    let exp = c.abs().log2().floor() as i32 - 52;
    let mant = (c / (exp as f64).exp2()) as i64;
    let r = m.reduce_i64(mant);
    m.mul(r, m.pow(2, exp as u64))
}
