//! [`CudaBackend`]: the plan instruction set on device-resident RNS-CKKS ciphertexts.
//!
//! The backend follows [`CpuBackend`]'s conventions exactly (scale degrees, the scale chain
//! S_ℓ, level-down by an integer factor and a rescale, plaintexts encoded at the instruction's
//! level and scale; see `cachemir_vm::cpu::backend`), so a plan gives the same ciphertexts, bit
//! for bit, on both. Setup (plan and key checks, parameters, bootstrapping circuits) and the
//! client side (encryption, decryption) are a [`CpuBackend`]'s; every server operation runs on
//! the device except:
//!
//! - **plaintext encoding** (the canonical-embedding FFT), done on the host and uploaded, then
//!   cached on the device by (plaintext index, level, scale);
//! - **bootstrapping**, done by `cachemir-ckks`'s bootstrapper on the host: the ciphertext is
//!   downloaded, bootstrapped and uploaded (counted in [`CudaStats::host_bootstraps`]).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cachemir_ckks::ring::automorphism::rotation_element;
use cachemir_ckks::{CkksError, Encoder};
use cachemir_ir::plan::Plan;
use cachemir_vm::{
    Backend, BackendError, CiphertextInfo, Client, ClientKeys, CpuBackend, CpuCiphertext, CpuError,
    CpuOptions, CpuParameters, EvaluationKeys, KeyRequirements, PlainSlots,
};

use crate::device::CudaDevice;
use crate::error::CudaError;
use crate::evaluator::{
    DeviceCiphertext, DeviceGaloisKey, DevicePlaintext, DeviceSwitchingKey, Evaluator,
};

/// A failure to set a [`CudaBackend`] up.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// The plan, parameters or keys are refused (as by the `cpu` backend).
    #[error(transparent)]
    Cpu(#[from] CpuError),
    /// The device cannot take the tables or keys, or there is no device.
    #[error(transparent)]
    Cuda(#[from] CudaError),
}

/// A ciphertext of the `cuda` backend: device buffers (shared by clones; values are immutable)
/// and the scale degree (1 or 2) of [`CpuBackend`]'s convention.
#[derive(Debug, Clone)]
pub struct CudaCiphertext {
    ct: Arc<DeviceCiphertext>,
    degree: u8,
}

impl CudaCiphertext {
    /// The device ciphertext.
    pub fn device(&self) -> &DeviceCiphertext {
        &self.ct
    }

    /// The scale degree (1 or 2).
    pub fn degree(&self) -> u8 {
        self.degree
    }
}

/// What a [`CudaBackend`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CudaStats {
    /// Key switches on the device (relinearizations and rotations).
    pub key_switches: u64,
    /// Bootstraps run on the host (download, CPU bootstrap, upload).
    pub host_bootstraps: u64,
    pub bootstrap_time: Duration,
    pub plaintexts_encoded: u64,
    /// Device bytes of the evaluation keys.
    pub key_bytes: u64,
}

/// Encoded plaintexts on the device, first in first out within a byte budget.
#[derive(Debug, Default)]
struct PlainCache {
    map: HashMap<(u32, usize, u64), Arc<DevicePlaintext>>,
    order: VecDeque<(u32, usize, u64)>,
    bytes: u64,
    budget: u64,
}

impl PlainCache {
    fn insert(&mut self, key: (u32, usize, u64), pt: Arc<DevicePlaintext>) {
        let size = pt.bytes() as u64;
        while self.bytes + size > self.budget {
            let Some(old) = self.order.pop_front() else {
                break;
            };
            if let Some(p) = self.map.remove(&old) {
                self.bytes -= p.bytes() as u64;
            }
        }
        if size <= self.budget {
            self.bytes += size;
            self.order.push_back(key);
            self.map.insert(key, pt);
        }
    }
}

/// The `cuda` backend (see the module documentation).
pub struct CudaBackend {
    cpu: CpuBackend,
    eval: Evaluator,
    params: CpuParameters,
    encoder: Encoder,
    slots: usize,
    relin: Option<DeviceSwitchingKey>,
    galois: BTreeMap<u64, DeviceGaloisKey>,
    options: CpuOptions,
    cache: Mutex<PlainCache>,
    stats: Mutex<CudaStats>,
}

impl std::fmt::Debug for CudaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaBackend")
            .field("device", self.eval.device())
            .field("parameters", &self.params.parameters().name)
            .field("slots", &self.slots)
            .field("rotation_keys", &self.galois.len())
            .finish()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A device-side error as the VM's [`BackendError`] (the classes of the `cpu` backend's).
fn backend_error(e: CudaError) -> BackendError {
    match e {
        CudaError::Ckks(
            c @ (CkksError::LevelMismatch(..)
            | CkksError::ScaleMismatch(..)
            | CkksError::InvalidSlots(_)),
        ) => BackendError::Mismatch(c.to_string()),
        CudaError::Ckks(c @ CkksError::KeyLevelTooLow { .. }) => BackendError::Unsupported {
            backend: "cuda",
            what: c.to_string(),
        },
        CudaError::Mismatch(m) => BackendError::Mismatch(m),
        other => BackendError::Failed(other.to_string()),
    }
}

impl CudaBackend {
    /// The server side for `plan` with its evaluation keys, on `device`: the plan and keys are
    /// checked as by [`CpuBackend::new`], then the context's tables and the relinearization and
    /// Galois keys are copied to the device (the bootstrapping keys stay on the host).
    ///
    /// # Errors
    /// [`SetupError::Cpu`] as [`CpuBackend::new`]; [`SetupError::Cuda`] when the device cannot
    /// hold the tables or keys.
    pub fn new(
        plan: &Plan,
        keys: EvaluationKeys,
        options: CpuOptions,
        device: Arc<CudaDevice>,
    ) -> Result<Self, SetupError> {
        let requirements = KeyRequirements::for_plan(plan)?;
        keys.check_covers(&requirements)?;
        let params = keys.parameters().clone();
        let eval = Evaluator::new(device, params.context())?;
        let relin = keys
            .relin()
            .map(|k| DeviceSwitchingKey::upload(&eval, k.switching_key()))
            .transpose()?;
        let mut galois = BTreeMap::new();
        for g in keys.galois().elements() {
            let key = keys.galois().get(g, None).map_err(CudaError::Ckks)?;
            galois.insert(g, DeviceGaloisKey::upload(&eval, key)?);
        }
        let key_bytes = relin.as_ref().map_or(0, |k| k.bytes())
            + galois.values().map(|k| k.bytes()).sum::<usize>();
        let cpu = CpuBackend::new(plan, keys, options.clone())?;
        Ok(CudaBackend {
            encoder: Encoder::new(params.context()),
            slots: plan.slots,
            cache: Mutex::new(PlainCache {
                budget: options.plaintext_cache_bytes,
                ..PlainCache::default()
            }),
            stats: Mutex::new(CudaStats {
                key_bytes: key_bytes as u64,
                ..CudaStats::default()
            }),
            cpu,
            eval,
            params,
            relin,
            galois,
            options,
        })
    }

    /// The backend holding the client's secret key too (tests, one-process demos): it becomes a
    /// [`Client`] (encryption on the host, then upload) and, with
    /// [`CpuOptions::peek_with_secret`], lets the VM read values.
    pub fn with_secret(self, client: &ClientKeys) -> Self {
        CudaBackend {
            cpu: self.cpu.with_secret(client),
            ..self
        }
    }

    /// The host backend used for setup, bootstrapping and the client side (and as the reference
    /// in tests).
    pub fn cpu(&self) -> &CpuBackend {
        &self.cpu
    }

    /// The device evaluator.
    pub fn evaluator(&self) -> &Evaluator {
        &self.eval
    }

    /// What the backend did so far.
    pub fn stats(&self) -> CudaStats {
        *lock(&self.stats)
    }

    /// Copies a `cpu` ciphertext to the device.
    ///
    /// # Errors
    /// [`BackendError::Failed`] on a device failure, [`BackendError::Mismatch`] for a
    /// ciphertext of another ring.
    pub fn upload(&self, a: &CpuCiphertext) -> Result<CudaCiphertext, BackendError> {
        let ct = DeviceCiphertext::upload(&self.eval, a.ciphertext()).map_err(backend_error)?;
        Ok(CudaCiphertext {
            ct: Arc::new(ct),
            degree: a.degree(),
        })
    }

    /// Copies a ciphertext back as a `cpu` ciphertext (same parts, level, scale and degree).
    ///
    /// # Errors
    /// [`BackendError::Failed`] on a device failure.
    pub fn download(&self, a: &CudaCiphertext) -> Result<CpuCiphertext, BackendError> {
        let ct = a.ct.download(&self.eval).map_err(backend_error)?;
        CpuCiphertext::from_ciphertext(ct, &self.params, self.slots)
            .map_err(|e| BackendError::Failed(e.to_string()))
    }

    fn wrap(&self, mut ct: DeviceCiphertext, degree: u8) -> CudaCiphertext {
        // Pin the bookkeeping to the level's scale, as the cpu backend does.
        ct.scale = self.params.scale(ct.level, degree);
        CudaCiphertext {
            ct: Arc::new(ct),
            degree,
        }
    }

    fn degree_one(&self, a: &CudaCiphertext, what: &str) -> Result<(), BackendError> {
        if a.degree == 1 {
            Ok(())
        } else {
            Err(BackendError::Mismatch(format!(
                "{what} of a ciphertext at scale Δ^{} (rescale first)",
                a.degree
            )))
        }
    }

    /// `p` encoded at `level` and `scale` on the device, from the cache or encoded now.
    fn encode(
        &self,
        p: PlainSlots<'_>,
        level: usize,
        scale: f64,
    ) -> Result<Arc<DevicePlaintext>, BackendError> {
        if p.values.len() != self.slots {
            return Err(BackendError::Mismatch(format!(
                "plaintext p{} has {} slots, the backend {}",
                p.index,
                p.values.len(),
                self.slots
            )));
        }
        let key = (p.index, level, scale.to_bits());
        if let Some(pt) = lock(&self.cache).map.get(&key) {
            return Ok(Arc::clone(pt));
        }
        let host = self
            .encoder
            .encode_real(p.values, self.slots, level, scale)
            .map_err(|e| backend_error(e.into()))?;
        let pt = Arc::new(DevicePlaintext::upload(&self.eval, &host).map_err(backend_error)?);
        lock(&self.stats).plaintexts_encoded += 1;
        lock(&self.cache).insert(key, Arc::clone(&pt));
        Ok(pt)
    }

    fn galois_key(&self, step: i32) -> Result<Option<&DeviceGaloisKey>, BackendError> {
        let step = i64::from(step).rem_euclid(self.slots as i64);
        let g = rotation_element(self.params.context().params().log_n, step);
        if g == 1 {
            return Ok(None);
        }
        self.galois
            .get(&g)
            .map(Some)
            .ok_or_else(|| BackendError::Unsupported {
                backend: "cuda",
                what: format!("rotation by {step} without its Galois key (element {g})"),
            })
    }

    /// Degree 1 from level ℓ to `level` < ℓ at exactly S_level (the cpu backend's
    /// `lower_degree_one`).
    fn lower_degree_one(
        &self,
        ct: &DeviceCiphertext,
        level: usize,
    ) -> Result<DeviceCiphertext, CudaError> {
        let q = self.params.context().params().q[level + 1] as f64;
        let k = (self.params.scale(level, 1) * q / ct.scale).round();
        let mut x = self
            .eval
            .mul_integer(&self.eval.level_down(ct, level + 1)?, k as i64)?;
        x.scale = ct.scale * k;
        self.eval.rescale(&x)
    }

    /// Degree 2 from level ℓ to `level` < ℓ at exactly S_level² (`lower_degree_two`).
    fn lower_degree_two(
        &self,
        ct: &DeviceCiphertext,
        level: usize,
    ) -> Result<DeviceCiphertext, CudaError> {
        let rescaled = self.eval.rescale(ct)?;
        let k = (self.params.scale(level, 2) / rescaled.scale).round();
        let mut x = self
            .eval
            .mul_integer(&self.eval.level_down(&rescaled, level)?, k as i64)?;
        x.scale = rescaled.scale * k;
        Ok(x)
    }
}

impl Backend for CudaBackend {
    type Ciphertext = CudaCiphertext;

    fn name(&self) -> &'static str {
        "cuda"
    }

    fn slots(&self) -> usize {
        self.slots
    }

    fn add(&self, a: &CudaCiphertext, b: &CudaCiphertext) -> Result<CudaCiphertext, BackendError> {
        let out = self.eval.add(&a.ct, &b.ct).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn sub(&self, a: &CudaCiphertext, b: &CudaCiphertext) -> Result<CudaCiphertext, BackendError> {
        let out = self.eval.sub(&a.ct, &b.ct).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn mul(&self, a: &CudaCiphertext, b: &CudaCiphertext) -> Result<CudaCiphertext, BackendError> {
        self.degree_one(a, "mul")?;
        self.degree_one(b, "mul")?;
        let relin = self.relin.as_ref().ok_or(BackendError::Unsupported {
            backend: "cuda",
            what: "ct-ct multiplication without a relinearization key".into(),
        })?;
        let out = self
            .eval
            .mul_relin(&a.ct, &b.ct, relin)
            .map_err(backend_error)?;
        lock(&self.stats).key_switches += 1;
        Ok(self.wrap(out, 2))
    }

    fn add_plain(
        &self,
        a: &CudaCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CudaCiphertext, BackendError> {
        let pt = self.encode(p, a.ct.level, a.ct.scale)?;
        let out = self.eval.add_plain(&a.ct, &pt).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn sub_plain(
        &self,
        a: &CudaCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CudaCiphertext, BackendError> {
        let pt = self.encode(p, a.ct.level, a.ct.scale)?;
        let out = self.eval.sub_plain(&a.ct, &pt).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn mul_plain(
        &self,
        a: &CudaCiphertext,
        p: PlainSlots<'_>,
    ) -> Result<CudaCiphertext, BackendError> {
        self.degree_one(a, "mul.p")?;
        let level = a.ct.level;
        let pt = self.encode(p, level, self.params.scale(level, 1))?;
        let out = self.eval.mul_plain(&a.ct, &pt).map_err(backend_error)?;
        Ok(self.wrap(out, 2))
    }

    fn add_scalar(&self, a: &CudaCiphertext, c: f64) -> Result<CudaCiphertext, BackendError> {
        let out = self.eval.add_const(&a.ct, c).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn mul_scalar(&self, a: &CudaCiphertext, c: f64) -> Result<CudaCiphertext, BackendError> {
        self.degree_one(a, "mul.s")?;
        let scale = self.params.scale(a.ct.level, 1);
        let out = self
            .eval
            .mul_const(&a.ct, c, scale)
            .map_err(backend_error)?;
        Ok(self.wrap(out, 2))
    }

    fn negate(&self, a: &CudaCiphertext) -> Result<CudaCiphertext, BackendError> {
        let out = self.eval.negate(&a.ct).map_err(backend_error)?;
        Ok(self.wrap(out, a.degree))
    }

    fn rotate(&self, a: &CudaCiphertext, step: i32) -> Result<CudaCiphertext, BackendError> {
        let Some(key) = self.galois_key(step)? else {
            return Ok(a.clone());
        };
        let out = self.eval.apply_galois(&a.ct, key).map_err(backend_error)?;
        lock(&self.stats).key_switches += 1;
        Ok(self.wrap(out, a.degree))
    }

    fn rotate_hoisted(
        &self,
        a: &CudaCiphertext,
        steps: &[i32],
    ) -> Result<Vec<CudaCiphertext>, BackendError> {
        // All keys first, as the cpu backend: a missing key fails before any work.
        let keys = steps
            .iter()
            .map(|&s| self.galois_key(s))
            .collect::<Result<Vec<_>, _>>()?;
        if keys.iter().all(Option::is_none) {
            return Ok(vec![a.clone(); steps.len()]);
        }
        let hoisted = self.eval.hoist(&a.ct).map_err(backend_error)?;
        let mut out = Vec::with_capacity(steps.len());
        for key in keys {
            out.push(match key {
                None => a.clone(),
                Some(key) => {
                    let ct = self
                        .eval
                        .rotate_hoisted(&hoisted, key)
                        .map_err(backend_error)?;
                    lock(&self.stats).key_switches += 1;
                    self.wrap(ct, a.degree)
                }
            });
        }
        Ok(out)
    }

    fn rescale(&self, a: &CudaCiphertext) -> Result<CudaCiphertext, BackendError> {
        if a.degree != 2 {
            return Err(BackendError::Mismatch(
                "rescale of a ciphertext at scale Δ^1".into(),
            ));
        }
        let out = self.eval.rescale(&a.ct).map_err(backend_error)?;
        Ok(self.wrap(out, 1))
    }

    fn level_down(&self, a: &CudaCiphertext, level: u32) -> Result<CudaCiphertext, BackendError> {
        let (from, to) = (a.ct.level, level as usize);
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
            _ => self.lower_degree_two(&a.ct, to),
        };
        Ok(self.wrap(out.map_err(backend_error)?, a.degree))
    }

    fn bootstrap(
        &self,
        a: &CudaCiphertext,
        slots: u32,
        level: u32,
        scale: f64,
    ) -> Result<CudaCiphertext, BackendError> {
        self.degree_one(a, "boot")?;
        let start = Instant::now();
        let host = self.download(a)?;
        let out = self.cpu.bootstrap(&host, slots, level, scale)?;
        let out = self.upload(&out)?;
        let mut stats = lock(&self.stats);
        stats.host_bootstraps += 1;
        stats.bootstrap_time += start.elapsed();
        Ok(out)
    }

    fn info(&self, a: &CudaCiphertext) -> CiphertextInfo {
        CiphertextInfo {
            depth: None,
            level: Some(a.ct.level as u32),
            scale_bits: a.ct.scale.log2(),
        }
    }

    fn peek(&self, a: &CudaCiphertext) -> Option<Vec<f64>> {
        if !self.options.peek_with_secret {
            return None;
        }
        self.cpu.peek(&self.download(a).ok()?)
    }
}

impl Client for CudaBackend {
    fn encrypt(&self, values: &[f64]) -> Result<CudaCiphertext, BackendError> {
        self.encrypt_at(values, None)
    }

    /// Encrypted on the host (as the `cpu` backend), then uploaded.
    fn encrypt_at(
        &self,
        values: &[f64],
        level: Option<u32>,
    ) -> Result<CudaCiphertext, BackendError> {
        self.upload(&self.cpu.encrypt_at(values, level)?)
    }

    /// Downloaded, then decrypted exactly on the host (tests; see
    /// [`CpuBackend::decrypt_flooded`] for values that leave the client).
    fn decrypt(&self, a: &CudaCiphertext) -> Result<Vec<f64>, BackendError> {
        self.cpu.decrypt(&self.download(a)?)
    }
}
