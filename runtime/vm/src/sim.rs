//! The `sim` backend: cleartext slot vectors with exact rotation semantics and CKKS bookkeeping.
//!
//! A [`SimCiphertext`] holds `slots` reals, the multiplicative depth consumed since encryption or
//! the last bootstrap (`mul`, `mul.p` and `mul.s`: max of the operands + 1; a bootstrap resets it
//! to 0), the scale in bits (fresh: log2 Δ; a product adds its operands' bits, a plaintext or a
//! scalar counting as fresh; `rescale` subtracts log2 Δ; a bootstrap returns a fresh scale) and
//! the level where known (a fresh encryption is at the top level, `level.down` and `boot` set it,
//! `rescale` lowers it by one), and the ciphertext degree (polynomials less one: 1 for a fresh,
//! relinearized or bootstrapped ciphertext, 2 for a `mul.nr` product and anything `add`, `sub` or
//! a plaintext or scalar operation computes from one, back to 1 after `relin`).
//!
//! **Levels.** A plan without [`Parameters`] has unbounded levels: [`SimBackend::new`] uses
//! Δ = 2^[`FRESH_SCALE_BITS`], encrypts without a level, and only values are checked. For a
//! leveled plan ([`SimBackend::for_plan`]), Δ = 2^[`Parameters::log_scale`], inputs are encrypted
//! at their declared level and every ciphertext's level and scale (`scale_bits` = degree ·
//! `log_scale`) follow the rules of `cachemir_ir::plan::parameters`. The rules themselves are
//! enforced once, statically, by the [`Vm`](crate::Vm) (with `cachemir_ir::plan::levels::trace`,
//! [`VmError::Levels`], before any instruction runs: out of levels, mismatched levels or scales,
//! outputs at the wrong level), which also checks at every instruction that the backend's level
//! is the trace's; at run time the VM rejects a `boot` whose input has an occupied slot outside
//! [−1, 1] ([`VmError::BootstrapRange`]: a real bootstrap would return garbage), reading the
//! values through [`Backend::peek`]. The backend itself refuses what no CKKS backend can do:
//! `rescale` at level 0, `level.down` to a higher level, and a degree-2 ciphertext where the rule
//! of `cachemir_ir::plan::validate_degrees` needs degree 1 (`mul`, `mul.nr`, rotations,
//! `rescale`, `boot`) or a `relin` of a degree-1 one (the VM checks the rule
//! statically too, in `Plan::validate`).
//!
//! [`execute`] keeps the shape of the first executor: slot vectors in, slot vectors out.

use crate::backend::{Backend, BackendError, CiphertextInfo, Client, PlainSlots};
use crate::error::VmError;
use crate::report::Report;
use crate::vm::run_cleartext;
use cachemir_ir::plan::{Parameters, Plan, TensorRef};
use std::collections::HashMap;

/// Scale of a fresh ciphertext, plaintext or scalar, in bits, for plans without [`Parameters`].
pub const FRESH_SCALE_BITS: f64 = 40.0;

/// A cleartext "ciphertext" of the `sim` backend (see the module documentation).
#[derive(Debug, Clone, PartialEq)]
pub struct SimCiphertext {
    pub values: Vec<f64>,
    pub depth: u32,
    pub scale_bits: f64,
    pub level: Option<u32>,
    /// Polynomials less one: 2 for an unrelinearized product (`mul.nr`), else 1.
    pub ciphertext_degree: u8,
}

/// The `sim` backend over `slots` slots.
#[derive(Debug, Clone)]
pub struct SimBackend {
    slots: usize,
    /// log2 Δ: the scale of a fresh ciphertext, plaintext or scalar, in bits.
    fresh_scale_bits: f64,
    /// The level of a fresh encryption; `None` for unbounded levels.
    top_level: Option<u32>,
}

impl SimBackend {
    /// A backend of `slots` slots per ciphertext, levels unbounded (plans without
    /// [`Parameters`]).
    pub fn new(slots: usize) -> Self {
        Self {
            slots,
            fresh_scale_bits: FRESH_SCALE_BITS,
            top_level: None,
        }
    }

    /// A backend of `slots` slots per ciphertext for the leveled parameters `parameters`: scales
    /// in multiples of [`Parameters::log_scale`], fresh encryptions at [`Parameters::max_level`].
    pub fn leveled(slots: usize, parameters: &Parameters) -> Self {
        Self {
            slots,
            fresh_scale_bits: f64::from(parameters.log_scale),
            top_level: Some(parameters.max_level),
        }
    }

    /// The backend for `plan`: [`SimBackend::leveled`] when the plan has parameters, else
    /// [`SimBackend::new`].
    pub fn for_plan(plan: &Plan) -> Self {
        match &plan.parameters {
            Some(parameters) => Self::leveled(plan.slots, parameters),
            None => Self::new(plan.slots),
        }
    }

    /// log2 Δ: the scale of a fresh ciphertext, plaintext or scalar, in bits.
    pub fn fresh_scale_bits(&self) -> f64 {
        self.fresh_scale_bits
    }

    fn check_len(&self, what: &str, len: usize) -> Result<(), BackendError> {
        if len == self.slots {
            Ok(())
        } else {
            Err(BackendError::Mismatch(format!(
                "{what} has {len} slots, the backend {}",
                self.slots
            )))
        }
    }

    fn unary(
        &self,
        a: &SimCiphertext,
        f: impl Fn(f64) -> f64,
    ) -> Result<SimCiphertext, BackendError> {
        Ok(SimCiphertext {
            values: a.values.iter().map(|&x| f(x)).collect(),
            ..a.clone_meta()
        })
    }

    /// Slot-wise `f` of two ciphertexts; `product` marks a multiplication for the bookkeeping
    /// (`Some(degree)`: the ciphertext degree of the product, its operands of degree 1).
    fn binary(
        &self,
        a: &SimCiphertext,
        b: &SimCiphertext,
        product: Option<u8>,
        f: impl Fn(f64, f64) -> f64,
    ) -> Result<SimCiphertext, BackendError> {
        self.check_len("the second operand", b.values.len())?;
        if product.is_some() {
            relinearized(a, "ciphertext product")?;
            relinearized(b, "ciphertext product")?;
        }
        let ciphertext_degree =
            product.unwrap_or_else(|| a.ciphertext_degree.max(b.ciphertext_degree));
        let product = product.is_some();
        let values = a.values.iter().zip(&b.values).map(|(&x, &y)| f(x, y));
        Ok(SimCiphertext {
            values: values.collect(),
            depth: a.depth.max(b.depth) + u32::from(product),
            scale_bits: if product {
                a.scale_bits + b.scale_bits
            } else {
                a.scale_bits.max(b.scale_bits)
            },
            level: min_level(a.level, b.level),
            ciphertext_degree,
        })
    }

    /// Slot-wise `f` of a ciphertext and a plaintext.
    fn plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
        product: bool,
        f: impl Fn(f64, f64) -> f64,
    ) -> Result<SimCiphertext, BackendError> {
        self.check_len(&format!("plaintext p{}", p.index), p.values.len())?;
        let values = a.values.iter().zip(p.values).map(|(&x, &y)| f(x, y));
        Ok(SimCiphertext {
            values: values.collect(),
            depth: a.depth + u32::from(product),
            scale_bits: a.scale_bits + if product { self.fresh_scale_bits } else { 0.0 },
            level: a.level,
            ciphertext_degree: a.ciphertext_degree,
        })
    }

    fn rotated(&self, a: &SimCiphertext, step: i32) -> SimCiphertext {
        let n = a.values.len().max(1);
        let k = (step as i64).rem_euclid(n as i64) as usize;
        let mut values = a.values.clone();
        values.rotate_left(k);
        SimCiphertext {
            values,
            ..a.clone_meta()
        }
    }
}

impl SimCiphertext {
    /// The bookkeeping without the values.
    fn clone_meta(&self) -> SimCiphertext {
        SimCiphertext {
            values: Vec::new(),
            depth: self.depth,
            scale_bits: self.scale_bits,
            level: self.level,
            ciphertext_degree: self.ciphertext_degree,
        }
    }
}

/// Refuses a degree-2 ciphertext where `what` needs a relinearized one.
fn relinearized(a: &SimCiphertext, what: &str) -> Result<(), BackendError> {
    if a.ciphertext_degree == 1 {
        Ok(())
    } else {
        Err(BackendError::Mismatch(format!(
            "{what} of a degree-{} ciphertext (not relinearized): relin first",
            a.ciphertext_degree
        )))
    }
}

fn min_level(a: Option<u32>, b: Option<u32>) -> Option<u32> {
    match (a, b) {
        (Some(x), Some(y)) => Some(x.min(y)),
        (x, y) => x.or(y),
    }
}

impl Backend for SimBackend {
    type Ciphertext = SimCiphertext;

    fn name(&self) -> &'static str {
        "sim"
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn add(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.binary(a, b, None, |x, y| x + y)
    }

    fn sub(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.binary(a, b, None, |x, y| x - y)
    }

    fn mul(&self, a: &SimCiphertext, b: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.binary(a, b, Some(1), |x, y| x * y)
    }

    fn mul_no_relinearize(
        &self,
        a: &SimCiphertext,
        b: &SimCiphertext,
    ) -> Result<SimCiphertext, BackendError> {
        self.binary(a, b, Some(2), |x, y| x * y)
    }

    fn relinearize(&self, a: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        if a.ciphertext_degree != 2 {
            return Err(BackendError::Mismatch(format!(
                "relinearization of a degree-{} ciphertext: nothing to relinearize",
                a.ciphertext_degree
            )));
        }
        Ok(SimCiphertext {
            values: a.values.clone(),
            ciphertext_degree: 1,
            ..a.clone_meta()
        })
    }

    fn add_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.plain(a, p, false, |x, y| x + y)
    }

    fn sub_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.plain(a, p, false, |x, y| x - y)
    }

    fn mul_plain(
        &self,
        a: &SimCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<SimCiphertext, BackendError> {
        self.plain(a, p, true, |x, y| x * y)
    }

    fn add_scalar(&self, a: &SimCiphertext, c: f64) -> Result<SimCiphertext, BackendError> {
        self.unary(a, |x| x + c)
    }

    fn mul_scalar(&self, a: &SimCiphertext, c: f64) -> Result<SimCiphertext, BackendError> {
        let mut out = self.unary(a, |x| x * c)?;
        out.depth += 1;
        out.scale_bits += self.fresh_scale_bits;
        Ok(out)
    }

    fn negate(&self, a: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        self.unary(a, |x| -x)
    }

    fn rotate(&self, a: &SimCiphertext, step: i32) -> Result<SimCiphertext, BackendError> {
        relinearized(a, "rotation")?;
        Ok(self.rotated(a, step))
    }

    fn rotate_hoisted(
        &self,
        a: &SimCiphertext,
        steps: &[i32],
    ) -> Result<Vec<SimCiphertext>, BackendError> {
        relinearized(a, "hoisted rotation")?;
        Ok(steps.iter().map(|&s| self.rotated(a, s)).collect())
    }

    fn rescale(&self, a: &SimCiphertext) -> Result<SimCiphertext, BackendError> {
        relinearized(a, "rescale")?;
        if a.level == Some(0) {
            return Err(BackendError::Failed(
                "rescale at level 0: no level left".into(),
            ));
        }
        Ok(SimCiphertext {
            values: a.values.clone(),
            depth: a.depth,
            scale_bits: a.scale_bits - self.fresh_scale_bits,
            level: a.level.map(|l| l - 1),
            ciphertext_degree: 1,
        })
    }

    fn level_down(&self, a: &SimCiphertext, level: u32) -> Result<SimCiphertext, BackendError> {
        if let Some(from) = a.level
            && level > from
        {
            return Err(BackendError::Failed(format!(
                "level.down from level {from} to {level}: levels only go down"
            )));
        }
        Ok(SimCiphertext {
            values: a.values.clone(),
            level: Some(level),
            ..a.clone_meta()
        })
    }

    fn bootstrap(
        &self,
        a: &SimCiphertext,
        _slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<SimCiphertext, BackendError> {
        relinearized(a, "bootstrap")?;
        Ok(SimCiphertext {
            values: a.values.iter().map(|v| v * scale).collect(),
            depth: 0,
            scale_bits: self.fresh_scale_bits,
            level: Some(level),
            ciphertext_degree: 1,
        })
    }

    fn info(&self, a: &SimCiphertext) -> CiphertextInfo {
        CiphertextInfo {
            depth: Some(a.depth),
            level: a.level,
            scale_bits: a.scale_bits,
        }
    }

    fn peek(&self, a: &SimCiphertext) -> Option<Vec<f64>> {
        Some(a.values.clone())
    }
}

impl Client for SimBackend {
    fn encrypt(&self, values: &[f64]) -> Result<SimCiphertext, BackendError> {
        self.check_len("the slot vector", values.len())?;
        Ok(SimCiphertext {
            values: values.to_vec(),
            depth: 0,
            scale_bits: self.fresh_scale_bits,
            level: self.top_level,
            ciphertext_degree: 1,
        })
    }

    /// A fresh ciphertext at `level` directly (any level, as a client encrypting at a plan's
    /// declared input level would); `None`: the top level.
    fn encrypt_at(
        &self,
        values: &[f64],
        level: Option<u32>,
    ) -> Result<SimCiphertext, BackendError> {
        let mut fresh = self.encrypt(values)?;
        fresh.level = level.or(self.top_level);
        Ok(fresh)
    }

    fn decrypt(&self, a: &SimCiphertext) -> Result<Vec<f64>, BackendError> {
        Ok(a.values.clone())
    }
}

/// Executes `plan` on slot vectors with the `sim` backend: `inputs[i][part]` (`plan.slots` reals)
/// for each encrypted input, with the tensors its plaintexts read (weights and public values,
/// row-major); returns `outputs[o][part]`.
///
/// # Errors
/// As [`execute_with_report`].
pub fn execute(
    plan: &Plan,
    tensors: &HashMap<TensorRef, Vec<f64>>,
    inputs: &[Vec<Vec<f64>>],
) -> Result<Vec<Vec<Vec<f64>>>, VmError> {
    execute_with_report(plan, tensors, inputs).map(|(outputs, _)| outputs)
}

/// [`execute`], also returning the report (depth per output, range-check violations, counts), on
/// [`SimBackend::for_plan`].
///
/// # Errors
/// Everything [`crate::Vm::new`] and [`crate::Vm::run`] reject (invalid plans, leveled plans
/// breaking the level rules, missing tensors, inputs that do not fit the plan, failing
/// instructions and out-of-range bootstrap inputs with their index, disassembly and site);
/// [`VmError::Input`] for a slot vector whose length is not `plan.slots`.
#[allow(clippy::type_complexity)]
pub fn execute_with_report(
    plan: &Plan,
    tensors: &HashMap<TensorRef, Vec<f64>>,
    inputs: &[Vec<Vec<f64>>],
) -> Result<(Vec<Vec<Vec<f64>>>, Report), VmError> {
    run_cleartext(&SimBackend::for_plan(plan), plan, tensors, inputs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn degree_two_products_are_tracked_and_refused_where_relinearization_is_needed() {
        let sim = SimBackend::new(4);
        let x = sim.encrypt(&[1.0, 2.0, 3.0, 4.0]).unwrap();
        let y = sim.encrypt(&[0.5, -1.0, 2.0, 0.0]).unwrap();
        let lazy = sim.mul_no_relinearize(&x, &y).unwrap();
        let eager = sim.mul(&x, &y).unwrap();
        assert_eq!((lazy.ciphertext_degree, eager.ciphertext_degree), (2, 1));
        // Sums, plaintext and scalar operations keep degree 2 (a degree-1 operand promoted).
        let sum = sim.add(&lazy, &eager).unwrap();
        let sum = sim.sub(&sum, &x).unwrap();
        let sum = sim.add_scalar(&sum, 1.0).unwrap();
        let sum = sim.negate(&sum).unwrap();
        let p = PlainSlots {
            index: 0,
            values: &[1.0, 1.0, 1.0, 1.0],
        };
        let sum = sim.add_plain(&sum, p).unwrap();
        let sum = sim.level_down(&sum, 0).unwrap();
        assert_eq!(sum.ciphertext_degree, 2);
        assert_eq!(sum.values, [0.0, 6.0, -9.0, 4.0]);
        for refused in [
            sim.rotate(&sum, 1).map(|_| ()),
            sim.rotate_hoisted(&sum, &[1]).map(|_| ()),
            sim.rescale(&sum).map(|_| ()),
            sim.bootstrap(&sum, 4, 0, 1.0).map(|_| ()),
            sim.mul(&sum, &x).map(|_| ()),
            sim.mul_no_relinearize(&x, &sum).map(|_| ()),
            sim.relinearize(&x).map(|_| ()),
        ] {
            let e = refused.unwrap_err();
            assert!(matches!(e, BackendError::Mismatch(_)), "{e}");
        }
        assert_eq!(
            sim.rotate(&sum, 1).unwrap_err().to_string(),
            "operands do not match: rotation of a degree-2 ciphertext (not relinearized): relin \
             first"
        );
        let relinearized = sim.relinearize(&sum).unwrap();
        assert_eq!(relinearized.ciphertext_degree, 1);
        assert_eq!(relinearized.values, sum.values);
        assert_eq!(relinearized.scale_bits, sum.scale_bits);
        assert_eq!(sim.rotate(&relinearized, 1).unwrap().values[0], 6.0);
    }
}
