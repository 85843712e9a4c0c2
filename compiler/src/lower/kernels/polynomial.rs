//! Element-wise polynomials `Σ_{j ≤ d} c_j T_j(u)`, `u = (2x − a − b)/(b − a)`, given by their
//! Chebyshev coefficients on a domain `[a, b]` ([`Polynomial`]), evaluated slot-wise on every
//! ciphertext by baby-step giant-step in the Chebyshev basis (Paterson–Stockmeyer; Bossuat et
//! al., EUROCRYPT 2021, §4.2, Algorithm 2) with the split of [`EvaluationPlan::for_degree`]:
//! for `D = ⌈log2(d + 1)⌉ ≥ 4`, `k = 2^⌈D/2⌉` baby steps `T_0 … T_{k−1}` and `g = ⌊D/2⌋` giant
//! steps `T_k, T_2k, …, T_{2^(g−1)k}`; for `D ≤ 3`, `k = 2` and `g = D − 1`.
//!
//! The polynomial is split recursively at the largest giant step `T_K ≤ deg` as
//! `p = r + T_K·q` (`T_K·T_j = (T_{K+j} + T_{K−j})/2` gives `q_0 = c_K`, `q_j = 2c_{K+j}`,
//! `r_i = c_i − c_{2K−i}`) down to leaves of degree `< k`, which are scalar combinations of the
//! baby steps. Depth counts every scalar multiplication as one level (it is rescaled like any
//! other product), so scalings are kept off the critical path:
//!
//! * the domain's affine map: the baby steps are kept in the scaled basis
//!   `P_i = μ_i T_i(u)`, `μ_i = 2ρ^i`, `ρ = z(b − a)/4` for a small integer `z ≥ 1`, in which
//!   `P_1 = z(x − (a + b)/2)` costs additions only and the recurrences
//!   `P_{2m} = P_m² − μ_{2m}`, `P_{m+n} = P_m P_n − ρ^{2n} P_{m−n}` (`n < m`) need no scalar
//!   multiplication on their deepest operands, so `P_i` sits at level `⌈log2 i⌉`; the `1/μ_i`
//!   goes into the leaves' coefficients, which are scalar multiplications anyway;
//! * a giant step's scale `σ` (`G = σ T_K`) goes into the coefficients of the quotient it
//!   multiplies.
//!
//! Levels from an input at level 0: for `k = 2` the leaves `c_0 + c_1 T_1` are at level 1 and the
//! giant steps are the scaled `P_2, P_4` at levels 1, 2, so the result is at `D` (`d ≤ 7`). For
//! `k ≥ 4` (`b = log2 k`): `P_i` at `⌈log2 i⌉`, leaves at `b + 1`, unscaled `T_{2^j k}` at
//! `b + 1 + j`, the result at `D + 1` (`d ≥ 8`): [`depth`]. The extra level is the leaves'
//! scalar multiplications on `P_{k/2+1} … P_{k−1}` (level `b`): a leaf of degree
//! `k − 1 > 2^(b−1)` is not a scalar combination of values at level `b − 1`, so depth `D` takes
//! more multiplications than this plan (or scaled giant steps, which grow like `ρ^(d/2)`).
//!
//! Magnitudes: the baby steps and scaled giant steps are bounded on the domain by
//! `μ_i = 2ρ^i` (`z` brings `ρ` near 1 for domains narrower than 4), so wide domains give values
//! up to `2ρ^max(k−1, 4)` (e.g. `2·5^7 ≈ 1.6·10^5` for degree 63 on `[−10, 10]`); the unscaled
//! giant steps of `k ≥ 4` are bounded by 1.

use crate::approx::EvaluationPlan;
use crate::lower::{Builder, Cipher};
use cachemir_ir::layout::{EMPTY, Run};
use cachemir_ir::op::Polynomial;
use cachemir_ir::plan::{Plaintext, Register};
use std::collections::HashMap;

/// Multiplicative depth of [`chebyshev`] for a polynomial of degree `degree`, counting
/// ciphertext, plaintext and scalar multiplications alike: `⌈log2(d + 1)⌉` for `d ≤ 7`,
/// `⌈log2(d + 1)⌉ + 1` for `d ≥ 8` (the same as [`crate::approx::evaluation_depth`]).
pub fn depth(degree: usize) -> u32 {
    EvaluationPlan::for_degree(degree).depth
}

/// Ciphertext–ciphertext multiplications of [`chebyshev`] per ciphertext for a polynomial of
/// degree `d` with nonzero coefficients:
/// `(k − 2)⁺ + g + ⌈(d + 1)/k⌉ − 1 − [d ≥ k ∧ k | d]` (baby steps, giant steps, one per inner
/// node of the split, less the last node when its quotient is a constant and becomes a scalar
/// multiplication) = [`EvaluationPlan::nonscalar_multiplications`]. Vanishing coefficients
/// only remove multiplications.
pub fn ciphertext_multiplications(degree: usize) -> usize {
    EvaluationPlan::for_degree(degree).nonscalar_multiplications
}

/// `p(x)` slot-wise on every ciphertext of `x` (same layout); slots outside the layout stay zero.
///
/// Per ciphertext: [`ciphertext_multiplications`]`(d)` ciphertext multiplications, at most
/// `d + k` scalar multiplications (one per nonzero leaf coefficient, one per baby step that is
/// not a power of two, one for `T_k` when `k ≥ 4`, one for a constant quotient), no rotations,
/// no plaintext multiplications; additive constants are `Plaintext::Fill`s over the occupied
/// slots (scalar additions where the ciphertext is full). Depth [`depth`]`(d)`; trailing zero
/// coefficients are dropped first. Panics on an empty or infinite domain.
pub fn chebyshev(b: &mut Builder, x: &Cipher, polynomial: &Polynomial) -> Cipher {
    let degree = polynomial
        .coefficients
        .iter()
        .rposition(|&c| c != 0.0)
        .unwrap_or(0);
    let coefficients = if polynomial.coefficients.is_empty() {
        vec![0.0]
    } else {
        polynomial.coefficients[..=degree].to_vec()
    };
    let (low, high) = polynomial.domain;
    assert!(
        low.is_finite() && high.is_finite() && high > low,
        "{}: polynomial domain [{low}, {high}] is empty or not finite",
        polynomial.function
    );
    let shape = Shape::new(degree, (low, high));
    let registers = x
        .registers
        .iter()
        .zip(&x.layout.map)
        .map(|(&register, map)| {
            let mut evaluator = Evaluator {
                b: &mut *b,
                x: register,
                occupied: occupied_runs(map),
                shape: &shape,
                babies: HashMap::new(),
                giants: vec![None; shape.giant_steps],
            };
            let value = evaluator.evaluate(&coefficients, 1.0);
            evaluator.materialise(value)
        })
        .collect();
    Cipher {
        registers,
        layout: x.layout.clone(),
    }
}

/// What a polynomial's evaluation depends on besides the ciphertext: the split and the scaled
/// basis (see the module documentation).
struct Shape {
    baby_steps: usize,
    giant_steps: usize,
    /// `T_1(u) = αx + β`.
    alpha: f64,
    beta: f64,
    /// `(a + b)/2`.
    centre: f64,
    /// `P_1 = z(x − centre)`.
    z: u64,
    /// `z(b − a)/4`.
    rho: f64,
}

impl Shape {
    fn new(degree: usize, (low, high): (f64, f64)) -> Self {
        let plan = EvaluationPlan::for_degree(degree);
        let width = high - low;
        // Integer multiples of x − centre cost additions only; pick the one whose ρ is nearest 1
        // so the baby steps neither vanish below the scheme's noise nor grow (narrow domains).
        let z = if width >= 4.0 {
            1
        } else {
            let t = (4.0 / width).min(2f64.powi(40));
            let (floor, ceil) = (t.floor().max(1.0), t.ceil().max(1.0));
            let distance = |z: f64| (z * width / 4.0).ln().abs();
            (if distance(floor) <= distance(ceil) {
                floor
            } else {
                ceil
            }) as u64
        };
        Self {
            baby_steps: plan.baby_steps,
            giant_steps: plan.giant_steps,
            alpha: 2.0 / width,
            beta: -(low + high) / width,
            centre: (low + high) / 2.0,
            z,
            rho: z as f64 * width / 4.0,
        }
    }

    /// `μ_i`: `P_i = μ_i T_i(u)`.
    fn mu(&self, i: usize) -> f64 {
        if i == 0 {
            1.0
        } else {
            2.0 * self.rho.powi(i as i32)
        }
    }
}

/// A sub-polynomial's value: public (the constant of a leaf without ciphertext terms) or
/// encrypted.
#[derive(Debug, Clone, Copy)]
enum Value {
    Constant(f64),
    Cipher(Register),
}

/// Evaluation on one ciphertext, with its baby and giant steps built on first use.
struct Evaluator<'a> {
    b: &'a mut Builder,
    x: Register,
    /// Occupied slots (element-free runs), `None` when the ciphertext is full.
    occupied: Option<Vec<Run>>,
    shape: &'a Shape,
    /// `P_i`, by `i`.
    babies: HashMap<usize, Register>,
    /// `(G_j, σ_j)` with `G_j = σ_j T_{2^j k}`, by `j`.
    giants: Vec<Option<(Register, f64)>>,
}

impl Evaluator<'_> {
    /// `s · Σ c_i T_i(u)`.
    fn evaluate(&mut self, c: &[f64], s: f64) -> Value {
        let Some(n) = c.iter().rposition(|&v| v != 0.0) else {
            return Value::Constant(0.0);
        };
        let c = &c[..=n];
        let k = self.shape.baby_steps;
        if n < k {
            return self.leaf(c, s);
        }
        let (mut big, mut j) = (k, 0);
        while 2 * big <= n {
            big *= 2;
            j += 1;
        }
        // p = r + T_K q with T_K T_i = (T_{K+i} + T_{K−i})/2.
        let q: Vec<f64> = (big..=n)
            .map(|i| if i == big { c[i] } else { 2.0 * c[i] })
            .collect();
        let r: Vec<f64> = (0..big)
            .map(|i| {
                if i >= 1 && 2 * big - i <= n {
                    c[i] - c[2 * big - i]
                } else {
                    c[i]
                }
            })
            .collect();
        let (giant, sigma) = self.giant(j);
        let product = match self.evaluate(&q, s / sigma) {
            Value::Constant(0.0) => Value::Constant(0.0),
            Value::Constant(v) => Value::Cipher(self.scale(giant, v)),
            Value::Cipher(high) => Value::Cipher(self.b.multiply(giant, high)),
        };
        let low = self.evaluate(&r, s);
        self.combine(product, low)
    }

    /// `s · Σ_{i<k} c_i T_i(u)`: one scalar multiplication per nonzero term, on `x` itself for
    /// `T_1 = αx + β` and on `P_i` (coefficient `s c_i/μ_i`) above.
    fn leaf(&mut self, c: &[f64], s: f64) -> Value {
        let mut constant = s * c[0];
        let mut terms = Vec::new();
        for (i, &ci) in c.iter().enumerate().skip(1) {
            let w = s * ci;
            if w == 0.0 {
                continue;
            }
            if i == 1 {
                terms.push(self.scale(self.x, w * self.shape.alpha));
                constant += w * self.shape.beta;
            } else {
                let p = self.baby(i);
                terms.push(self.scale(p, w / self.shape.mu(i)));
            }
        }
        match self.b.sum(&terms) {
            None => Value::Constant(constant),
            Some(sum) => Value::Cipher(self.add_constant(sum, constant)),
        }
    }

    /// `P_i` at level `⌈log2 i⌉` (`P_1` at level 0).
    fn baby(&mut self, i: usize) -> Register {
        if let Some(&p) = self.babies.get(&i) {
            return p;
        }
        let p = if i == 1 {
            let v = self.add_constant(self.x, -self.shape.centre);
            self.times_integer(v, self.shape.z)
        } else if i.is_power_of_two() {
            let half = self.baby(i / 2);
            let square = self.b.multiply(half, half);
            self.add_constant(square, -self.shape.mu(i))
        } else {
            let m = i.next_power_of_two() / 2;
            let n = i - m;
            let (pm, pn) = (self.baby(m), self.baby(n));
            let product = self.b.multiply(pm, pn);
            // P_{m−n} is at most at level ⌈log2 i⌉ − 1: scaled, it is no deeper than the product.
            let lower = self.baby(m - n);
            let lower = self.scale(lower, self.shape.rho.powi(2 * n as i32));
            self.b.sub(product, lower)
        };
        self.babies.insert(i, p);
        p
    }

    /// `(G_j, σ_j)`: for `k = 2` the scaled `P_{2^(j+1)}` (`σ = μ`, level `j + 1`), else
    /// `T_{2^j k}` unscaled (`σ = 1`, level `b + 1 + j`).
    fn giant(&mut self, j: usize) -> (Register, f64) {
        if let Some(g) = self.giants[j] {
            return g;
        }
        let k = self.shape.baby_steps;
        let g = if k == 2 {
            let i = 2 << j;
            (self.baby(i), self.shape.mu(i))
        } else if j == 0 {
            // T_k = 2T_{k/2}² − 1 = P_{k/2} · (2/μ_{k/2}²) P_{k/2} − 1: the scaled copy is at
            // level b, so T_k is at b + 1, the level of the leaves it multiplies.
            let half = self.baby(k / 2);
            let scaled = self.scale(half, 2.0 / self.shape.mu(k / 2).powi(2));
            let product = self.b.multiply(half, scaled);
            (self.add_constant(product, -1.0), 1.0)
        } else {
            // T_{2K} = 2T_K² − 1, the 2 by an addition.
            let (previous, _) = self.giant(j - 1);
            let doubled = self.b.add(previous, previous);
            let product = self.b.multiply(doubled, previous);
            (self.add_constant(product, -1.0), 1.0)
        };
        self.giants[j] = Some(g);
        g
    }

    fn combine(&mut self, a: Value, b: Value) -> Value {
        match (a, b) {
            (Value::Constant(u), Value::Constant(v)) => Value::Constant(u + v),
            (Value::Cipher(r), Value::Constant(v)) | (Value::Constant(v), Value::Cipher(r)) => {
                Value::Cipher(self.add_constant(r, v))
            }
            (Value::Cipher(r), Value::Cipher(t)) => Value::Cipher(self.b.add(r, t)),
        }
    }

    /// The value as a ciphertext (a constant is added to `x − x`, an encryption of zero).
    fn materialise(&mut self, value: Value) -> Register {
        match value {
            Value::Cipher(r) => r,
            Value::Constant(v) => {
                let zero = self.b.sub(self.x, self.x);
                self.add_constant(zero, v)
            }
        }
    }

    /// `r + v` on the occupied slots only.
    fn add_constant(&mut self, r: Register, v: f64) -> Register {
        if v == 0.0 {
            return r;
        }
        match &self.occupied {
            None => self.b.add_scalar(r, v),
            Some(runs) => self.b.add_plain(
                r,
                Plaintext::Fill {
                    runs: runs.clone(),
                    value: v,
                },
            ),
        }
    }

    /// `v · r`: a scalar multiplication, or nothing (`±1`).
    fn scale(&mut self, r: Register, v: f64) -> Register {
        if v == 1.0 {
            r
        } else if v == -1.0 {
            self.b.negate(r)
        } else {
            self.b.multiply_scalar(r, v)
        }
    }

    /// `z · r` by doubling and adding (no level).
    fn times_integer(&mut self, r: Register, z: u64) -> Register {
        let mut acc = r;
        for bit in (0..63 - z.leading_zeros()).rev() {
            acc = self.b.add(acc, acc);
            if z >> bit & 1 == 1 {
                acc = self.b.add(acc, r);
            }
        }
        acc
    }
}

/// The occupied slots of one ciphertext's map as element-free runs (ciphertext 0, element 0,
/// step 0: a `Fill` ignores elements, and ciphertexts with the same occupancy then share one
/// interned plaintext); `None` when every slot is occupied.
fn occupied_runs(map: &[u32]) -> Option<Vec<Run>> {
    if map.iter().all(|&e| e != EMPTY) {
        return None;
    }
    Some(super::convert::slot_runs(
        map.iter()
            .enumerate()
            .filter(|(_, e)| **e != EMPTY)
            .map(|(s, _)| s),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::approx::chebyshev::Chebyshev;
    use crate::lower::{Counts, Interface};
    use cachemir_ir::layout::Layout;
    use cachemir_ir::plan::{Ciphertexts, Instruction, Plan};
    use proptest::prelude::*;
    use std::sync::Arc;

    /// A small deterministic generator (xorshift64*), uniform in `[0, 1)`.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 11) as f64 / (1u64 << 53) as f64
        }

        fn between(&mut self, low: f64, high: f64) -> f64 {
            low + (high - low) * self.next()
        }
    }

    /// The deepest stored register's level, walking the instructions: `mul`, `mul.p` and
    /// `mul.s` add one level to their deepest operand, everything else none.
    fn measured_depth(plan: &Plan) -> u32 {
        let mut level = vec![0u32; plan.registers as usize];
        let mut deepest = 0;
        for instruction in &plan.instructions {
            let (reads, writes) = instruction.registers();
            let operands = reads.iter().map(|&r| level[r as usize]).max().unwrap_or(0);
            if let Instruction::Store { src, .. } = instruction {
                deepest = deepest.max(level[src.0 as usize]);
            }
            let own = u32::from(matches!(
                instruction,
                Instruction::Multiply { .. }
                    | Instruction::MultiplyPlain { .. }
                    | Instruction::MultiplyScalar { .. }
            ));
            for w in writes {
                level[w as usize] = operands + own;
            }
        }
        deepest
    }

    /// Runs the kernel on `values` (row-major, in `layout`), returning the output slot vectors,
    /// the counts and the measured depth.
    fn run(
        layout: &Layout,
        polynomial: &Polynomial,
        values: &[f64],
    ) -> (Vec<Vec<f64>>, Counts, u32) {
        let mut b = Builder::new(layout.slots);
        let x = Cipher {
            registers: (0..layout.ciphertexts())
                .map(|c| b.load(0, c as u32))
                .collect(),
            layout: Arc::new(layout.clone()),
        };
        let y = chebyshev(&mut b, &x, polynomial);
        for (c, &r) in y.registers.iter().enumerate() {
            b.store(r, 0, c as u32);
        }
        let counts = b.counts;
        let io = |name: &str| Ciphertexts {
            name: name.into(),
            layout: layout.clone(),
            level: None,
        };
        let plan = b.finish(Interface {
            inputs: vec![io("x")],
            outputs: vec![io("y")],
            ..Default::default()
        });
        plan.validate().unwrap();
        let depth = measured_depth(&plan);
        let inputs = [layout.encode(values).unwrap()];
        let mut out = cachemir_vm::sim::execute(&plan, &HashMap::new(), &inputs).unwrap();
        (out.remove(0), counts, depth)
    }

    fn random_polynomial(rng: &mut Rng, degree: usize, domain: (f64, f64)) -> Polynomial {
        Polynomial {
            function: "random".into(),
            domain,
            // Away from zero, so that no term is skipped and the counts are exact.
            coefficients: (0..=degree)
                .map(|_| {
                    let magnitude = rng.between(0.05, 1.0);
                    if rng.next() < 0.5 {
                        -magnitude
                    } else {
                        magnitude
                    }
                })
                .collect(),
            max_error: 0.0,
        }
    }

    /// Checks values, clean empty slots, counts and depth of one evaluation.
    fn check(layout: &Layout, polynomial: &Polynomial, rng: &mut Rng) -> Result<(), String> {
        let (a, b) = polynomial.domain;
        let mut values: Vec<f64> = (0..layout.elements()).map(|_| rng.between(a, b)).collect();
        // The endpoints, where the basis is largest.
        values[0] = a;
        if values.len() > 1 {
            values[1] = b;
        }
        let (out, counts, depth) = run(layout, polynomial, &values);
        let degree = polynomial.degree();
        let reference = Chebyshev {
            domain: polynomial.domain,
            coefficients: polynomial.coefficients.clone(),
        };
        let scale: f64 = polynomial.coefficients.iter().map(|c| c.abs()).sum();
        let decoded = layout.decode(&out).map_err(|e| e.to_string())?;
        for (e, (&x, &y)) in values.iter().zip(&decoded).enumerate() {
            let expected = reference.evaluate(x);
            if (y - expected).abs() > 1e-9 * scale {
                return Err(format!(
                    "degree {degree} on {:?}: element {e} at x = {x}: {y} ≠ {expected}",
                    polynomial.domain
                ));
            }
        }
        for (c, map) in layout.map.iter().enumerate() {
            for (s, &e) in map.iter().enumerate() {
                // Every slot of an element holds its value (replicas too); empty ones zero.
                let want = if e == EMPTY { 0.0 } else { decoded[e as usize] };
                if e == EMPTY && out[c][s] != 0.0 {
                    return Err(format!(
                        "degree {degree}: empty slot {s} of {c} holds {}",
                        out[c][s]
                    ));
                }
                if e != EMPTY && (out[c][s] - want).abs() > 1e-9 * scale {
                    return Err(format!(
                        "degree {degree}: replica at slot {s} of {c} differs"
                    ));
                }
            }
        }
        let expected = ciphertext_multiplications(degree) * layout.ciphertexts();
        if counts.ciphertext_multiplications != expected {
            return Err(format!(
                "degree {degree}: {} ciphertext multiplications, formula {expected}",
                counts.ciphertext_multiplications
            ));
        }
        if counts.rotations != 0 || counts.plaintext_multiplications != 0 {
            return Err(format!(
                "degree {degree}: rotations or plaintext products {counts:?}"
            ));
        }
        if depth != super::depth(degree) {
            return Err(format!(
                "degree {degree}: depth {depth}, formula {}",
                super::depth(degree)
            ));
        }
        Ok(())
    }

    fn layouts() -> Vec<Layout> {
        vec![
            // Interleaved replicated packing with empty slots in every chunk.
            Layout::interleaved(&[5], 16, 8),
            // Five elements in eight slots, then two ciphertexts with a partial second one.
            Layout::row_major(&[5], 8),
            Layout::row_major(&[13], 8),
            // Full ciphertexts: constants by scalar additions.
            Layout::row_major(&[16], 8),
        ]
    }

    #[test]
    fn matches_clenshaw_for_degrees_up_to_31_and_63() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
        // Narrow (z > 1), unit, width-4 and wide domains.
        let domains = [
            (-0.2, 0.1),
            (-1.0, 1.0),
            (0.5, 4.5),
            (-3.5, 1.25),
            (-20.0, 20.0),
        ];
        for degree in (0..=31).chain([63]) {
            for (i, layout) in layouts().iter().enumerate() {
                let domain = domains[(degree + i) % domains.len()];
                let polynomial = random_polynomial(&mut rng, degree, domain);
                check(layout, &polynomial, &mut rng).unwrap();
            }
        }
    }

    #[test]
    fn interpolants_of_activations() {
        let mut rng = Rng(7);
        let layout = Layout::interleaved(&[5], 16, 8);
        for (f, domain, degree) in [
            (libm::erf as fn(f64) -> f64, (-4.0, 4.0), 27),
            (f64::exp, (-8.0, 0.5), 15),
            (f64::tanh, (-6.0, 6.0), 63),
        ] {
            let p = Chebyshev::interpolate(f, domain, degree);
            let polynomial = Polynomial {
                function: "f".into(),
                domain,
                coefficients: p.coefficients.clone(),
                max_error: 0.0,
            };
            let values: Vec<f64> = (0..5).map(|_| rng.between(domain.0, domain.1)).collect();
            let (out, _, _) = run(&layout, &polynomial, &values);
            for (x, y) in values.iter().zip(layout.decode(&out).unwrap()) {
                assert!((y - p.evaluate(*x)).abs() < 1e-10, "{x}: {y}");
            }
        }
    }

    #[test]
    fn constants_zeros_and_trailing_zeros() {
        let layout = Layout::row_major(&[5], 8);
        let values = [0.1, -0.4, 0.9, 0.0, 0.3];
        let constant = |coefficients: Vec<f64>| Polynomial {
            function: "c".into(),
            domain: (-1.0, 1.0),
            coefficients,
            max_error: 0.0,
        };
        for (coefficients, expected) in [
            (vec![], 0.0),
            (vec![0.0, 0.0], 0.0),
            (vec![2.5], 2.5),
            (vec![2.5, 0.0, 0.0], 2.5),
        ] {
            let (out, counts, depth) = run(&layout, &constant(coefficients), &values);
            assert_eq!(&out[0][..5], &[expected; 5]);
            assert_eq!(&out[0][5..], &[0.0; 3]);
            assert_eq!((counts.ciphertext_multiplications, depth), (0, 0));
        }
        // x² − 1 = T_2 on [−1, 1] written with a zero leading coefficient: degree 2's plan.
        let (out, counts, depth) = run(&layout, &constant(vec![0.0, 0.0, 1.0, 0.0]), &values);
        for (x, y) in values.iter().zip(&out[0]) {
            assert!((y - (2.0 * x * x - 1.0)).abs() < 1e-14);
        }
        assert_eq!((counts.ciphertext_multiplications, depth), (1, 2));
    }

    /// Counts per ciphertext and depth by degree, measured (the report's table).
    #[test]
    fn counts_and_depths() {
        let mut rng = Rng(3);
        let layout = Layout::row_major(&[5], 8);
        let mut table = String::from("degree  baby  giant  ct-ct  scalar  depth  ⌈log2(d+1)⌉\n");
        for degree in [1, 2, 3, 4, 5, 7, 8, 15, 16, 27, 31, 63, 127, 255] {
            let polynomial = random_polynomial(&mut rng, degree, (-3.0, 5.0));
            check(&layout, &polynomial, &mut rng).unwrap();
            let values = vec![0.5; 5];
            let (_, counts, depth) = run(&layout, &polynomial, &values);
            let plan = EvaluationPlan::for_degree(degree);
            table += &format!(
                "{degree:>6}  {:>4}  {:>5}  {:>5}  {:>6}  {depth:>5}  {:>11}\n",
                plan.baby_steps,
                plan.giant_steps,
                counts.ciphertext_multiplications,
                counts.scalar_multiplications,
                (degree + 1).next_power_of_two().trailing_zeros(),
            );
        }
        insta::assert_snapshot!(table);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn random_domains_and_degrees(
            degree in 0usize..=64,
            low in -10.0f64..5.0,
            width in 0.01f64..25.0,
            layout in 0usize..4,
            seed in 1u64..u64::MAX,
        ) {
            let mut rng = Rng(seed);
            let polynomial = random_polynomial(&mut rng, degree, (low, low + width));
            let result = check(&layouts()[layout], &polynomial, &mut rng);
            prop_assert!(result.is_ok(), "{}", result.unwrap_err());
        }
    }
}
