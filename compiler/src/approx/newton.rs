//! Newton iterations for `1/x` and `1/√x` on a positive interval, started from a low-degree
//! Chebyshev guess: the usual way CKKS evaluates division and normalisation (Panda, "Polynomial
//! approximation of inverse sqrt function for FHE", 2022; Qu and Xu, 2023).
//!
//! With relative error `e` of the current iterate, one step gives
//! - reciprocal, `y ← y (2 − x y)`: `e ← e²` (two multiplicative levels);
//! - inverse square root, `y ← y (3 − x y²) / 2`: `e ← (3/2) e² − e³/2` (three levels).

use super::chebyshev::{Chebyshev, ERROR_SAMPLES};
use serde::Serialize;

/// Which inverse a Newton plan computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Inverse {
    Reciprocal,
    InverseSqrt,
}

impl Inverse {
    pub fn exact(self, x: f64) -> f64 {
        match self {
            Inverse::Reciprocal => 1.0 / x,
            Inverse::InverseSqrt => 1.0 / x.sqrt(),
        }
    }

    /// Relative error after one step from relative error `e` (either sign).
    fn step_error(self, e: f64) -> f64 {
        match self {
            Inverse::Reciprocal => e * e,
            // A start that overestimates (negative e) gives 1.5e² + 0.5|e|³: bound both signs.
            Inverse::InverseSqrt => 1.5 * e * e + 0.5 * e.abs() * e * e,
        }
    }

    /// Multiplicative depth of one step.
    pub fn step_depth(self) -> u32 {
        match self {
            Inverse::Reciprocal => 2,
            Inverse::InverseSqrt => 3,
        }
    }
}

/// A Newton evaluation: an initial polynomial guess and a number of steps.
#[derive(Debug, Clone)]
pub struct NewtonPlan {
    pub inverse: Inverse,
    pub initial: Chebyshev,
    /// `max |1 − y₀ · f⁻¹(x)|` of the initial guess on the domain.
    pub initial_relative_error: f64,
    pub iterations: u32,
    /// Predicted `max |y − f(x)|` after the iterations (relative bound times `max f`).
    pub max_error: f64,
}

/// Largest initial polynomial degree tried before the domain is declared too wide.
const MAX_INITIAL_DEGREE: usize = 31;

/// Plans `1/x` or `1/√x` on `domain` (`0 < a < b`) to absolute error `target`.
///
/// # Errors
/// A message when the domain is not positive or so wide that no initial guess of degree ≤ 31
/// has relative error below 1/2 (the caller should narrow the range, e.g. by pre-scaling).
pub fn plan(inverse: Inverse, domain: (f64, f64), target: f64) -> Result<NewtonPlan, String> {
    let (a, b) = domain;
    if !(a > 0.0 && b > a) {
        return Err(format!(
            "{inverse:?} needs a positive domain, got [{a}, {b}]"
        ));
    }
    let f = move |x: f64| inverse.exact(x);
    let relative = |p: &Chebyshev| {
        (0..=ERROR_SAMPLES)
            .map(|i| {
                let x = a + (b - a) * i as f64 / ERROR_SAMPLES as f64;
                (1.0 - p.evaluate(x) / f(x)).abs()
            })
            .fold(0.0, f64::max)
    };
    let mut degree = 1;
    let (initial, initial_relative_error) = loop {
        let p = Chebyshev::interpolate(f, domain, degree);
        let e = relative(&p);
        if e < 0.5 {
            break (p, e);
        }
        if degree >= MAX_INITIAL_DEGREE {
            return Err(format!(
                "[{a}, {b}] is too wide for {inverse:?}: a degree-{degree} start is off by {:.0}%",
                100.0 * e
            ));
        }
        degree = 2 * degree + 1;
    };
    let largest = f(a).max(f(b));
    let mut e = initial_relative_error;
    let mut iterations = 0;
    while e * largest > target && iterations < 20 {
        e = inverse.step_error(e);
        iterations += 1;
    }
    Ok(NewtonPlan {
        inverse,
        initial,
        initial_relative_error,
        iterations,
        // Float rounding of the steps themselves sits far below any target we use.
        max_error: e * largest,
    })
}

impl NewtonPlan {
    /// The plan evaluated in f64, step by step as the graph will compute it.
    pub fn evaluate(&self, x: f64) -> f64 {
        let mut y = self.initial.evaluate(x);
        for _ in 0..self.iterations {
            y = match self.inverse {
                Inverse::Reciprocal => y * (2.0 - x * y),
                Inverse::InverseSqrt => 0.5 * y * (3.0 - x * y * y),
            };
        }
        y
    }

    /// Multiplicative depth: the initial polynomial and the steps.
    pub fn depth(&self) -> u32 {
        super::evaluation_depth(self.initial.degree()) + self.iterations * self.inverse.step_depth()
    }
}
