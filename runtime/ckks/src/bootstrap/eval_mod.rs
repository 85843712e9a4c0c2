//! EvalMod: homomorphic reduction modulo q_0 of the raised coefficients.
//!
//! After CoeffsToSlots the slots hold x = I + m/q_0 (I integral, |I| ≤ K, |m/q_0| ≪ 1), scaled to
//! y = x/K' ∈ [−1, 1]. We evaluate sin(2πx) = cos(2π(x − 1/4)) as the scaled cosine
//! cos(2π(x − 1/4)/2^r), a Chebyshev interpolant in y, followed by r double-angle steps
//! cos 2θ = 2cos²θ − 1 (Han–Ki, CT-RSA 2020, §3.2; Bossuat et al., EUROCRYPT 2021, §4.3).
//! Then sin(2πx) = sin(2π·m/q_0) ≈ 2π·m/q_0 with relative error (2π·m/q_0)²/6; the factor
//! q_0/(2π) is folded into SlotsToCoeffs.
//!
//! The range K comes from the secret's Hamming weight h: I_j = round((c_0 + c_1·s)_j/q_0), and
//! for uniform c_1 mod q_0 each (c_1·s)_j/q_0 is a sum of h independent uniforms on
//! (−1/2, 1/2), plus 1/2 for c_0 and rounding; we bound it with the Gaussian tail of variance
//! (h + 1)/12 and a union bound over the N coefficients (the usual heuristic of Cheon et al.
//! and Bossuat et al.).

use crate::ciphertext::Ciphertext;
use crate::error::{CkksError, Result};
use crate::keys::RelinKey;
use crate::ops::Evaluator;

use super::poly_eval::{
    chebyshev_depth, chebyshev_eval, chebyshev_interpolate, evaluate_chebyshev,
};

/// Complementary error function (W. J. Cody's rational Chebyshev form via Numerical Recipes
/// `erfcc`, relative error below 1.2·10^-7, enough to size K).
fn erfc(x: f64) -> f64 {
    let z = x.abs();
    let t = 1.0 / (1.0 + 0.5 * z);
    let poly = -z * z - 1.265_512_23
        + t * (1.000_023_68
            + t * (0.374_091_96
                + t * (0.096_784_18
                    + t * (-0.186_288_06
                        + t * (0.278_868_07
                            + t * (-1.135_203_98
                                + t * (1.488_515_87 + t * (-0.822_152_23 + t * 0.170_872_77))))))));
    let r = t * poly.exp();
    if x >= 0.0 { r } else { 2.0 - r }
}

/// The integer bound K on ‖I‖_∞ after ModRaise with a secret of Hamming weight h on N
/// coefficients, such that P(‖I‖_∞ > K) ≤ 2^−`log2_failure` under the Gaussian heuristic
/// (σ² = (h + 1)/12, union bound over N). Returns (K, σ).
pub fn range_bound(hamming_weight: usize, n: usize, log2_failure: f64) -> (usize, f64) {
    let sigma = ((hamming_weight as f64 + 1.0) / 12.0).sqrt();
    let target = (-log2_failure).exp2() / n as f64;
    // Smallest integer K with P(|N(0, σ²)| > K + 1/2) ≤ target (I rounds x to an integer).
    let mut k = 1usize;
    while erfc((k as f64 + 0.5) / (sigma * std::f64::consts::SQRT_2)) > target {
        k += 1;
    }
    (k, sigma)
}

/// The EvalMod polynomial and its shape.
#[derive(Debug, Clone)]
pub struct EvalModPoly {
    /// K': the slots hold y = x/K', |x| ≤ K'.
    pub interval: f64,
    /// Number r of double-angle steps.
    pub double_angle: u32,
    /// Chebyshev coefficients of cos(2π(K'y − 1/4)/2^r) on [−1, 1].
    pub coeffs: Vec<f64>,
    /// max |cos(2π(K'y − 1/4)/2^r) − p(y)| on a fine grid of [−1, 1].
    pub approx_error: f64,
}

impl EvalModPoly {
    /// The smallest-depth interpolant of cos(2π(K'y − 1/4)/2^r) whose error is below 2^−
    /// `log2_error` (depth at most 9, degree 2^depth − 1), with negligible tail coefficients
    /// (below 2^−(`log2_error` + 6)) dropped. Errors: [`CkksError::InvalidParameters`] if no
    /// degree up to 511 reaches the target.
    pub fn new(interval: f64, double_angle: u32, log2_error: f64) -> Result<Self> {
        let two_pi = 2.0 * std::f64::consts::PI;
        let scale = (double_angle as f64).exp2();
        let f = move |y: f64| (two_pi * (interval * y - 0.25) / scale).cos();
        let target = (-log2_error).exp2();
        for depth in 3..=9u32 {
            let mut coeffs = chebyshev_interpolate(f, (1usize << depth) - 1);
            let tail = target / 64.0;
            while coeffs.len() > 2 && coeffs.last().is_some_and(|c| c.abs() < tail) {
                coeffs.pop();
            }
            let approx_error = (0..=4000)
                .map(|i| {
                    let y = -1.0 + i as f64 / 2000.0;
                    (chebyshev_eval(&coeffs, y) - f(y)).abs()
                })
                .fold(0.0, f64::max);
            if approx_error < target {
                return Ok(EvalModPoly {
                    interval,
                    double_angle,
                    coeffs,
                    approx_error,
                });
            }
        }
        Err(CkksError::InvalidParameters(format!(
            "no Chebyshev interpolant of degree < 512 reaches 2^-{log2_error} on K' = {interval} \
             with {double_angle} double-angle steps"
        )))
    }

    /// Levels consumed: the interpolant's depth plus r, plus 2 with the arcsine correction.
    pub fn depth(&self, arcsine: bool) -> usize {
        chebyshev_depth(self.coeffs.len() - 1)
            + self.double_angle as usize
            + 2 * usize::from(arcsine)
    }

    /// The cleartext EvalMod (for tests): sin(2πx) through the same approximation, followed by
    /// arcsin(t) ≈ t + t³/6 when `arcsine`.
    pub fn eval_clear(&self, x: f64, arcsine: bool) -> f64 {
        let mut c = chebyshev_eval(&self.coeffs, x / self.interval);
        for _ in 0..self.double_angle {
            c = 2.0 * c * c - 1.0;
        }
        if arcsine { c + c * c * c / 6.0 } else { c }
    }

    /// Homomorphic EvalMod: `ct` holds y = x/K' (real slots); returns sin(2πx), or with
    /// `arcsine` its correction arcsin(sin 2πx) ≈ 2π·(x − round(x)) through t + t³/6 (Lee et
    /// al., "High-precision bootstrapping of RNS-CKKS", EUROCRYPT 2021 §3.2: the error of
    /// sin(2πε)/(2π) as an estimate of ε drops from (2πε)³/6 to 3(2πε)⁵/40), at `out_level`
    /// with scale exactly `out_scale`. Needs ct.level() ≥ out_level + [`Self::depth`] and a
    /// relinearization key up to ct.level(). Intermediate scales are chosen backwards
    /// (s_{i−1} = sqrt(s_i·q_λ) through the squarings) so that every step lands exactly.
    pub fn evaluate(
        &self,
        eval: &Evaluator,
        rlk: &RelinKey,
        ct: &Ciphertext,
        arcsine: bool,
        out_level: usize,
        out_scale: f64,
    ) -> Result<Ciphertext> {
        let r = self.double_angle as usize;
        let q = &eval.context().params().q;
        let extra = 2 * usize::from(arcsine);
        let angle_level = out_level + extra;
        // Scale of the double-angle output: the arcsine's input is kept near its prime.
        let angle_scale = if arcsine {
            q[angle_level] as f64
        } else {
            out_scale
        };
        let mut scale = angle_scale;
        for i in 0..r {
            // the i-th squaring from the end reads level angle_level + i + 1
            scale = (scale * q[angle_level + i + 1] as f64).sqrt();
        }
        let mut c = evaluate_chebyshev(eval, rlk, ct, &self.coeffs, angle_level + r, scale)?;
        for _ in 0..r {
            let sq = eval.mul_relin(&c, &c, rlk)?;
            let two = eval.add(&sq, &sq)?;
            c = eval.rescale(&eval.add_const(&two, -1.0)?)?;
        }
        c.set_scale(angle_scale);
        if !arcsine {
            return Ok(c);
        }
        // t + (t/6)·t², two levels, landing on out_scale.
        let (q1, q2) = (q[out_level + 1] as f64, q[out_level + 2] as f64);
        let t2 = eval.rescale(&eval.mul_relin(&c, &c, rlk)?)?;
        let a_scale = out_scale * q1 / t2.scale(); // scale of t/6 after its rescale
        let a = eval.rescale(&eval.mul_const(&c, 1.0 / 6.0, a_scale * q2 / c.scale())?)?;
        let mut cubic = eval.mul_relin(&a, &t2, rlk)?;
        cubic.set_scale(out_scale * q1);
        let t = eval.level_down(&c, out_level + 1)?;
        let mut lin = eval.mul_const(&t, 1.0, out_scale * q1 / t.scale())?;
        lin.set_scale(out_scale * q1);
        let mut out = eval.rescale(&eval.add(&cubic, &lin)?)?;
        out.set_scale(out_scale);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_bound_grows_with_weight_and_confidence() {
        let (k32, s32) = range_bound(32, 1 << 16, 40.0);
        assert!((s32 - (33.0f64 / 12.0).sqrt()).abs() < 1e-12);
        assert!((12..=16).contains(&k32), "K = {k32}");
        assert!(range_bound(192, 1 << 16, 40.0).0 > k32);
        assert!(range_bound(32, 1 << 16, 80.0).0 > k32);
        assert!((erfc(1.0) - 0.157_299_207).abs() < 1e-7);
    }

    #[test]
    fn eval_mod_polynomial_approximates_the_sine() {
        let p = EvalModPoly::new(15.0, 3, 45.0).unwrap();
        assert!(p.approx_error < 2f64.powi(-45));
        for i in -14i32..=14 {
            for eps in [-1e-4, 0.0, 3e-5] {
                let x = i as f64 + eps;
                let want = (2.0 * std::f64::consts::PI * x).sin();
                assert!((p.eval_clear(x, false) - want).abs() < 1e-10, "x = {x}");
                let asin = 2.0 * std::f64::consts::PI * eps;
                assert!((p.eval_clear(x, true) - asin).abs() < 1e-10, "x = {x}");
            }
        }
    }
}
