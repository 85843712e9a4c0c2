//! From a plan's [`Parameters`] to a CKKS context: the named bootstrappable set, its security
//! check, and the scale every ciphertext holds at each level.
//!
//! **Scales.** A leveled plan reasons in scale degrees (Δ^1 or Δ^2 at each level, see
//! `cachemir_ir::plan::parameters`), but a rescale divides by the prime q_ℓ, which is only close
//! to Δ, and the chain mixes 45-, 55- and 60-bit primes. The backend therefore gives every level
//! ℓ one scale S_ℓ for degree 1 and S_ℓ² for degree 2, with S_0 = Δ and S_ℓ = √(S_{ℓ−1}·q_ℓ), so
//! that a rescale of degree 2 at level ℓ lands exactly on S_{ℓ−1} (S_ℓ²/q_ℓ) and all values at
//! one level and degree share one scale: additions never see two scales. Going up the chain the
//! deviation from Δ halves at each level, so over the 45-bit application and SlotsToCoeffs
//! primes S_ℓ stays within 2^−20 of Δ; above them S_ℓ climbs toward the 55–60-bit primes (≈ 2^57
//! at the top), which only means more precision for values encrypted there. (The same
//! construction as OpenFHE's FLEXIBLEAUTO scaling, anchored at the bottom of the chain so it is
//! stable going up.) Operations that would leave the chain of scales correct themselves at no
//! level cost: see `level_down` and `bootstrap` in the backend.

use cachemir_ckks::bootstrap::BootParamSet;
use cachemir_ckks::{CkksContext, Security};
use cachemir_ir::plan::{ContentHash, Parameters, Plan};

use super::CpuError;

/// Whether toy (insecure) parameter sets are accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Insecure {
    /// Refuse toy sets (the default: real deployments).
    Refuse,
    /// Accept them (tests, `--insecure`).
    Allow,
}

impl Insecure {
    /// [`Insecure::Allow`] when the user asked for insecure parameters (`--insecure`).
    pub fn allowed_if(asked: bool) -> Self {
        if asked {
            Insecure::Allow
        } else {
            Insecure::Refuse
        }
    }
}

/// A plan's parameters resolved to a CKKS context, with the scale of each level.
#[derive(Debug, Clone)]
pub struct CpuParameters {
    set: BootParamSet,
    plan: Parameters,
    ctx: CkksContext,
    /// S_ℓ for ℓ = 0 ..= L (see the module documentation).
    scales: Vec<f64>,
}

impl CpuParameters {
    /// The parameters of a leveled plan.
    ///
    /// # Errors
    /// [`CpuError::Unleveled`] for a plan without parameters, and as [`CpuParameters::new`].
    pub fn for_plan(plan: &Plan, insecure: Insecure) -> Result<Self, CpuError> {
        let parameters = plan.parameters.as_ref().ok_or(CpuError::Unleveled)?;
        Self::new(parameters, insecure)
    }

    /// Resolves `parameters` (by [`Parameters::name`]) to a named set of the CKKS crate and
    /// checks that the set has the level structure the plan was compiled for.
    ///
    /// # Errors
    /// [`CpuError::UnknownSet`] for a name the CKKS crate does not know;
    /// [`CpuError::InsecureRefused`] for a toy set under [`Insecure::Refuse`];
    /// [`CpuError::ParameterMismatch`] when the plan's description (ring degree, levels, scale,
    /// special primes, dnum, bootstrap level, toy flag) differs from the set's;
    /// [`CpuError::Ckks`] when the context cannot be built (e.g. the security check fails).
    pub fn new(parameters: &Parameters, insecure: Insecure) -> Result<Self, CpuError> {
        let set =
            BootParamSet::from_name(&parameters.name).ok_or_else(|| CpuError::UnknownSet {
                name: parameters.name.clone(),
                known: BootParamSet::ALL.iter().map(|s| s.name()).collect(),
            })?;
        if set.is_toy() && insecure == Insecure::Refuse {
            return Err(CpuError::InsecureRefused(set.name()));
        }
        let params = set.params()?;
        let mismatch = |field: &'static str, plan: String, set: String| {
            Err(CpuError::ParameterMismatch {
                name: parameters.name.clone(),
                field,
                plan,
                set,
            })
        };
        let max_level = params.max_level();
        let checks: [(&'static str, u64, u64); 5] = [
            ("log_n", parameters.log_n.into(), params.log_n.into()),
            (
                "log_scale",
                parameters.log_scale.into(),
                params.log_scale.into(),
            ),
            ("max_level", parameters.max_level.into(), max_level as u64),
            (
                "special_primes",
                parameters.special_primes.into(),
                params.p.len() as u64,
            ),
            ("dnum", parameters.dnum.into(), params.dnum as u64),
        ];
        for (field, plan, set) in checks {
            if plan != set {
                return mismatch(field, plan.to_string(), set.to_string());
            }
        }
        // The default bootstrapping circuit leaves the set's application levels.
        let bootstrap_level = set.application_levels() as u32;
        if parameters.bootstrap_level != Some(bootstrap_level) {
            return mismatch(
                "bootstrap_level",
                format!("{:?}", parameters.bootstrap_level),
                format!("Some({bootstrap_level})"),
            );
        }
        if parameters.toy != set.is_toy() {
            return mismatch("toy", parameters.toy.to_string(), set.is_toy().to_string());
        }
        let security = if set.is_toy() {
            Security::InsecureForTesting
        } else {
            Security::Bits128
        };
        let ctx = CkksContext::new(params, security)?;
        let q = &ctx.params().q;
        let mut scales = Vec::with_capacity(q.len());
        scales.push(f64::from(parameters.log_scale).exp2());
        for &prime in &q[1..] {
            let below = scales[scales.len() - 1];
            scales.push((below * prime as f64).sqrt());
        }
        Ok(Self {
            set,
            plan: parameters.clone(),
            ctx,
            scales,
        })
    }

    /// The named set.
    pub fn set(&self) -> BootParamSet {
        self.set
    }

    /// The plan's description of the parameters.
    pub fn parameters(&self) -> &Parameters {
        &self.plan
    }

    /// The CKKS context.
    pub fn context(&self) -> &CkksContext {
        &self.ctx
    }

    /// SHA-256 of the CKKS parameters (primes, ring degree, dnum, secret distribution): what
    /// keys, ciphertexts and plans must agree on.
    pub fn hash(&self) -> ContentHash {
        ContentHash(self.ctx.hash())
    }

    /// Top level L.
    pub fn max_level(&self) -> usize {
        self.ctx.max_level()
    }

    /// Maximum slots per ciphertext (N/2).
    pub fn max_slots(&self) -> usize {
        self.ctx.n() / 2
    }

    /// The scale of a value of scale degree `degree` (1 or 2) at `level`: S_ℓ^degree.
    ///
    /// # Panics
    /// Never for `level ≤ L`; callers check levels against the context first.
    pub fn scale(&self, level: usize, degree: u8) -> f64 {
        self.scales[level].powi(i32::from(degree))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ir::plan::parameters::by_name;

    #[test]
    fn toy_sets_need_insecure_and_descriptions_must_match() {
        let toy = by_name("ToyBootN12").unwrap();
        assert!(matches!(
            CpuParameters::new(&toy, Insecure::Refuse),
            Err(CpuError::InsecureRefused("ToyBootN12"))
        ));
        let p = CpuParameters::new(&toy, Insecure::Allow).unwrap();
        // The scale chain: exact rescale landing, within 2^-20 of Δ over the 45-bit primes.
        let delta = 2f64.powi(45);
        for level in 1..=12 {
            let q = p.context().params().q[level] as f64;
            let landed = p.scale(level, 2) / q;
            assert!((landed / p.scale(level - 1, 1) - 1.0).abs() < 1e-12);
            assert!(
                (p.scale(level, 1) / delta - 1.0).abs() < 2f64.powi(-20),
                "{level}"
            );
        }
        let mut other = toy.clone();
        other.dnum = 4;
        let err = CpuParameters::new(&other, Insecure::Allow).unwrap_err();
        assert!(err.to_string().contains("dnum"), "{err}");
        other.name = "Nonsense".into();
        let err = CpuParameters::new(&other, Insecure::Allow).unwrap_err();
        assert!(err.to_string().contains("N16BootFull"), "{err}");
    }
}
