//! CKKS bootstrapping: ModRaise → CoeffsToSlots → EvalMod → SlotsToCoeffs, for full (N/2) and
//! sparse (2^k < N/2) slot counts, real and complex messages, with sparse-secret encapsulation.
//!
//! Pipeline (Cheon–Han–Kim–Kim–Song, EUROCRYPT 2018; Bossuat et al., EUROCRYPT 2021; Bossuat,
//! Troncoso-Pastoriza, Hubaux, ePrint 2022/024), for a ciphertext of n slots at any level:
//!
//! 1. level-down to 0 and multiply by the integer F = round(q_0/(Δ·2^ratio)) (message ratio,
//!    exact, no level); switch to the ephemeral sparse secret s' (Hamming weight h; key over
//!    q_0·P' with one special prime, [`mod_raise::EncapsulationKey`]); ModRaise to the top level L, where it decrypts to F·m + q_0·I, ‖I‖_∞ ≤ K
//!    ([`eval_mod::range_bound`]); switch back to the dense secret (level-L key);
//! 2. sparse slots: the normalized trace onto Y = X^{N/(2n)} (log2(N/(2n)) rotations, no level);
//! 3. CoeffsToSlots: `cts_levels` BSGS linear transforms with double-hoisted baby steps
//!    ([`dft`]), then a conjugation to split real and imaginary parts: the slots hold
//!    y = (I + F·m/q_0)/K' in bit-reversed order (two ciphertexts for full slots);
//! 4. EvalMod ([`eval_mod`]): scaled cosine + r double angles = sin(2πx), then the arcsine
//!    correction ≈ 2π·F·m/q_0;
//! 5. SlotsToCoeffs: `stc_levels` linear transforms with q_0/(2π·F·scale) folded in;
//! 6. optionally META-BTS: a second pass on the scaled error of the first (one more level).
//!
//! Every scalar but the exact 1/(N/(2n)) of the trace (1/K', 1/2, q_0/(2π·F·scale)) is folded
//! into the DFT matrices (spread over their groups), so the depth is exactly cts_levels +
//! EvalMod depth + stc_levels (+ 1 for META-BTS). Scales are tracked exactly; the output has the
//! input's scale.
//!
//! Input contract: |slot| ≤ `message_bound` (default 1). With the arcsine, the estimate of
//! F·m/q_0 = ε errs by ≈ 3(2πε)⁵/(40·2π), ε ≤ bound·2^−ratio; far beyond the bound the sine
//! wraps around and the output is garbage. Use [`Bootstrapper::check_input`] on
//! test/simulation paths (it decrypts) to flag violations.

pub mod dft;
pub mod eval_mod;
mod keys_io;
pub mod mod_raise;
pub mod poly_eval;
pub mod sets;

use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::encrypt::Decryptor;
use crate::error::{CkksError, Result};
use crate::keys::{GaloisKeys, KeyGenerator, RelinKey, SecretKey, SwitchingKey};
use crate::ops::{EncodedLinearTransform, Evaluator, LinearTransform};
use crate::params::SecretDistribution;
use crate::ring::automorphism::{conjugation_element, rotation_element};

pub use dft::{DftKind, dft_transforms};
pub use eval_mod::{EvalModPoly, range_bound};
pub use sets::BootParamSet;

/// Factor by which the EvalMod output scale exceeds the prime q_ℓ at its level (2^20).
const EVALMOD_EXTRA_SCALE: f64 = (1u64 << 20) as f64;

/// Bootstrapping options. [`BootstrapConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct BootstrapConfig {
    /// Message slots n (power of two ≤ N/2).
    pub slots: usize,
    /// Levels (linear transforms) of CoeffsToSlots, 1 ≤ · ≤ log2 n (default 3).
    pub cts_levels: usize,
    /// Levels of SlotsToCoeffs (default 3).
    pub stc_levels: usize,
    /// Hamming weight h of the ephemeral sparse secret (default `Some(32)`); `None` raises under
    /// the main secret (K then follows its distribution: h for sparse, N for uniform ternary).
    pub ephemeral_hamming_weight: Option<usize>,
    /// −log2 of the probability that some |I_j| exceeds K (default 40).
    pub log2_failure: f64,
    /// Double-angle steps r (default 2).
    pub double_angle: u32,
    /// −log2 of the target error of the cosine interpolant (default 45).
    pub log2_approx_error: f64,
    /// Declared bound on |slot| of the input (default 1).
    pub message_bound: f64,
    /// log2 of q_0/Δ_eff, the message ratio (default 8, as Lattigo): the input is first multiplied by the
    /// integer F = round(q_0/(Δ·2^ratio)) (exact, no level) so that m/q_0 ≈ 2^−ratio; 1/F is
    /// folded into SlotsToCoeffs. Smaller ratios amplify the EvalMod noise less (by 2^ratio/2π)
    /// but need the arcsine correction.
    pub log_message_ratio: u32,
    /// Arcsine correction after the sine (default true; 2 levels).
    pub arcsine: bool,
    /// META-BTS (Bae, Cheon, Cho, Kim, Kim, "META-BTS: Bootstrapping precision beyond the
    /// limit", CCS 2022, §3): `Some(k)` bootstraps a second time the error of the first pass,
    /// scaled by 2^k, and subtracts it; costs one more level and twice the time. Needs the first
    /// pass to be accurate to ≥ k + 1 bits (default `None`).
    pub meta_bts: Option<u32>,
    /// Encode the DFT diagonals once when the [`Bootstrapper`] is built (default true): saves
    /// their encoding on every call (≈ 20% of a bootstrapping at N = 2^16) for memory of one
    /// polynomial over Q_ℓ·P per diagonal (≈ 3.8 GiB at N16BootFull, full slots).
    pub precompute_transforms: bool,
}

impl BootstrapConfig {
    /// Defaults for `slots` message slots.
    pub fn new(slots: usize) -> Self {
        BootstrapConfig {
            slots,
            cts_levels: 3,
            stc_levels: 3,
            ephemeral_hamming_weight: Some(32),
            log2_failure: 40.0,
            double_angle: 2,
            log2_approx_error: 45.0,
            message_bound: 1.0,
            log_message_ratio: 8,
            arcsine: true,
            meta_bts: None,
            precompute_transforms: true,
        }
    }
}

/// The evaluation keys bootstrapping needs: Galois keys for exactly its rotations (each at the
/// highest level it is used at), conjugation, relinearization up to the EvalMod input level,
/// and the two encapsulation switching keys (dense → sparse at level 0, sparse → dense at L).
#[derive(Debug, Clone)]
pub struct BootstrapKeys {
    /// Rotation and conjugation keys.
    pub galois: GaloisKeys,
    /// Relinearization key.
    pub relin: RelinKey,
    /// s → s' at level 0 over the reduced modulus q_0·P' (None without encapsulation).
    pub to_sparse: Option<mod_raise::EncapsulationKey>,
    /// s' → s at level L (None without encapsulation).
    pub to_dense: Option<SwitchingKey>,
}

impl BootstrapKeys {
    /// In-memory size of all keys, bytes.
    pub fn size_bytes(&self) -> usize {
        self.galois.size_bytes()
            + self.relin.switching_key().size_bytes()
            + self.to_sparse.as_ref().map_or(0, |k| k.size_bytes())
            + self.to_dense.as_ref().map_or(0, |k| k.size_bytes())
    }
}

/// The level/scale plan of a bootstrapping circuit (no keys).
#[derive(Debug, Clone)]
pub struct BootstrapPlan {
    ctx: CkksContext,
    cfg: BootstrapConfig,
    /// Bound K on ‖I‖_∞ and the Gaussian σ behind it.
    k: usize,
    sigma: f64,
    eval_mod: EvalModPoly,
    cts: Vec<LinearTransform>,
    stc: Vec<LinearTransform>,
    /// Scale given to the raised ciphertext (= q at the EvalMod input level).
    raise_scale: f64,
    /// Scale of the EvalMod output.
    evalmod_scale: f64,
    /// Integer F applied before ModRaise (message ratio).
    premul: i64,
}

impl BootstrapPlan {
    /// Plans bootstrapping of `cfg.slots` slots under `ctx`. Errors:
    /// [`CkksError::InvalidSlots`], [`CkksError::InvalidParameters`] (not enough levels, bad
    /// options, no interpolant reaching the target).
    pub fn new(ctx: &CkksContext, cfg: &BootstrapConfig) -> Result<Self> {
        let p = ctx.params();
        let n = cfg.slots;
        if n < 2 || !n.is_power_of_two() || n > p.max_slots() {
            return Err(CkksError::InvalidSlots(format!(
                "bootstrapping needs a power of two in 2..={} slots, got {n}",
                p.max_slots()
            )));
        }
        let log_slots = n.trailing_zeros() as usize;
        let bad = |m: String| Err(CkksError::InvalidParameters(m));
        if !(1..=log_slots).contains(&cfg.cts_levels) || !(1..=log_slots).contains(&cfg.stc_levels)
        {
            return bad(format!(
                "CtS/StC levels must lie in 1..={log_slots} for {n} slots"
            ));
        }
        if !(cfg.message_bound > 0.0 && cfg.message_bound.is_finite()) {
            return bad(format!("message bound {} must be > 0", cfg.message_bound));
        }
        let h = match (cfg.ephemeral_hamming_weight, p.secret) {
            (Some(h), _) => h,
            (None, SecretDistribution::SparseTernary { hamming_weight }) => hamming_weight,
            (None, SecretDistribution::UniformTernary) => p.n(),
        };
        if h == 0 || h > p.n() {
            return bad(format!("Hamming weight {h} outside 1..={}", p.n()));
        }
        let (k, sigma) = range_bound(h, p.n(), cfg.log2_failure);
        let interval = k as f64 + 1.0;
        let eval_mod = EvalModPoly::new(interval, cfg.double_angle, cfg.log2_approx_error)?;
        let evalmod_depth = eval_mod.depth(cfg.arcsine);
        let depth =
            cfg.cts_levels + evalmod_depth + cfg.stc_levels + usize::from(cfg.meta_bts.is_some());
        let top = p.max_level();
        if depth > top {
            return bad(format!(
                "bootstrapping needs {depth} levels (CtS {}, EvalMod {}, StC {}); the chain has {top}",
                cfg.cts_levels, evalmod_depth, cfg.stc_levels
            ));
        }
        let q0 = p.q[0] as f64;
        let full = n == p.max_slots();
        let evalmod_in = top - cfg.cts_levels;
        let evalmod_out = evalmod_in - evalmod_depth;
        let raise_scale = p.q[evalmod_in] as f64;
        // The EvalMod output (|v| ≤ 1) is kept at a large scale: SlotsToCoeffs amplifies its
        // absolute error by q_0/(2π·Δ), and the slot-wise rounding noise of a rescale is ≈ N/4
        // at any scale (see the module docs).
        let evalmod_scale = (p.q[evalmod_out] as f64) * EVALMOD_EXTRA_SCALE;
        let cts_factor = raise_scale / (2.0 * q0 * interval);
        let ratio = (cfg.log_message_ratio as f64).exp2();
        if !(4.0..=q0 / p.default_scale()).contains(&ratio) {
            return bad(format!(
                "message ratio 2^{} outside 2^4..=q_0/Δ",
                cfg.log_message_ratio
            ));
        }
        let premul = (q0 / (p.default_scale() * ratio)).round() as i64;
        let stc_factor = q0 / (2.0 * std::f64::consts::PI * evalmod_scale * premul as f64);
        let cts = dft_transforms(DftKind::CoeffsToSlots, n, full, cfg.cts_levels, cts_factor)?;
        let stc = dft_transforms(DftKind::SlotsToCoeffs, n, full, cfg.stc_levels, stc_factor)?;
        Ok(BootstrapPlan {
            ctx: ctx.clone(),
            cfg: cfg.clone(),
            k,
            sigma,
            eval_mod,
            cts,
            stc,
            raise_scale,
            evalmod_scale,
            premul,
        })
    }

    /// Levels consumed by bootstrapping (CtS + EvalMod + StC).
    pub fn depth(&self) -> usize {
        self.pass_depth() + usize::from(self.cfg.meta_bts.is_some())
    }

    /// Levels consumed by one pass (CtS + EvalMod + StC).
    fn pass_depth(&self) -> usize {
        self.cfg.cts_levels + self.eval_mod.depth(self.cfg.arcsine) + self.cfg.stc_levels
    }

    /// Level after one pass.
    fn pass_output_level(&self) -> usize {
        self.ctx.max_level() - self.pass_depth()
    }

    /// Level of the bootstrapped ciphertext (levels left for the application).
    pub fn output_level(&self) -> usize {
        self.ctx.max_level() - self.depth()
    }

    /// The bound K on ‖I‖_∞, the σ it was derived from, and −log2 of the failure probability.
    pub fn range(&self) -> (usize, f64, f64) {
        (self.k, self.sigma, self.cfg.log2_failure)
    }

    /// The EvalMod polynomial.
    pub fn eval_mod(&self) -> &EvalModPoly {
        &self.eval_mod
    }

    /// A-priori precision estimate in bits (−log2 of the max slot error for |slot| ≤ bound B,
    /// coefficients |w| ≤ B): the sine's error, (2πε)³/6 or with the arcsine 3(2πε)⁵/40 at
    /// ε = B·2^−ratio, plus the interpolant's error amplified by 4^r, all times 2^ratio/(2π).
    /// Ciphertext noise is not included (it grows like √n with the slot count n); the tests
    /// measure the real figure.
    pub fn expected_precision_bits(&self) -> f64 {
        let two_pi = 2.0 * std::f64::consts::PI;
        let ratio = (self.cfg.log_message_ratio as f64).exp2();
        let t = two_pi * self.cfg.message_bound / ratio;
        let sine = if self.cfg.arcsine {
            3.0 * t.powi(5) / 40.0
        } else {
            t.powi(3) / 6.0
        };
        let poly = 4f64.powi(self.cfg.double_angle as i32) * self.eval_mod.approx_error;
        -((sine + poly) * ratio / two_pi).log2()
    }

    /// (rotation step, highest level used) for every rotation of the circuit.
    fn rotations(&self) -> Vec<(i64, usize)> {
        let top = self.ctx.max_level();
        let mut out: Vec<(i64, usize)> =
            mod_raise::trace_steps(self.ctx.params().log_n, self.cfg.slots)
                .into_iter()
                .map(|s| (s, top))
                .collect();
        for (i, lt) in self.cts.iter().enumerate() {
            out.extend(lt.rotation_steps().into_iter().map(|s| (s, top - i)));
        }
        let stc_top = self.pass_output_level() + self.cfg.stc_levels;
        for (i, lt) in self.stc.iter().enumerate() {
            out.extend(lt.rotation_steps().into_iter().map(|s| (s, stc_top - i)));
        }
        out
    }

    /// The Galois elements the circuit needs, each with the highest level it is used at.
    fn galois_levels(&self) -> std::collections::BTreeMap<u64, usize> {
        let log_n = self.ctx.params().log_n;
        let mut levels: std::collections::BTreeMap<u64, usize> = Default::default();
        for (step, level) in self.rotations() {
            let g = rotation_element(log_n, step);
            if g != 1 {
                let e = levels.entry(g).or_insert(level);
                *e = (*e).max(level);
            }
        }
        levels.insert(
            conjugation_element(log_n),
            self.ctx.max_level() - self.cfg.cts_levels,
        );
        levels
    }

    /// (number of Galois keys, bytes of all bootstrapping keys) before generating them: a
    /// switching key up to level ℓ has ⌈(ℓ + 1)/α⌉ digits of two polynomials over ℓ + 1 + K
    /// limbs of N words.
    pub fn key_estimate(&self) -> (usize, usize) {
        let p = self.ctx.params();
        let bytes = |level: usize| {
            (level + 1).div_ceil(p.alpha()) * 2 * (level + 1 + p.p.len()) * p.n() * 8
        };
        let galois = self.galois_levels();
        let top = self.ctx.max_level();
        let mut total: usize = galois.values().map(|&l| bytes(l)).sum();
        total += bytes(top - self.cfg.cts_levels);
        if self.cfg.ephemeral_hamming_weight.is_some() {
            // The dense → sparse key: one digit over q_0·P'.
            let encaps = 2 * (1 + mod_raise::ENCAPSULATION_SPECIAL_PRIMES) * p.n() * 8;
            total += encaps + bytes(top);
        }
        (galois.len(), total)
    }

    /// Generates the bootstrapping keys for `sk` (and a fresh ephemeral sparse secret, dropped
    /// after use). Errors: key generation errors (mismatched parameters, entropy).
    pub fn generate_keys(&self, kg: &mut KeyGenerator, sk: &SecretKey) -> Result<BootstrapKeys> {
        let top = self.ctx.max_level();
        let mut galois = GaloisKeys::default();
        for (g, level) in self.galois_levels() {
            galois.insert(kg.galois_key(sk, g, level)?);
        }
        let relin = kg.relin_key(sk, top - self.cfg.cts_levels)?;
        let (to_sparse, to_dense) = match self.cfg.ephemeral_hamming_weight {
            Some(h) => {
                let sparse = mod_raise::sparse_secret(&self.ctx, h)?;
                (
                    Some(mod_raise::EncapsulationKey::generate(
                        kg, &self.ctx, sk, &sparse,
                    )?),
                    Some(kg.switching_key_between(&sparse, sk, top)?),
                )
            }
            None => (None, None),
        };
        Ok(BootstrapKeys {
            galois,
            relin,
            to_sparse,
            to_dense,
        })
    }
}

/// A bootstrapping circuit with its keys (and, optionally, its encoded DFT diagonals).
#[derive(Debug, Clone)]
pub struct Bootstrapper {
    plan: BootstrapPlan,
    keys: BootstrapKeys,
    eval: Evaluator,
    /// CtS and StC transforms encoded at their levels (`precompute_transforms`).
    encoded: Option<(Vec<EncodedLinearTransform>, Vec<EncodedLinearTransform>)>,
}

impl Bootstrapper {
    /// Plans the circuit and generates its keys from the secret key.
    pub fn new(ctx: &CkksContext, cfg: &BootstrapConfig, sk: &SecretKey) -> Result<Self> {
        let plan = BootstrapPlan::new(ctx, cfg)?;
        let keys = plan.generate_keys(&mut KeyGenerator::new(ctx)?, sk)?;
        Self::from_keys(plan, keys)
    }

    /// From a plan and previously generated keys (e.g. received from the client). Errors:
    /// missing encapsulation keys when the plan uses them.
    pub fn from_keys(plan: BootstrapPlan, keys: BootstrapKeys) -> Result<Self> {
        if plan.cfg.ephemeral_hamming_weight.is_some()
            && (keys.to_sparse.is_none() || keys.to_dense.is_none())
        {
            return Err(CkksError::InvalidInput(
                "sparse-secret encapsulation needs both switching keys".into(),
            ));
        }
        let eval = Evaluator::new(&plan.ctx);
        let encoded = if plan.cfg.precompute_transforms {
            let top = plan.ctx.max_level();
            let stc_top = plan.pass_output_level() + plan.cfg.stc_levels;
            let encode = |lts: &[LinearTransform], first: usize| {
                lts.iter()
                    .enumerate()
                    .map(|(i, lt)| lt.encode(&plan.ctx, first - i))
                    .collect::<Result<Vec<_>>>()
            };
            Some((encode(&plan.cts, top)?, encode(&plan.stc, stc_top)?))
        } else {
            None
        };
        Ok(Bootstrapper {
            plan,
            keys,
            eval,
            encoded,
        })
    }

    /// The plan (depth, levels, range, precision estimate).
    pub fn plan(&self) -> &BootstrapPlan {
        &self.plan
    }
    /// Levels consumed.
    pub fn depth(&self) -> usize {
        self.plan.depth()
    }
    /// Level of the output (levels left after bootstrapping).
    pub fn output_level(&self) -> usize {
        self.plan.output_level()
    }
    /// Message slots.
    pub fn slots(&self) -> usize {
        self.plan.cfg.slots
    }
    /// A-priori precision estimate, bits ([`BootstrapPlan::expected_precision_bits`]).
    pub fn expected_precision_bits(&self) -> f64 {
        self.plan.expected_precision_bits()
    }
    /// Bytes of all bootstrapping keys.
    pub fn key_bytes(&self) -> usize {
        self.keys.size_bytes()
    }
    /// Bytes of the pre-encoded DFT diagonals (0 without `precompute_transforms`).
    pub fn precomputed_bytes(&self) -> usize {
        self.encoded.as_ref().map_or(0, |(c, s)| {
            c.iter()
                .chain(s)
                .map(EncodedLinearTransform::size_bytes)
                .sum()
        })
    }

    /// Debug check of the input contract on test/simulation paths: decrypts `ct` and fails with
    /// [`CkksError::InvalidInput`] if some |slot| exceeds the declared bound (bootstrapping such
    /// an input would silently return inaccurate slots).
    pub fn check_input(&self, sk: &SecretKey, ct: &Ciphertext) -> Result<()> {
        let z = Decryptor::new(&self.plan.ctx).decrypt_complex(sk, ct)?;
        let max = z.iter().map(|v| v.norm()).fold(0.0, f64::max);
        if max > self.plan.cfg.message_bound {
            return Err(CkksError::InvalidInput(format!(
                "bootstrapping input has |slot| = {max:.3e} above the declared bound {}",
                self.plan.cfg.message_bound
            )));
        }
        Ok(())
    }

    /// Bootstraps a degree-1 ciphertext of `slots()` slots at any level with scale ≤ q_0/2^8:
    /// returns it at [`Self::output_level`] with the input's scale.
    /// Errors: slot or degree mismatch, scale too large for EvalMod, key errors.
    pub fn bootstrap(&self, ct: &Ciphertext) -> Result<Ciphertext> {
        let first = self.bootstrap_inspect(ct, &mut |_, _| {})?;
        match self.plan.cfg.meta_bts {
            None => Ok(first),
            Some(k) => self.refine(ct, &first, k),
        }
    }

    /// Group `i` of a DFT (not rescaled), from the encoded diagonals when precomputed.
    fn dft(&self, ct: &Ciphertext, kind: DftKind, i: usize) -> Result<Ciphertext> {
        let gks = &self.keys.galois;
        match &self.encoded {
            Some((cts, stc)) => {
                let lt = match kind {
                    DftKind::CoeffsToSlots => &cts[i],
                    DftKind::SlotsToCoeffs => &stc[i],
                };
                self.eval.linear_transform_encoded(ct, lt, gks)
            }
            None => {
                let lt = match kind {
                    DftKind::CoeffsToSlots => &self.plan.cts[i],
                    DftKind::SlotsToCoeffs => &self.plan.stc[i],
                };
                self.eval.linear_transform(ct, lt, gks)
            }
        }
    }

    /// META-BTS second pass: first + BTS((ct − first)·2^k)·2^−k, the last product at the scale of
    /// the prime it is rescaled by, so the result keeps the input's scale (one level).
    fn refine(&self, ct: &Ciphertext, first: &Ciphertext, k: u32) -> Result<Ciphertext> {
        let eval = &self.eval;
        if k > 40 {
            return Err(CkksError::InvalidInput(format!(
                "META-BTS scaling 2^{k} above 2^40"
            )));
        }
        let err = eval.sub(&eval.level_down(ct, 0)?, &eval.level_down(first, 0)?)?;
        let second = self.bootstrap_inspect(&eval.mul_integer(&err, 1i64 << k)?, &mut |_, _| {})?;
        let level = first.level;
        let q = self.plan.ctx.params().q[level] as f64;
        let mut corr = eval.rescale(&eval.mul_const(&second, (-(k as f64)).exp2(), q)?)?;
        corr.set_scale(first.scale);
        eval.add(&eval.level_down(first, level - 1)?, &corr)
    }

    /// Bootstraps `ct` and multiplies the result by `multiplier`, returned at
    /// [`Self::output_level`] with scale `out_scale` (e.g. the scale a leveled program expects at
    /// that level, whatever the input's): no level is spent on either, because the factor
    /// `multiplier · out_scale / ct.scale()` is folded into the scale EvalMod lands on (exact,
    /// see [`EvalModPoly::evaluate`]) and SlotsToCoeffs carries it through. This undoes a
    /// compiler's pre-scaling of the input into [−1, 1] for free. The output error is the
    /// bootstrapping error times |multiplier|.
    ///
    /// Errors: as [`Self::bootstrap`]; [`CkksError::InvalidInput`] for a multiplier that is zero,
    /// not finite or whose folded factor lies outside [2^−30, 2^30], a non-positive
    /// `out_scale`, or a configuration with META-BTS (its second pass needs the unscaled
    /// first).
    pub fn bootstrap_scaled(
        &self,
        ct: &Ciphertext,
        multiplier: f64,
        out_scale: f64,
    ) -> Result<Ciphertext> {
        if self.plan.cfg.meta_bts.is_some() {
            return Err(CkksError::InvalidInput(
                "scaled bootstrapping is not available with META-BTS".into(),
            ));
        }
        if !(out_scale.is_finite() && out_scale > 0.0) {
            return Err(CkksError::InvalidInput(format!(
                "output scale {out_scale} must be positive"
            )));
        }
        let gain = multiplier.abs() * out_scale / ct.scale;
        if !(gain.is_finite() && ((-30f64).exp2()..=30f64.exp2()).contains(&gain)) {
            return Err(CkksError::InvalidInput(format!(
                "bootstrapping multiplier {multiplier} (factor {gain:e} with the scales) outside \
                 [2^-30, 2^30]"
            )));
        }
        let out = self.pass(ct, gain, out_scale, &mut |_, _| {})?;
        if multiplier < 0.0 {
            self.eval.negate(&out)
        } else {
            Ok(out)
        }
    }

    /// One bootstrapping pass (without the META-BTS refinement) calling `probe(stage,
    /// ciphertext)` after each stage ("raise", "cts", "evalmod", "stc"), for precision analysis
    /// in tests.
    pub fn bootstrap_inspect(
        &self,
        ct: &Ciphertext,
        probe: &mut dyn FnMut(&str, &Ciphertext),
    ) -> Result<Ciphertext> {
        self.pass(ct, 1.0, ct.scale, probe)
    }

    /// One pass whose output message is `gain` times the input's polynomial, read at
    /// `out_scale`: EvalMod lands on `gain` times its usual scale while its bookkeeping keeps the
    /// usual one, so SlotsToCoeffs carries the factor (no level).
    fn pass(
        &self,
        ct: &Ciphertext,
        gain: f64,
        out_scale: f64,
        probe: &mut dyn FnMut(&str, &Ciphertext),
    ) -> Result<Ciphertext> {
        let ctx = &self.plan.ctx;
        let eval = &self.eval;
        let p = ctx.params();
        ctx.check_id(ct.params_id)?;
        ct.expect_degree(1)?;
        let n = self.slots();
        if ct.slots != n {
            return Err(CkksError::InvalidSlots(format!(
                "bootstrapper for {n} slots, ciphertext has {}",
                ct.slots
            )));
        }
        let max_scale = 2.0 * p.default_scale();
        if ct.scale > max_scale {
            return Err(CkksError::InvalidInput(format!(
                "input scale 2^{:.1} too large for bootstrapping (at most 2^{:.1}, twice the \
                 default scale, for the message ratio 2^{})",
                ct.scale.log2(),
                max_scale.log2(),
                self.plan.cfg.log_message_ratio
            )));
        }
        let keys = &self.keys;
        let gks = &keys.galois;
        let top = ctx.max_level();
        // 1. ModRaise (with encapsulation).
        let mut low = eval.mul_integer(&eval.level_down(ct, 0)?, self.plan.premul)?;
        if let Some(k) = &keys.to_sparse {
            low = k.switch(ctx, &low)?;
        }
        let mut x = mod_raise::mod_raise(ctx, &low, top)?;
        if let Some(k) = &keys.to_dense {
            x = eval.switch_key(&x, k)?;
        }
        // 2. Trace for sparse slots.
        let full = n == p.max_slots();
        if !full {
            x = mod_raise::trace(eval, &x, gks)?;
        }
        // 3. CoeffsToSlots.
        x.scale = self.plan.raise_scale;
        x.slots = if full { n } else { 2 * n };
        probe("raise", &x);
        for i in 0..self.plan.cts.len() {
            x = eval.rescale(&self.dft(&x, DftKind::CoeffsToSlots, i)?)?;
        }
        let conj = eval.conjugate(&x, gks)?;
        let parts = if full {
            let re = eval.add(&x, &conj)?;
            let im = eval.mul_monomial(&eval.sub(&x, &conj)?, 3 * ctx.n() / 2)?;
            vec![re, im]
        } else {
            vec![eval.add(&x, &conj)?]
        };
        for c in &parts {
            probe("cts", c);
        }
        // 4. EvalMod.
        let out_evalmod = self.plan.pass_output_level() + self.plan.cfg.stc_levels;
        let evalmod = |c: &Ciphertext| {
            let mut out = self.plan.eval_mod.evaluate(
                eval,
                &keys.relin,
                c,
                self.plan.cfg.arcsine,
                out_evalmod,
                self.plan.evalmod_scale * gain,
            )?;
            out.set_scale(self.plan.evalmod_scale);
            Ok::<_, CkksError>(out)
        };
        // Full slots: the two halves are independent (run side by side with several threads).
        let moded = match parts.as_slice() {
            [re, im] => {
                let (re, im) = rayon::join(|| evalmod(re), || evalmod(im));
                vec![re?, im?]
            }
            _ => parts.iter().map(evalmod).collect::<Result<Vec<_>>>()?,
        };
        for c in &moded {
            probe("evalmod", c);
        }
        // 5. SlotsToCoeffs.
        let mut y = match moded.as_slice() {
            [re, im] => eval.add(re, &eval.mul_monomial(im, ctx.n() / 2)?)?,
            [u] => u.clone(),
            _ => unreachable!("one or two EvalMod outputs"),
        };
        for i in 0..self.plan.stc.len() {
            y = eval.rescale(&self.dft(&y, DftKind::SlotsToCoeffs, i)?)?;
        }
        y.slots = n;
        y.scale = out_scale;
        probe("stc", &y);
        Ok(y)
    }
}
