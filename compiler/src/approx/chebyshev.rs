//! Chebyshev interpolation on an interval: coefficients from the values at Chebyshev nodes,
//! Clenshaw evaluation, the max error measured on a dense grid, and the least degree that meets
//! a target error (Trefethen, *Approximation Theory and Approximation Practice*, ch. 3–4: the
//! interpolant is within a factor ~(2 + (2/π) log d) of the minimax polynomial).

/// A polynomial `Σ c_k T_k(t)` in the Chebyshev basis, with `t = (2x − a − b)/(b − a)` mapping
/// the domain `[a, b]` onto `[−1, 1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Chebyshev {
    pub domain: (f64, f64),
    pub coefficients: Vec<f64>,
}

impl Chebyshev {
    /// Interpolates `f` at the `degree + 1` Chebyshev points of the first kind on `domain`.
    pub fn interpolate(f: impl Fn(f64) -> f64, domain: (f64, f64), degree: usize) -> Self {
        let n = degree + 1;
        let (a, b) = domain;
        let values: Vec<f64> = (0..n)
            .map(|j| {
                let t = (std::f64::consts::PI * (j as f64 + 0.5) / n as f64).cos();
                f(0.5 * (b - a) * t + 0.5 * (a + b))
            })
            .collect();
        let coefficients = (0..n)
            .map(|k| {
                let sum: f64 = values
                    .iter()
                    .enumerate()
                    .map(|(j, v)| {
                        v * (std::f64::consts::PI * k as f64 * (j as f64 + 0.5) / n as f64).cos()
                    })
                    .sum();
                let scale = if k == 0 { 1.0 } else { 2.0 };
                scale * sum / n as f64
            })
            .collect();
        Self {
            domain,
            coefficients,
        }
    }

    pub fn degree(&self) -> usize {
        self.coefficients.len().saturating_sub(1)
    }

    /// The value at `x` (Clenshaw's recurrence). Outside the domain the polynomial is still
    /// evaluated; callers check the domain.
    pub fn evaluate(&self, x: f64) -> f64 {
        let (a, b) = self.domain;
        let t = (2.0 * x - a - b) / (b - a);
        let (mut b1, mut b2) = (0.0, 0.0);
        for &c in self.coefficients.iter().skip(1).rev() {
            let b0 = 2.0 * t * b1 - b2 + c;
            b2 = b1;
            b1 = b0;
        }
        t * b1 - b2 + self.coefficients.first().copied().unwrap_or(0.0)
    }

    /// `max |f − p|` over `samples` evenly spaced points and the Chebyshev extrema of the domain.
    pub fn max_error(&self, f: impl Fn(f64) -> f64, samples: usize) -> f64 {
        let (a, b) = self.domain;
        let even = (0..=samples).map(|i| a + (b - a) * i as f64 / samples as f64);
        let extrema = (0..=4 * self.degree().max(1)).map(|j| {
            let t = (std::f64::consts::PI * j as f64 / (4 * self.degree().max(1)) as f64).cos();
            0.5 * (b - a) * t + 0.5 * (a + b)
        });
        even.chain(extrema)
            .map(|x| (f(x) - self.evaluate(x)).abs())
            .fold(0.0, f64::max)
    }
}

/// Samples used to measure an approximation's error.
pub const ERROR_SAMPLES: usize = 4096;

/// The least degree up to `max_degree` whose interpolant's measured max error on `domain` is at
/// most `target`, with that interpolant and its error; `None` if even `max_degree` misses it.
/// Degrees are tried as 2^k − 1 first (they fill a BSGS evaluation tree exactly), then refined
/// downwards within the last power of two.
pub fn least_degree(
    f: impl Fn(f64) -> f64 + Copy,
    domain: (f64, f64),
    target: f64,
    max_degree: usize,
) -> Option<(Chebyshev, f64)> {
    let fit = |d: usize| {
        let p = Chebyshev::interpolate(f, domain, d);
        let e = p.max_error(f, ERROR_SAMPLES);
        (p, e)
    };
    let mut upper = None;
    let mut d = 1;
    while d <= max_degree {
        let (p, e) = fit(d);
        if e <= target {
            upper = Some((d, p, e));
            break;
        }
        d = 2 * d + 1;
    }
    let (found, mut best, mut best_error) = upper?;
    // Same depth for every degree in ((found − 1)/2, found]: take the least that still fits.
    let mut low = (found - 1) / 2 + 1;
    let mut high = found;
    while low < high {
        let mid = (low + high) / 2;
        let (p, e) = fit(mid);
        if e <= target {
            high = mid;
            best = p;
            best_error = e;
        } else {
            low = mid + 1;
        }
    }
    Some((best, best_error))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interpolates_polynomials_exactly() {
        let p = Chebyshev::interpolate(|x| 3.0 * x * x * x - x + 0.5, (-2.0, 5.0), 3);
        for x in [-2.0, 0.0, 1.3, 5.0] {
            assert!((p.evaluate(x) - (3.0 * x * x * x - x + 0.5)).abs() < 1e-10);
        }
    }

    #[test]
    fn exp_on_a_unit_interval_converges_fast() {
        let (p, e) = least_degree(f64::exp, (-1.0, 0.0), 1e-9, 63).unwrap();
        assert!(p.degree() <= 10, "degree {}", p.degree());
        assert!(e <= 1e-9);
    }
}
