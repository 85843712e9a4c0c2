//! Polynomial approximation of the non-linear functions transformers use, on calibrated
//! domains: Chebyshev interpolants of the least degree meeting a target error, Newton iterations
//! for `1/x` and `1/√x`, and the baby-step giant-step plan that evaluates a polynomial of
//! degree `d` in depth ⌈log2(d + 1)⌉ (Paterson–Stockmeyer; Bossuat et al., EUROCRYPT 2021, §4).

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

/// Multiplicative depth of evaluating a degree-`d` polynomial by baby-step giant-step:
/// ⌈log2(d + 1)⌉ (the domain's affine map is folded into the first baby step).
pub fn evaluation_depth(degree: usize) -> u32 {
    (degree + 1).next_power_of_two().trailing_zeros()
}

/// How a degree-`d` polynomial is evaluated: baby steps `T_0 … T_{k−1}` and giant steps
/// `T_k, T_2k, T_4k, …` (Paterson–Stockmeyer in the Chebyshev basis).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct EvaluationPlan {
    pub degree: usize,
    pub baby_steps: usize,
    pub giant_steps: usize,
    pub depth: u32,
    /// Ciphertext-ciphertext multiplications.
    pub nonscalar_multiplications: usize,
}

impl EvaluationPlan {
    pub fn for_degree(degree: usize) -> Self {
        let depth = evaluation_depth(degree);
        // Baby steps up to 2^⌈depth/2⌉, giant steps for the remaining powers of two.
        let baby_log = depth.div_ceil(2);
        let baby_steps = 1usize << baby_log;
        let giant_steps = (depth - baby_log) as usize;
        let blocks = (degree + 1).div_ceil(baby_steps);
        Self {
            degree,
            baby_steps,
            giant_steps,
            depth,
            nonscalar_multiplications: baby_steps.saturating_sub(2)
                + giant_steps
                + blocks.saturating_sub(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_is_log_of_degree_plus_one() {
        assert_eq!(evaluation_depth(1), 1);
        assert_eq!(evaluation_depth(3), 2);
        assert_eq!(evaluation_depth(7), 3);
        assert_eq!(evaluation_depth(8), 4);
        assert_eq!(evaluation_depth(63), 6);
    }

    #[test]
    fn plans_cover_the_degree() {
        for degree in [1, 3, 7, 15, 27, 63, 119] {
            let plan = EvaluationPlan::for_degree(degree);
            assert!(plan.baby_steps << plan.giant_steps > degree, "{plan:?}");
        }
    }
}
