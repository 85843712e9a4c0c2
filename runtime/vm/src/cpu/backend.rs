//! [`CpuBackend`]: the plan instruction set on RNS-CKKS ciphertexts.
//!
//! Every value is a ciphertext of degree 1 (two polynomials, relinearized) or, between a `mul.nr`
//! and its `relin`, of degree 2 (three polynomials: `add`, `sub` — a degree-1 operand promoted —,
//! the plaintext and scalar operations and `level.down` work on every polynomial; everything
//! else refuses it,
//! the rule of `cachemir_ir::plan::validate_degrees`), with a **scale degree** d ∈ {1, 2} and the
//! scale S_ℓ^d of its level (see [`super::setup`]): fresh encryptions, `boot` outputs and
//! `rescale` results have d = 1; `mul`, `mul.p` and `mul.s` give d = 2 (plaintexts and
//! constants encoded at S_ℓ); `rescale` of d = 2 lands exactly on S_{ℓ−1}; `add.p`/`sub.p`
//! encode at the ciphertext's own scale. Two operations would leave the chain of scales and
//! correct themselves at no level cost:
//!
//! - `level.down` from ℓ to t < ℓ: degree 1 drops to t + 1, multiplies by the integer
//!   round(S_t·q_{t+1}/S_ℓ) and rescales (the rescale drops the last level asked for); degree 2
//!   rescales at ℓ, drops to t and multiplies by the integer round(S_t²/S_{ℓ−1}). The integer's
//!   rounding leaves a relative scale error below 2^−44, far below the noise.
//! - `boot`: the input (any level; one level is spent first when its scale exceeds 2Δ, which only
//!   happens above the 45-bit primes, whose levels bootstrapping discards anyway) is bootstrapped
//!   with the plan's `scale` and the scale S_ℓ of the output level folded into EvalMod's output
//!   scale ([`Bootstrapper::bootstrap_scaled`]), then dropped to the target level.
//!
//! Rotations, `mul` and `relin` are one key switch each (`mul.nr` none); `rot.h` decomposes its
//! input once and shares it across steps (hoisting). Plaintexts are encoded just in time at the instruction's level and scale
//! and kept in a [`PlaintextCache`] bounded by [`CpuOptions::plaintext_cache_bytes`].

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cachemir_ckks::bootstrap::{BootstrapConfig, BootstrapPlan, Bootstrapper};
use cachemir_ckks::{
    Ciphertext, CkksError, Csprng, Decryptor, Encoder, Encryptor, Evaluator, GaloisKeys, Plaintext,
    RelinKey, SecretKey,
};
use cachemir_ir::plan::Plan;

use super::cache::{CacheStats, PlaintextCache};
use super::keys::{ClientKeys, EvaluationKeys, KeyRequirements, bootstrap_slots};
use super::{CpuError, CpuParameters, ParametersMismatch};
use crate::backend::{Backend, BackendError, CiphertextInfo, Client, PlainSlots};

/// Tuning of a [`CpuBackend`].
#[derive(Debug, Clone, PartialEq)]
pub struct CpuOptions {
    /// Bytes of encoded plaintexts kept for reuse (least recently used evicted first).
    pub plaintext_cache_bytes: u64,
    /// Encode the bootstrapping DFT matrices once when the backend is built (≈ 20% faster
    /// bootstraps; ≈ 3.8 GiB per slot count at N = 2^16, a few MiB at N = 2^12).
    pub precompute_bootstrap_transforms: bool,
    /// With the secret key (tests): let the VM read values ([`Backend::peek`]) for its range
    /// checks and bootstrap input checks.
    pub peek_with_secret: bool,
}

impl Default for CpuOptions {
    fn default() -> Self {
        Self {
            plaintext_cache_bytes: 1 << 30,
            precompute_bootstrap_transforms: true,
            peek_with_secret: true,
        }
    }
}

/// A ciphertext of the `cpu` backend: a CKKS ciphertext and its scale degree (see the module
/// documentation).
#[derive(Debug, Clone)]
pub struct CpuCiphertext {
    ct: Ciphertext,
    degree: u8,
}

impl CpuCiphertext {
    /// The CKKS ciphertext.
    pub fn ciphertext(&self) -> &Ciphertext {
        &self.ct
    }

    /// The scale degree (1 or 2).
    pub fn degree(&self) -> u8 {
        self.degree
    }

    /// A ciphertext read from elsewhere (a file), its scale degree recognised from its scale.
    ///
    /// # Errors
    /// [`CpuError::Format`] for a ciphertext of more than two parts, of another slot count than
    /// `slots`, or whose scale is neither S_ℓ nor S_ℓ² of its level.
    pub fn from_ciphertext(
        ct: Ciphertext,
        params: &CpuParameters,
        slots: usize,
    ) -> Result<Self, CpuError> {
        let bad = |message: String| CpuError::Format {
            what: "ciphertext".into(),
            message,
        };
        if ct.degree() != 1 {
            return Err(bad(format!("{} polynomials (2 expected)", ct.degree() + 1)));
        }
        if ct.slots() != slots {
            return Err(bad(format!("{} slots; the plan has {slots}", ct.slots())));
        }
        let degree = [1u8, 2]
            .into_iter()
            .find(|&d| (ct.scale() / params.scale(ct.level(), d) - 1.0).abs() < 1e-9)
            .ok_or_else(|| {
                bad(format!(
                    "scale 2^{:.3} is not a scale of level {}",
                    ct.scale().log2(),
                    ct.level()
                ))
            })?;
        Ok(Self { ct, degree })
    }
}

/// What a [`CpuBackend`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CpuStats {
    pub bootstraps: u64,
    pub bootstrap_time: Duration,
    /// Key switches: relinearizations and rotations (bootstrapping's own not counted).
    pub key_switches: u64,
    pub plaintexts_encoded: u64,
    pub cache: CacheStats,
}

/// The `cpu` backend (see the module documentation). Shared by threads (`&self` methods).
pub struct CpuBackend {
    params: CpuParameters,
    eval: Evaluator,
    encoder: Encoder,
    slots: usize,
    relin: Option<RelinKey>,
    galois: GaloisKeys,
    bootstrappers: BTreeMap<usize, Bootstrapper>,
    secret: Option<SecretKey>,
    options: CpuOptions,
    cache: Mutex<PlaintextCache>,
    stats: Mutex<CpuStats>,
}

impl std::fmt::Debug for CpuBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CpuBackend")
            .field("parameters", &self.params.parameters().name)
            .field("slots", &self.slots)
            .field("rotation_keys", &self.galois.len())
            .field(
                "bootstrap_slots",
                &self.bootstrappers.keys().collect::<Vec<_>>(),
            )
            .field("client", &self.secret.is_some())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn ckks(e: CkksError) -> BackendError {
    match e {
        CkksError::LevelMismatch(..)
        | CkksError::ScaleMismatch(..)
        | CkksError::InvalidSlots(_) => BackendError::Mismatch(e.to_string()),
        CkksError::MissingGaloisKey { .. } | CkksError::KeyLevelTooLow { .. } => {
            BackendError::Unsupported {
                backend: "cpu",
                what: e.to_string(),
            }
        }
        _ => BackendError::Failed(e.to_string()),
    }
}

impl CpuBackend {
    /// The server side for `plan` with its evaluation keys.
    ///
    /// # Errors
    /// [`CpuError::Plan`] for a plan that does not validate or breaks the level rules;
    /// [`CpuError::ParametersHash`] when the plan's parameters are not the keys';
    /// [`CpuError::MissingKeys`] when the keys do not cover the plan;
    /// [`CpuError::Format`] for a slot count the ring cannot hold; [`CpuError::Ckks`] when a
    /// bootstrapping circuit cannot be built.
    pub fn new(plan: &Plan, keys: EvaluationKeys, options: CpuOptions) -> Result<Self, CpuError> {
        let mut backend = Self::bare(plan, &keys.params, options)?;
        let requirements = KeyRequirements::for_plan(plan)?;
        keys.check_covers(&requirements)?;
        let EvaluationKeys {
            relin,
            galois,
            mut bootstrap,
            ..
        } = keys;
        for slots in requirements.bootstrap_slots {
            let mut cfg = BootstrapConfig::new(slots);
            cfg.precompute_transforms = backend.options.precompute_bootstrap_transforms;
            let circuit = BootstrapPlan::new(backend.params.context(), &cfg)?;
            let keys = bootstrap.remove(&slots).ok_or_else(|| {
                CpuError::MissingKeys(format!("bootstrapping keys for {slots} slots"))
            })?;
            backend
                .bootstrappers
                .insert(slots, Bootstrapper::from_keys(circuit, keys)?);
        }
        backend.relin = relin;
        backend.galois = galois;
        Ok(backend)
    }

    /// The client side for `plan`: encryption and decryption only (no evaluation keys).
    ///
    /// # Errors
    /// As [`CpuBackend::new`], without the key checks.
    pub fn client(plan: &Plan, client: &ClientKeys, options: CpuOptions) -> Result<Self, CpuError> {
        Self::bare(plan, client.parameters(), options).map(|b| b.with_secret(client))
    }

    /// The backend holding the client's secret key too (tests, one-process demos): it becomes a
    /// [`Client`] and, with [`CpuOptions::peek_with_secret`], lets the VM read values.
    pub fn with_secret(mut self, client: &ClientKeys) -> Self {
        self.secret = Some(client.secret().clone());
        self
    }

    fn bare(plan: &Plan, params: &CpuParameters, options: CpuOptions) -> Result<Self, CpuError> {
        plan.validate()?;
        if plan.parameters.as_ref() != Some(params.parameters()) {
            let plan_params = CpuParameters::for_plan(plan, super::Insecure::Allow)?;
            return Err(ParametersMismatch {
                what: "the keys".into(),
                found_name: params.parameters().name.clone(),
                found: params.hash(),
                expected_what: format!("plan {}", plan.name),
                expected_name: plan_params.parameters().name.clone(),
                expected: plan_params.hash(),
            }
            .into());
        }
        if plan.slots < 2 || plan.slots > params.max_slots() {
            return Err(CpuError::Format {
                what: format!("plan {}", plan.name),
                message: format!(
                    "{} slots per ciphertext; {} holds 2..={}",
                    plan.slots,
                    params.parameters().name,
                    params.max_slots()
                ),
            });
        }
        let ctx = params.context();
        Ok(Self {
            params: params.clone(),
            eval: Evaluator::new(ctx),
            encoder: Encoder::new(ctx),
            slots: plan.slots,
            relin: None,
            galois: GaloisKeys::default(),
            bootstrappers: BTreeMap::new(),
            secret: None,
            cache: Mutex::new(PlaintextCache::new(options.plaintext_cache_bytes)),
            options,
            stats: Mutex::new(CpuStats::default()),
        })
    }

    /// The parameters.
    pub fn parameters(&self) -> &CpuParameters {
        &self.params
    }

    /// What the backend did so far.
    pub fn stats(&self) -> CpuStats {
        let mut stats = *lock(&self.stats);
        stats.cache = lock(&self.cache).stats();
        stats
    }

    /// Decrypts with noise flooding (IND-CPA-D: a decryption that leaves the client must not
    /// reveal the noise): a rounded Gaussian of standard deviation 2^`flood_bits` is added to
    /// every coefficient before decoding (Li–Micciancio, EUROCRYPT 2021). `None` floods at
    /// [`CpuBackend::default_flood_bits`].
    ///
    /// # Errors
    /// [`BackendError::Unsupported`] without the secret key; [`BackendError::Failed`] for
    /// `flood_bits` outside 1..=60 or an entropy failure.
    pub fn decrypt_flooded(
        &self,
        a: &CpuCiphertext,
        flood_bits: Option<u32>,
    ) -> Result<Vec<f64>, BackendError> {
        let sk = self.secret_key()?;
        let bits = flood_bits.unwrap_or_else(|| Self::default_flood_bits(a));
        let mut rng = Csprng::from_os().map_err(ckks)?;
        let values = Decryptor::new(self.params.context())
            .decrypt_flooded(sk, &a.ct, bits, &mut rng)
            .map_err(ckks)?;
        Ok(values.into_iter().map(|c| c.re).collect())
    }

    /// The default flooding: σ = scale·2^−25 (2^20 at Δ = 2^45), which moves a slot by about
    /// √N·2^−25 (below 2^−17 at N = 2^16), under the outputs' own precision, while exceeding
    /// the noise of a fresh encryption and of a rescale by many bits. A full 30-bit statistical
    /// margin over the noise of a deep circuit would cost that many bits of output precision.
    pub fn default_flood_bits(a: &CpuCiphertext) -> u32 {
        (a.ct.scale().log2() - 25.0).clamp(1.0, 60.0) as u32
    }

    fn secret_key(&self) -> Result<&SecretKey, BackendError> {
        self.secret.as_ref().ok_or(BackendError::Unsupported {
            backend: "cpu",
            what: "decryption without the secret key (server side)".into(),
        })
    }

    fn wrap(&self, mut ct: Ciphertext, degree: u8) -> CpuCiphertext {
        // Pin the bookkeeping to the level's scale (the arithmetic agrees to f64 rounding).
        ct.set_scale(self.params.scale(ct.level(), degree));
        CpuCiphertext { ct, degree }
    }

    fn degree_one(&self, a: &CpuCiphertext, what: &str) -> Result<(), BackendError> {
        if a.degree == 1 {
            Ok(())
        } else {
            Err(BackendError::Mismatch(format!(
                "{what} of a ciphertext at scale Δ^{} (rescale first)",
                a.degree
            )))
        }
    }

    /// Refuses a degree-2 ciphertext (three polynomials) where `what` needs a relinearized one.
    fn relinearized(&self, a: &CpuCiphertext, what: &str) -> Result<(), BackendError> {
        if a.ct.degree() == 1 {
            Ok(())
        } else {
            Err(BackendError::Mismatch(format!(
                "{what} of a degree-{} ciphertext (not relinearized): relin first",
                a.ct.degree()
            )))
        }
    }

    fn relinearization_key(&self, what: &str) -> Result<&RelinKey, BackendError> {
        self.relin
            .as_ref()
            .ok_or_else(|| BackendError::Unsupported {
                backend: "cpu",
                what: format!("{what} without a relinearization key"),
            })
    }

    fn count_key_switch(&self, n: u64) {
        lock(&self.stats).key_switches += n;
    }

    /// `p` encoded at `level` and `scale`, from the cache or encoded now.
    fn encode(
        &self,
        p: PlainSlots<'_>,
        level: usize,
        scale: f64,
    ) -> Result<Arc<Plaintext>, BackendError> {
        if p.values.len() != self.slots {
            return Err(BackendError::Mismatch(format!(
                "plaintext p{} has {} slots, the backend {}",
                p.index,
                p.values.len(),
                self.slots
            )));
        }
        let key = (p.index, level, scale.to_bits());
        if let Some(pt) = lock(&self.cache).get(&key) {
            return Ok(pt);
        }
        let pt = Arc::new(
            self.encoder
                .encode_real(p.values, self.slots, level, scale)
                .map_err(ckks)?,
        );
        lock(&self.stats).plaintexts_encoded += 1;
        let bytes = ((level + 1) * self.params.context().n() * 8) as u64;
        lock(&self.cache).insert(key, Arc::clone(&pt), bytes);
        Ok(pt)
    }

    fn plain(
        &self,
        a: &CpuCiphertext,
        p: PlainSlots<'_>,
        sub: bool,
    ) -> Result<CpuCiphertext, BackendError> {
        let pt = self.encode(p, a.ct.level(), a.ct.scale())?;
        let out = if sub {
            self.eval.sub_plain(&a.ct, &pt)
        } else {
            self.eval.add_plain(&a.ct, &pt)
        };
        Ok(self.wrap(out.map_err(ckks)?, a.degree))
    }

    /// Degree 1 from level ℓ to `level` < ℓ at exactly S_level (see the module documentation).
    fn lower_degree_one(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        let q = self.params.context().params().q[level + 1] as f64;
        let k = (self.params.scale(level, 1) * q / ct.scale()).round();
        let mut x = self
            .eval
            .mul_integer(&self.eval.level_down(ct, level + 1)?, k as i64)?;
        x.set_scale(ct.scale() * k);
        self.eval.rescale(&x)
    }

    /// Degree 2 from level ℓ to `level` < ℓ at exactly S_level² (see the module documentation).
    fn lower_degree_two(&self, ct: &Ciphertext, level: usize) -> Result<Ciphertext, CkksError> {
        let rescaled = self.eval.rescale(ct)?;
        let k = (self.params.scale(level, 2) / rescaled.scale()).round();
        let mut x = self
            .eval
            .mul_integer(&self.eval.level_down(&rescaled, level)?, k as i64)?;
        x.set_scale(rescaled.scale() * k);
        Ok(x)
    }

    /// Degree 2 of three polynomials (an unrelinearized sum) from level ℓ to `level` < ℓ at
    /// exactly S_level²: multiplies by the integer round(S_level²·q_ℓ/S_ℓ²) first and rescales
    /// after, so that the rescale's rounding — which decryption multiplies by s², far larger than
    /// s — lands at the full scale S_level² rather than at S_ℓ²/q_ℓ as in
    /// [`CpuBackend::lower_degree_two`] (26 bits against 31 at ToyBootN12). `None` when the
    /// integer does not fit (a scale chain climbing by more than 2 bits a level).
    fn lower_unrelinearized(
        &self,
        ct: &Ciphertext,
        level: usize,
    ) -> Option<Result<Ciphertext, CkksError>> {
        let q = self.params.context().params().q[ct.level()] as f64;
        let k = (self.params.scale(level, 2) * q / ct.scale()).round();
        if k >= (1u64 << 62) as f64 {
            return None;
        }
        Some((|| {
            let mut x = self.eval.mul_integer(ct, k as i64)?;
            x.set_scale(ct.scale() * k);
            self.eval.level_down(&self.eval.rescale(&x)?, level)
        })())
    }
}

impl Backend for CpuBackend {
    type Ciphertext = CpuCiphertext;

    fn name(&self) -> &'static str {
        "cpu"
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn add(&self, a: &CpuCiphertext, b: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        let out = self.eval.add(&a.ct, &b.ct).map_err(ckks)?;
        Ok(self.wrap(out, a.degree))
    }

    fn sub(&self, a: &CpuCiphertext, b: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        let out = self.eval.sub(&a.ct, &b.ct).map_err(ckks)?;
        Ok(self.wrap(out, a.degree))
    }

    fn mul(&self, a: &CpuCiphertext, b: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        self.degree_one(a, "mul")?;
        self.degree_one(b, "mul")?;
        self.relinearized(a, "mul")?;
        self.relinearized(b, "mul")?;
        let relin = self.relinearization_key("ct-ct multiplication")?;
        let out = self.eval.mul_relin(&a.ct, &b.ct, relin).map_err(ckks)?;
        self.count_key_switch(1);
        Ok(self.wrap(out, 2))
    }

    fn mul_no_relinearize(
        &self,
        a: &CpuCiphertext,
        b: &CpuCiphertext,
    ) -> Result<CpuCiphertext, BackendError> {
        self.degree_one(a, "mul.nr")?;
        self.degree_one(b, "mul.nr")?;
        self.relinearized(a, "mul.nr")?;
        self.relinearized(b, "mul.nr")?;
        let out = self.eval.mul_no_relin(&a.ct, &b.ct).map_err(ckks)?;
        Ok(self.wrap(out, 2))
    }

    fn relinearize(&self, a: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        if a.ct.degree() != 2 {
            return Err(BackendError::Mismatch(format!(
                "relinearization of a degree-{} ciphertext: nothing to relinearize",
                a.ct.degree()
            )));
        }
        let relin = self.relinearization_key("relinearization")?;
        let out = self.eval.relinearize(&a.ct, relin).map_err(ckks)?;
        self.count_key_switch(1);
        Ok(self.wrap(out, a.degree))
    }

    fn add_plain(
        &self,
        a: &CpuCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CpuCiphertext, BackendError> {
        self.plain(a, p, false)
    }

    fn sub_plain(
        &self,
        a: &CpuCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CpuCiphertext, BackendError> {
        self.plain(a, p, true)
    }

    fn mul_plain(
        &self,
        a: &CpuCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CpuCiphertext, BackendError> {
        self.degree_one(a, "mul.p")?;
        let level = a.ct.level();
        let pt = self.encode(p, level, self.params.scale(level, 1))?;
        let out = self.eval.mul_plain(&a.ct, &pt).map_err(ckks)?;
        Ok(self.wrap(out, 2))
    }

    fn add_scalar(&self, a: &CpuCiphertext, c: f64) -> Result<CpuCiphertext, BackendError> {
        let out = self.eval.add_const(&a.ct, c).map_err(ckks)?;
        Ok(self.wrap(out, a.degree))
    }

    fn mul_scalar(&self, a: &CpuCiphertext, c: f64) -> Result<CpuCiphertext, BackendError> {
        self.degree_one(a, "mul.s")?;
        let scale = self.params.scale(a.ct.level(), 1);
        let out = self.eval.mul_const(&a.ct, c, scale).map_err(ckks)?;
        Ok(self.wrap(out, 2))
    }

    fn negate(&self, a: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        let out = self.eval.negate(&a.ct).map_err(ckks)?;
        Ok(self.wrap(out, a.degree))
    }

    fn rotate(&self, a: &CpuCiphertext, step: i32) -> Result<CpuCiphertext, BackendError> {
        self.relinearized(a, "rotation")?;
        // Keys are per step modulo the plan's slots (sparse packing repeats the slots).
        let step = i64::from(step).rem_euclid(self.slots as i64);
        let out = self.eval.rotate(&a.ct, step, &self.galois).map_err(ckks)?;
        self.count_key_switch(u64::from(step != 0));
        Ok(self.wrap(out, a.degree))
    }

    fn rotate_hoisted(
        &self,
        a: &CpuCiphertext,
        steps: &[i32],
    ) -> Result<Vec<CpuCiphertext>, BackendError> {
        self.relinearized(a, "hoisted rotation")?;
        let steps: Vec<i64> = steps
            .iter()
            .map(|&s| i64::from(s).rem_euclid(self.slots as i64))
            .collect();
        let hoisted = self.eval.hoist(&a.ct).map_err(ckks)?;
        let out = self
            .eval
            .rotate_hoisted(&hoisted, &steps, &self.galois)
            .map_err(ckks)?;
        self.count_key_switch(steps.iter().filter(|&&s| s != 0).count() as u64);
        Ok(out.into_iter().map(|ct| self.wrap(ct, a.degree)).collect())
    }

    fn rescale(&self, a: &CpuCiphertext) -> Result<CpuCiphertext, BackendError> {
        if a.degree != 2 {
            return Err(BackendError::Mismatch(
                "rescale of a ciphertext at scale Δ^1".into(),
            ));
        }
        self.relinearized(a, "rescale")?;
        let out = self.eval.rescale(&a.ct).map_err(ckks)?;
        Ok(self.wrap(out, 1))
    }

    fn level_down(&self, a: &CpuCiphertext, level: u32) -> Result<CpuCiphertext, BackendError> {
        let (from, to) = (a.ct.level(), level as usize);
        if to > from {
            return Err(BackendError::Failed(format!(
                "level.down from level {from} to {to}: levels only go down"
            )));
        }
        if to == from {
            return Ok(a.clone());
        }
        let out = match a.degree {
            1 => self.lower_degree_one(&a.ct, to),
            _ => match (a.ct.degree() == 2)
                .then(|| self.lower_unrelinearized(&a.ct, to))
                .flatten()
            {
                Some(lowered) => lowered,
                None => self.lower_degree_two(&a.ct, to),
            },
        };
        Ok(self.wrap(out.map_err(ckks)?, a.degree))
    }

    fn bootstrap(
        &self,
        a: &CpuCiphertext,
        slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<CpuCiphertext, BackendError> {
        self.degree_one(a, "boot")?;
        self.relinearized(a, "boot")?;
        let n = bootstrap_slots(self.slots, slots);
        let bootstrapper = self
            .bootstrappers
            .get(&n)
            .ok_or(BackendError::Unsupported {
                backend: "cpu",
                what: format!("bootstrapping {n} slots without its keys"),
            })?;
        let out_level = bootstrapper.output_level();
        if level as usize > out_level {
            return Err(BackendError::Failed(format!(
                "bootstrap to level {level}: the bootstrapping circuit returns level {out_level}"
            )));
        }
        let start = Instant::now();
        let delta = self.params.scale(0, 1);
        let mut input = a.ct.clone();
        if input.scale() > 2.0 * delta && input.level() > 0 {
            // Above the 45-bit primes: one discarded level brings the scale back to Δ.
            let q = self.params.context().params().q[input.level()] as f64;
            let k = (delta * q / input.scale()).round();
            let mut x = self.eval.mul_integer(&input, k as i64).map_err(ckks)?;
            x.set_scale(input.scale() * k);
            input = self.eval.rescale(&x).map_err(ckks)?;
        }
        let out = bootstrapper
            .bootstrap_scaled(&input, scale, self.params.scale(out_level, 1))
            .map_err(ckks)?;
        let out = self.wrap(out, 1);
        {
            let mut stats = lock(&self.stats);
            stats.bootstraps += 1;
            stats.bootstrap_time += start.elapsed();
        }
        self.level_down(&out, level)
    }

    fn info(&self, a: &CpuCiphertext) -> CiphertextInfo {
        CiphertextInfo {
            depth: None,
            level: Some(a.ct.level() as u32),
            scale_bits: a.ct.scale().log2(),
        }
    }

    fn peek(&self, a: &CpuCiphertext) -> Option<Vec<f64>> {
        if !self.options.peek_with_secret {
            return None;
        }
        self.decrypt(a).ok()
    }
}

impl Client for CpuBackend {
    fn encrypt(&self, values: &[f64]) -> Result<CpuCiphertext, BackendError> {
        self.encrypt_at(values, None)
    }

    /// A fresh encryption under the secret key at `level` (the top level for `None`) and that
    /// level's scale.
    fn encrypt_at(
        &self,
        values: &[f64],
        level: Option<u32>,
    ) -> Result<CpuCiphertext, BackendError> {
        let sk = self.secret_key()?;
        if values.len() != self.slots {
            return Err(BackendError::Mismatch(format!(
                "the slot vector has {} slots, the backend {}",
                values.len(),
                self.slots
            )));
        }
        let level = level.map_or(self.params.max_level(), |l| l as usize);
        self.params.context().check_level(level).map_err(ckks)?;
        let pt = self
            .encoder
            .encode_real(values, self.slots, level, self.params.scale(level, 1))
            .map_err(ckks)?;
        let ct = Encryptor::new(self.params.context())
            .and_then(|mut e| e.encrypt_sk(sk, &pt))
            .map_err(ckks)?;
        Ok(self.wrap(ct, 1))
    }

    /// Exact decryption (no flooding): for tests and the client's own use; see
    /// [`CpuBackend::decrypt_flooded`] for values that leave the client.
    fn decrypt(&self, a: &CpuCiphertext) -> Result<Vec<f64>, BackendError> {
        let sk = self.secret_key()?;
        Decryptor::new(self.params.context())
            .decrypt_real(sk, &a.ct)
            .map_err(ckks)
    }
}
