//! Polynomial approximation of the non-linear functions transformers use, on calibrated
//! domains: Chebyshev interpolants of the least degree meeting a target error, Newton iterations
//! for `1/x` and `1/√x`, and the baby-step giant-step plan that evaluates a polynomial of
//! degree `d` in depth ⌈log2(d + 1)⌉, one more from degree 8 (Paterson–Stockmeyer; Bossuat et
//! al., EUROCRYPT 2021, §4; the kernel is `lower::kernels::polynomial`).

pub mod chebyshev;
pub mod newton;

use serde::Serialize;

/// A function the approximation pass replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Function {
    Exp,
    Erf,
    Tanh,
    Sigmoid,
    Sqrt,
    GeluErf,
    GeluTanh,
    Silu,
}

impl Function {
    pub fn evaluate(self, x: f64) -> f64 {
        match self {
            Function::Exp => x.exp(),
            Function::Erf => libm::erf(x),
            Function::Tanh => x.tanh(),
            Function::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Function::Sqrt => x.sqrt(),
            Function::GeluErf => 0.5 * x * (1.0 + libm::erf(x / std::f64::consts::SQRT_2)),
            Function::GeluTanh => {
                let c = (2.0 / std::f64::consts::PI).sqrt();
                0.5 * x * (1.0 + (c * (x + 0.044715 * x * x * x)).tanh())
            }
            Function::Silu => x / (1.0 + (-x).exp()),
        }
    }
}

/// Multiplicative depth of evaluating a degree-`d` polynomial by baby-step giant-step
/// (`lower::kernels::polynomial::chebyshev`), counting scalar multiplications as levels:
/// `D = ⌈log2(d + 1)⌉` for `d ≤ 7` and `D + 1` for `d ≥ 8`. The domain's affine map is folded
/// into scaled baby steps; with the four or more baby steps of `d ≥ 8` the leaves' scalar
/// multiplications on the deepest baby steps cost one level more than `D`, which with the
/// plan's multiplication count cannot be avoided (a leaf of degree `k − 1 > k/2` is not a scalar
/// combination of values one level lower).
pub fn evaluation_depth(degree: usize) -> u32 {
    let log = (degree + 1).next_power_of_two().trailing_zeros();
    if degree >= 8 { log + 1 } else { log }
}

/// How a degree-`d` polynomial is evaluated: baby steps `T_0 … T_{k−1}` and giant steps
/// `T_k, T_2k, T_4k, …` (Paterson–Stockmeyer in the Chebyshev basis). For
/// `D = ⌈log2(d + 1)⌉ ≥ 4`, `k = 2^⌈D/2⌉` and `⌊D/2⌋` giant steps; for `D ≤ 3`, `k = 2` and
/// `D − 1` giant steps (scaled, which keeps degrees 4 … 7 at depth 3 for the multiplications of
/// `k = 4`, one more at degree 7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EvaluationPlan {
    pub degree: usize,
    pub baby_steps: usize,
    pub giant_steps: usize,
    /// [`evaluation_depth`].
    pub depth: u32,
    /// Ciphertext-ciphertext multiplications per ciphertext, for nonzero coefficients.
    pub nonscalar_multiplications: usize,
}

impl EvaluationPlan {
    pub fn for_degree(degree: usize) -> Self {
        let log = (degree + 1).next_power_of_two().trailing_zeros();
        // Baby steps up to 2^⌈D/2⌉ (2 up to D = 3), giant steps for the remaining powers of two.
        let baby_log = if log <= 3 {
            log.min(1)
        } else {
            log.div_ceil(2)
        };
        let baby_steps = 1usize << baby_log;
        let giant_steps = (log - baby_log) as usize;
        let blocks = (degree + 1).div_ceil(baby_steps);
        // The last split's quotient is the constant c_d when k divides d: a scalar multiplication.
        let constant_quotient = degree >= baby_steps && degree.is_multiple_of(baby_steps);
        Self {
            degree,
            baby_steps,
            giant_steps,
            depth: evaluation_depth(degree),
            nonscalar_multiplications: baby_steps.saturating_sub(2)
                + giant_steps
                + blocks.saturating_sub(1)
                - usize::from(constant_quotient),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_log_of_degree_plus_one_and_one_more_from_degree_eight() {
        assert_eq!(evaluation_depth(0), 0);
        assert_eq!(evaluation_depth(1), 1);
        assert_eq!(evaluation_depth(3), 2);
        assert_eq!(evaluation_depth(4), 3);
        assert_eq!(evaluation_depth(7), 3);
        assert_eq!(evaluation_depth(8), 5);
        assert_eq!(evaluation_depth(63), 7);
    }

    #[test]
    fn plans_cover_the_degree() {
        for degree in [1, 3, 7, 15, 27, 63, 119] {
            let plan = EvaluationPlan::for_degree(degree);
            assert!(plan.baby_steps << plan.giant_steps > degree, "{plan:?}");
        }
    }

    #[test]
    fn multiplication_counts() {
        let count = |d| EvaluationPlan::for_degree(d).nonscalar_multiplications;
        // Degree 2: P_2, then c_2 P_2 by a scalar; degree 3: P_2 and one product; degree 7: P_2,
        // P_4 and three products.
        assert_eq!(
            [0, 1, 2, 3, 4, 5, 6, 7, 8].map(count),
            [0, 0, 1, 2, 3, 4, 4, 5, 5]
        );
        // Degree 63: T_2 … T_7, T_8, T_16, T_32, seven products.
        assert_eq!(count(63), 6 + 3 + 7);
    }
}
