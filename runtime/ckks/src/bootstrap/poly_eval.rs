//! Polynomials in the Chebyshev basis: interpolation and evaluation in the clear, and homomorphic
//! evaluation at optimal depth ⌈log2(d + 1)⌉ with exact scale management.
//!
//! Homomorphic algorithm (Bossuat et al., EUROCRYPT 2021, §4.2, "scale-invariant" evaluation;
//! Lee et al., "High-precision bootstrapping of RNS-CKKS", §4): p = Σ_k c_k T_k(y) is split
//! recursively as p = q·T_{2^k} + r with 2^k ≤ deg p < 2^{k+1} (Chebyshev long division, using
//! 2·T_g·T_j = T_{g+j} + T_{|g−j|}); a split costs one product and one level, so the quotient
//! chain fixes the depth at ⌈log2(d + 1)⌉. Remainders have a level of slack, so pieces of degree
//! < 8 whose baby steps T_1 … T_7 (depth ≤ 3) sit above the target level are evaluated directly
//! as Σ c_i·T_i with one rescale (baby-step giant-step; the tight quotient chain ends in
//! degree-1 leaves). Powers T_i are computed once, on demand. For d = 63 this takes about 20
//! products instead of the ≈ 37 of pure splitting.
//!
//! Scale management: the caller asks for the result at level ℓ and scale S. A split asks its
//! quotient for scale S·q_{ℓ+1}/scale(T_g) at level ℓ + 1, so that quotient × T_g rescales to
//! exactly S at level ℓ, and its remainder for S at level ℓ. Leaves c_0 + c_1·y encode c_1 at
//! scale S·q_{ℓ+1}/scale(y) so they also land at exactly S. Whatever the drift of the primes,
//! the result therefore has the requested level and scale (up to f64 rounding of the metadata).

use std::collections::BTreeMap;

use crate::ciphertext::Ciphertext;
use crate::error::{CkksError, Result};
use crate::keys::RelinKey;
use crate::ops::Evaluator;

/// Chebyshev coefficients c_0 … c_d of the degree-d interpolant of `f` on [−1, 1] at the d + 1
/// Chebyshev nodes cos(π(j + 1/2)/(d + 1)), so that f(y) ≈ Σ_k c_k T_k(y).
pub fn chebyshev_interpolate(f: impl Fn(f64) -> f64, degree: usize) -> Vec<f64> {
    let n = degree + 1;
    let theta: Vec<f64> = (0..n)
        .map(|j| std::f64::consts::PI * (j as f64 + 0.5) / n as f64)
        .collect();
    let values: Vec<f64> = theta.iter().map(|&t| f(t.cos())).collect();
    (0..n)
        .map(|k| {
            let s: f64 = values
                .iter()
                .zip(&theta)
                .map(|(v, &t)| v * (k as f64 * t).cos())
                .sum();
            let c = 2.0 * s / n as f64;
            if k == 0 { c / 2.0 } else { c }
        })
        .collect()
}

/// Σ_k c_k T_k(y) in the clear (Clenshaw recurrence).
pub fn chebyshev_eval(coeffs: &[f64], y: f64) -> f64 {
    let (mut b1, mut b2) = (0.0, 0.0);
    for &c in coeffs.iter().skip(1).rev() {
        let b0 = 2.0 * y * b1 - b2 + c;
        b2 = b1;
        b1 = b0;
    }
    coeffs.first().copied().unwrap_or(0.0) + y * b1 - b2
}

/// Degree of a coefficient vector (index of the last nonzero coefficient; 0 for none).
fn degree(coeffs: &[f64]) -> usize {
    coeffs.iter().rposition(|&c| c != 0.0).unwrap_or(0)
}

/// Multiplicative depth (levels) of [`evaluate_chebyshev`] for a degree-d polynomial:
/// ⌈log2(d + 1)⌉, and 1 for d ≤ 1 (the constant product of the leaf).
pub fn chebyshev_depth(degree: usize) -> usize {
    (usize::BITS - degree.leading_zeros()).max(1) as usize
}

/// Chebyshev long division by T_g: p = q·T_g + r with deg r < g, for deg p < 2g.
fn divide(coeffs: &[f64], g: usize) -> (Vec<f64>, Vec<f64>) {
    let d = degree(coeffs);
    let mut r = coeffs[..g.min(coeffs.len())].to_vec();
    let mut q = vec![0.0; d + 1 - g];
    q[0] = coeffs[g];
    for i in g + 1..=d {
        // c_i T_i = 2 c_i T_g T_{i−g} − c_i T_{2g−i}
        q[i - g] = 2.0 * coeffs[i];
        r[2 * g - i] -= coeffs[i];
    }
    (q, r)
}

/// Largest degree + 1 of a leaf evaluated directly as Σ c_i·T_i (baby steps T_1 … T_7).
const BABY: usize = 8;

/// ⌈log2 i⌉: the level T_i sits below the input (T_1 at the input level).
fn power_depth(i: usize) -> usize {
    if i <= 1 {
        0
    } else {
        (usize::BITS - (i - 1).leading_zeros()) as usize
    }
}

/// Homomorphic Chebyshev evaluation state: the input y = T_1 and the powers computed so far.
struct Powers<'a> {
    eval: &'a Evaluator,
    rlk: &'a RelinKey,
    /// Level of the input y.
    top: usize,
    /// T_i at level top − ⌈log2 i⌉.
    t: BTreeMap<usize, Ciphertext>,
}

impl Powers<'_> {
    /// T_i: T_{2a} = 2·T_a² − 1 and T_{a+b} = 2·T_a·T_b − T_{a−b} (a the largest power of two
    /// below i), one product each, at depth ⌈log2 i⌉. The subtracted term is multiplied by
    /// 1 at the product's scale so that both scales match exactly before the rescale.
    fn power(&mut self, i: usize) -> Result<Ciphertext> {
        if let Some(t) = self.t.get(&i) {
            return Ok(t.clone());
        }
        let a = 1usize << (usize::BITS - 1 - (i - 1).leading_zeros());
        let b = i - a;
        let (ta, tb) = (self.power(a)?, self.power(b)?);
        let level = ta.level().min(tb.level());
        let (ta, tb) = (
            self.eval.level_down(&ta, level)?,
            self.eval.level_down(&tb, level)?,
        );
        let prod = self.eval.mul_relin(&ta, &tb, self.rlk)?;
        let two = self.eval.add(&prod, &prod)?;
        let sum = if a == b {
            self.eval.add_const(&two, -1.0)?
        } else {
            let tc = self.eval.level_down(&self.power(a - b)?, level)?;
            let mut tc = self.eval.mul_const(&tc, 1.0, two.scale() / tc.scale())?;
            tc.set_scale(two.scale());
            self.eval.sub(&two, &tc)?
        };
        let t = self.eval.rescale(&sum)?;
        self.t.insert(i, t.clone());
        Ok(t)
    }

    /// Σ_{i ≥ 1} c_i·T_i + c_0 at `level` and exactly `scale`, each term's constant encoded at
    /// scale·q_{ℓ+1}/scale(T_i) so that the sum takes a single rescale. Needs every T_i with
    /// c_i ≠ 0 at a level above `level`.
    fn direct(&mut self, coeffs: &[f64], level: usize, scale: f64) -> Result<Ciphertext> {
        let target = scale * self.eval.context().params().q[level + 1] as f64;
        let mut acc: Option<Ciphertext> = None;
        for (i, &c) in coeffs.iter().enumerate().skip(1) {
            if c == 0.0 && !(i == 1 && acc.is_none()) {
                continue;
            }
            let t = self.eval.level_down(&self.power(i)?, level + 1)?;
            let mut term = self.eval.mul_const(&t, c, target / t.scale())?;
            term.set_scale(target);
            acc = Some(match acc {
                None => term,
                Some(a) => self.eval.add(&a, &term)?,
            });
        }
        let acc = acc.ok_or_else(|| CkksError::InvalidInput("empty leaf".into()))?;
        let mut out = self.eval.rescale(&acc)?;
        out.set_scale(scale);
        self.eval.add_const(&out, coeffs[0])
    }

    /// Σ_k c_k T_k at `level` and exactly `scale`.
    fn eval(&mut self, coeffs: &[f64], level: usize, scale: f64) -> Result<Ciphertext> {
        let d = degree(coeffs);
        // Direct evaluation when the leaf is small and its powers sit above `level` (always for
        // d ≤ 1; for larger d only where a split would leave a level unused).
        if d <= 1 || (d < BABY && self.top > level + power_depth(d)) {
            let mut leaf = coeffs[..=d].to_vec();
            leaf.resize(leaf.len().max(2), 0.0);
            return self.direct(&leaf, level, scale);
        }
        let q_next = self.eval.context().params().q[level + 1] as f64;
        let k = (usize::BITS - 1 - d.leading_zeros()) as usize;
        let (q, r) = divide(&coeffs[..=d], 1 << k);
        let tg = self.eval.level_down(&self.power(1 << k)?, level + 1)?;
        let qc = self.eval(&q, level + 1, scale * q_next / tg.scale())?;
        let mut prod = self
            .eval
            .rescale(&self.eval.mul_relin(&qc, &tg, self.rlk)?)?;
        prod.set_scale(scale);
        if r.iter().all(|&c| c == 0.0) {
            return Ok(prod);
        }
        let rc = self.eval(&r, level, scale)?;
        self.eval.add(&prod, &rc)
    }
}

/// Evaluates p(y) = Σ_k c_k T_k(y) on the slots of `y` (values in [−1, 1] for a stable result),
/// returning a ciphertext at `out_level` with scale exactly `out_scale`.
///
/// Needs y.level() ≥ out_level + [`chebyshev_depth`]\(d\) and a relinearization key up to
/// y.level(). Costs about d/4 + log2 d + 4 ct-ct products for d ≥ 8. Errors: [`CkksError::LevelTooLow`],
/// [`CkksError::InvalidInput`] for an empty or non-finite coefficient vector, and the errors of
/// the underlying operations (keys, levels).
pub fn evaluate_chebyshev(
    eval: &Evaluator,
    rlk: &RelinKey,
    y: &Ciphertext,
    coeffs: &[f64],
    out_level: usize,
    out_scale: f64,
) -> Result<Ciphertext> {
    if coeffs.is_empty() || coeffs.iter().any(|c| !c.is_finite()) {
        return Err(CkksError::InvalidInput(
            "Chebyshev coefficients must be non-empty and finite".into(),
        ));
    }
    if !(out_scale.is_finite() && out_scale >= 1.0) {
        return Err(CkksError::InvalidInput(format!(
            "output scale {out_scale} must be ≥ 1"
        )));
    }
    let needed = out_level + chebyshev_depth(degree(coeffs));
    if y.level() < needed {
        return Err(CkksError::LevelTooLow {
            needed,
            level: y.level(),
        });
    }
    let mut powers = Powers {
        eval,
        rlk,
        top: y.level(),
        t: BTreeMap::from([(1, y.clone())]),
    };
    powers.eval(coeffs, out_level, out_scale)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolation_and_division_match_the_function() {
        let f = |y: f64| (3.0 * y).sin() + 0.25 * y * y;
        let c = chebyshev_interpolate(f, 31);
        for i in 0..=100 {
            let y = -1.0 + 0.02 * i as f64;
            assert!((chebyshev_eval(&c, y) - f(y)).abs() < 1e-13);
        }
        // p = q·T_16 + r, checked pointwise.
        let (q, r) = divide(&c, 16);
        for i in 0..=20 {
            let y: f64 = -1.0 + 0.1 * i as f64;
            let t16 = (16.0 * y.acos()).cos();
            let back = chebyshev_eval(&q, y) * t16 + chebyshev_eval(&r, y);
            assert!((back - chebyshev_eval(&c, y)).abs() < 1e-12);
        }
        assert_eq!(chebyshev_depth(0), 1);
        assert_eq!(chebyshev_depth(1), 1);
        assert_eq!(chebyshev_depth(31), 5);
        assert_eq!(chebyshev_depth(32), 6);
    }
}
