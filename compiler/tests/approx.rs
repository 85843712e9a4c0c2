//! Every approximation meets the error it predicts on its domain, for random domains and
//! degrees; Newton plans converge as predicted; degree selection meets its target.

use cachemir_compiler::approx::chebyshev::{Chebyshev, least_degree};
use cachemir_compiler::approx::newton::{Inverse, plan};
use cachemir_compiler::approx::{EvaluationPlan, Function, evaluation_depth};
use proptest::prelude::*;

const FUNCTIONS: [Function; 8] = [
    Function::Exp,
    Function::Erf,
    Function::Tanh,
    Function::Sigmoid,
    Function::Sqrt,
    Function::GeluErf,
    Function::GeluTanh,
    Function::Silu,
];

/// The largest error at `points` random places of the domain (independent of the grid the
/// prediction used).
fn observed_error(p: &Chebyshev, f: impl Fn(f64) -> f64, points: &[f64]) -> f64 {
    let (a, b) = p.domain;
    points
        .iter()
        .map(|t| {
            let x = a + (b - a) * t;
            (f(x) - p.evaluate(x)).abs()
        })
        .fold(0.0, f64::max)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn interpolants_meet_their_predicted_error(
        index in 0usize..FUNCTIONS.len(),
        centre in -6.0f64..6.0,
        width in 0.1f64..12.0,
        degree in 1usize..64,
        points in proptest::collection::vec(0.0f64..=1.0, 2000),
    ) {
        let function = FUNCTIONS[index];
        let mut domain = (centre - width / 2.0, centre + width / 2.0);
        if function == Function::Sqrt {
            domain = (domain.0.abs() + 0.05, domain.0.abs() + 0.05 + width);
        }
        let f = move |x: f64| function.evaluate(x);
        let p = Chebyshev::interpolate(f, domain, degree);
        let predicted = p.max_error(f, cachemir_compiler::approx::chebyshev::ERROR_SAMPLES);
        let observed = observed_error(&p, f, &points);
        // The prediction samples densely; between its points the error can only be a hair larger,
        // and near float precision both are rounding noise of the size of the function.
        let scale = f(domain.0).abs().max(f(domain.1).abs()).max(1.0);
        prop_assert!(observed <= predicted * 1.02 + 64.0 * f64::EPSILON * scale, "{function:?} on {domain:?}, degree {degree}: {observed:e} > {predicted:e}");
    }

    #[test]
    fn least_degree_meets_the_target(
        index in 0usize..FUNCTIONS.len(),
        low in -8.0f64..0.0,
        width in 0.5f64..8.0,
        bits in 6u32..16,
    ) {
        let function = FUNCTIONS[index];
        let domain = if function == Function::Sqrt { (0.1, 0.1 + width) } else { (low, low + width) };
        let target = 2f64.powi(-(bits as i32));
        let f = move |x: f64| function.evaluate(x);
        let (p, error) = least_degree(f, domain, target, 255).expect("smooth functions converge");
        prop_assert!(error <= target);
        // One degree less (within the same depth) would not do.
        if p.degree() > 1 && evaluation_depth(p.degree() - 1) == evaluation_depth(p.degree()) {
            let lower = Chebyshev::interpolate(f, domain, p.degree() - 1);
            prop_assert!(lower.max_error(f, 4096) > target, "degree {} was enough", p.degree() - 1);
        }
    }

    #[test]
    fn newton_plans_meet_their_predicted_error(
        low in 0.001f64..5.0,
        ratio in 1.5f64..60.0,
        bits in 8u32..24,
        inverse_sqrt in any::<bool>(),
        points in proptest::collection::vec(0.0f64..=1.0, 500),
    ) {
        let inverse = if inverse_sqrt { Inverse::InverseSqrt } else { Inverse::Reciprocal };
        let domain = (low, low * ratio);
        let target = 2f64.powi(-(bits as i32));
        let plan = plan(inverse, domain, target).unwrap();
        prop_assert!(plan.max_error <= target);
        for t in points {
            let x = domain.0 + (domain.1 - domain.0) * t;
            let error = (plan.evaluate(x) - inverse.exact(x)).abs();
            prop_assert!(error <= plan.max_error * 1.0001 + 1e-12, "{inverse:?} at {x}: {error:e} > {:e}", plan.max_error);
        }
    }

    #[test]
    fn evaluation_plans_reach_the_degree_in_the_stated_depth(degree in 1usize..512) {
        let plan = EvaluationPlan::for_degree(degree);
        prop_assert!((plan.baby_steps << plan.giant_steps) > degree);
        prop_assert_eq!(plan.depth, evaluation_depth(degree));
        // ⌈log2(d + 1)⌉, one more from degree 8 (the leaves' scalar multiplications).
        let log = plan.depth - u32::from(degree >= 8);
        prop_assert!((1usize << log) > degree && (1usize << (log - 1)) <= degree);
    }
}

#[test]
fn too_wide_a_domain_is_reported() {
    let error = plan(Inverse::Reciprocal, (1e-9, 10.0), 1e-4).unwrap_err();
    assert!(error.contains("too wide"), "{error}");
    assert!(plan(Inverse::InverseSqrt, (-1.0, 2.0), 1e-4).is_err());
}
