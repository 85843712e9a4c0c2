//! Key material of the `cpu` backend.
//!
//! - [`KeyRequirements`]: what a plan needs, from its static level trace: a relinearization key
//!   up to the highest level of a ct-ct `mul`, one Galois key per rotation step of
//!   `plan.rotations` up to the highest level that step is used at (a key up to level ℓ has
//!   ⌈(ℓ + 1)/α⌉ digits over ℓ + 1 + K limbs, so lower keys are smaller), and one bootstrapping
//!   key set per slot count its `boot` instructions use.
//! - [`ClientKeys`]: the secret key, on the client only; its file is created with mode 0600.
//! - [`EvaluationKeys`]: what the server receives. Stored as a directory: `keys.json` (format,
//!   parameter set and hash, what each file holds, its bytes and SHA-256) and one file per part
//!   (`relin.key`, `galois.key`, `bootstrap-<slots>.key`), each sealed in the
//!   [`envelope`](super::envelope) with the parameter hash. The key set's content hash is the
//!   SHA-256 of `keys.json`, so it binds every file.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use cachemir_ckks::bootstrap::{BootstrapConfig, BootstrapKeys, BootstrapPlan};
use cachemir_ckks::ring::automorphism::rotation_element;
use cachemir_ckks::{GaloisKeys, KeyGenerator, RelinKey, SecretKey, Serializable};
use cachemir_ir::plan::{ContentHash, Instruction, Plan, levels};
use serde::{Deserialize, Serialize};

use super::envelope::{open, seal};
use super::{CpuError, CpuParameters, ParametersMismatch};

/// The slot count a `boot` of a plan of `plan_slots` slots bootstraps at, for an instruction
/// that uses `used` of them. Ciphertexts are packed with the plan's slot count (sparse packing
/// when it is below N/2), so bootstrapping runs at that count: a `boot` declaring fewer used
/// slots still bootstraps them all, since restricting to fewer would need a masking level.
pub fn bootstrap_slots(plan_slots: usize, _used: u32) -> usize {
    plan_slots
}

/// The keys a plan needs (see the module documentation).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct KeyRequirements {
    /// Highest level of a ct-ct multiplication; `None` when the plan has none.
    pub relinearization: Option<usize>,
    /// Rotation step (normalised to `0..slots`) → highest level it is used at.
    pub rotations: BTreeMap<i32, usize>,
    /// Slot counts of the bootstrapping key sets.
    pub bootstrap_slots: BTreeSet<usize>,
}

impl KeyRequirements {
    /// The requirements of a leveled plan.
    ///
    /// # Errors
    /// [`CpuError::Plan`] when the plan does not validate or breaks the level rules;
    /// [`CpuError::Unleveled`] for a plan without parameters.
    pub fn for_plan(plan: &Plan) -> Result<Self, CpuError> {
        plan.validate()?;
        let trace = levels::trace(plan)
            .map_err(|e| CpuError::Plan(e.to_string()))?
            .ok_or(CpuError::Unleveled)?;
        let mut req = KeyRequirements::default();
        for (k, instruction) in plan.instructions.iter().enumerate() {
            let level = trace.operating[k].map_or(0, |l| l as usize);
            let mut rotate = |step: i32| {
                let step = plan.normalise(step);
                if step != 0 {
                    let entry = req.rotations.entry(step).or_insert(level);
                    *entry = (*entry).max(level);
                }
            };
            match instruction {
                Instruction::Multiply { .. } | Instruction::Relinearize { .. } => {
                    req.relinearization = Some(req.relinearization.map_or(level, |l| l.max(level)));
                }
                Instruction::Rotate { step, .. } => rotate(step.0),
                Instruction::RotateHoisted { steps, .. } => steps.0.iter().for_each(|&s| rotate(s)),
                Instruction::Bootstrap { slots, .. } => {
                    req.bootstrap_slots
                        .insert(bootstrap_slots(plan.slots, slots.0));
                }
                _ => {}
            }
        }
        Ok(req)
    }

    /// In-memory bytes of the keys, estimated before generating them (switching keys exactly;
    /// bootstrapping keys by [`BootstrapPlan::key_estimate`]).
    ///
    /// # Errors
    /// [`CpuError::Ckks`] when a bootstrapping circuit cannot be planned for a slot count.
    pub fn estimated_bytes(&self, params: &CpuParameters) -> Result<u64, CpuError> {
        let mut total = self
            .relinearization
            .map_or(0, |l| switching_key_bytes(params, l));
        total += self
            .rotations
            .values()
            .map(|&l| switching_key_bytes(params, l))
            .sum::<u64>();
        for &slots in &self.bootstrap_slots {
            let plan = BootstrapPlan::new(params.context(), &BootstrapConfig::new(slots))?;
            total += plan.key_estimate().1 as u64;
        }
        Ok(total)
    }
}

/// Bytes of a switching key up to `level`: ⌈(ℓ + 1)/α⌉ digits of two polynomials over
/// ℓ + 1 + K limbs of N words.
fn switching_key_bytes(params: &CpuParameters, level: usize) -> u64 {
    let p = params.context().params();
    ((level + 1).div_ceil(p.alpha()) * 2 * (level + 1 + p.p.len()) * p.n() * 8) as u64
}

/// The client's secret key (zeroized on drop by the CKKS crate). Never part of the server API.
#[derive(Debug)]
pub struct ClientKeys {
    params: CpuParameters,
    secret: SecretKey,
}

const SECRET_KIND: &str = "secret key";

impl ClientKeys {
    /// A fresh secret key from the OS CSPRNG.
    ///
    /// # Errors
    /// [`CpuError::Ckks`] when the entropy source fails.
    pub fn generate(params: &CpuParameters) -> Result<Self, CpuError> {
        let secret = KeyGenerator::new(params.context())?.secret_key();
        Ok(Self {
            params: params.clone(),
            secret,
        })
    }

    /// The parameters the key belongs to.
    pub fn parameters(&self) -> &CpuParameters {
        &self.params
    }

    pub(crate) fn secret(&self) -> &SecretKey {
        &self.secret
    }

    /// Writes the key to `path`, created with mode 0600 (owner read and write only) before any
    /// byte is written.
    ///
    /// # Errors
    /// [`CpuError::Io`] when the file cannot be written.
    pub fn write(&self, path: &Path) -> Result<(), CpuError> {
        let payload = self.secret.to_bytes(self.params.context())?;
        let bytes = seal(SECRET_KIND, &self.params, &payload)?;
        let mut payload = payload;
        zeroize::Zeroize::zeroize(&mut payload);
        write_private(path, &bytes).map_err(|e| CpuError::io(path, e))
    }

    /// Reads a key written by [`ClientKeys::write`] for `params` (used by `user`, e.g. "the
    /// plan", in messages).
    ///
    /// # Errors
    /// [`CpuError::Io`], [`CpuError::Format`], [`CpuError::ParametersHash`] (naming both
    /// parameter sets), [`CpuError::Ckks`] for a malformed key.
    pub fn read(path: &Path, params: &CpuParameters, user: &str) -> Result<Self, CpuError> {
        let mut bytes = std::fs::read(path).map_err(|e| CpuError::io(path, e))?;
        let what = path.display().to_string();
        let result = open(&bytes, SECRET_KIND, &what, params, user)
            .and_then(|payload| Ok(SecretKey::from_bytes(params.context(), payload)?));
        zeroize::Zeroize::zeroize(&mut bytes);
        Ok(Self {
            params: params.clone(),
            secret: result?,
        })
    }
}

#[cfg(unix)]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)?;
    // An existing file keeps its mode on open: restrict it too.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    std::fs::write(path, bytes)
}

/// Progress of [`EvaluationKeys::generate`]: estimated bytes done of the total, and the key
/// being made.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyProgress {
    pub done_bytes: u64,
    pub total_bytes: u64,
    pub current: String,
}

/// The evaluation keys a server needs to run a plan (see the module documentation).
#[derive(Debug, Clone)]
pub struct EvaluationKeys {
    pub(crate) params: CpuParameters,
    pub(crate) requirements: KeyRequirements,
    pub(crate) relin: Option<RelinKey>,
    pub(crate) galois: GaloisKeys,
    pub(crate) bootstrap: BTreeMap<usize, BootstrapKeys>,
}

/// `keys.json`: the index of an evaluation-key directory.
#[derive(Debug, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    parameters: String,
    parameters_hash: ContentHash,
    requirements: KeyRequirements,
    /// File name → (what it holds, bytes, SHA-256).
    files: BTreeMap<String, (String, u64, ContentHash)>,
    total_bytes: u64,
}

const MANIFEST: &str = "keys.json";
const MANIFEST_FORMAT: &str = "cachemir-evaluation-keys";
const MANIFEST_VERSION: u32 = 1;

impl EvaluationKeys {
    /// Generates the keys `requirements` lists from the client's secret key, calling `progress`
    /// before each key and once at the end. Bootstrapping keys come with an ephemeral sparse
    /// secret (sparse-secret encapsulation), dropped after use.
    ///
    /// # Errors
    /// [`CpuError::Ckks`] (entropy, a bootstrapping circuit that cannot be planned).
    pub fn generate(
        client: &ClientKeys,
        requirements: &KeyRequirements,
        progress: &mut dyn FnMut(&KeyProgress),
    ) -> Result<Self, CpuError> {
        let params = &client.params;
        let ctx = params.context();
        let sk = &client.secret;
        let mut kg = KeyGenerator::new(ctx)?;
        let total_bytes = requirements.estimated_bytes(params)?;
        let mut done_bytes = 0;
        let mut report = |done: u64, current: String| {
            progress(&KeyProgress {
                done_bytes: done,
                total_bytes,
                current,
            });
        };
        let relin = match requirements.relinearization {
            Some(level) => {
                report(done_bytes, format!("relinearization key (level {level})"));
                done_bytes += switching_key_bytes(params, level);
                Some(kg.relin_key(sk, level)?)
            }
            None => None,
        };
        let log_n = ctx.params().log_n;
        let mut galois = GaloisKeys::default();
        for (&step, &level) in &requirements.rotations {
            report(
                done_bytes,
                format!("Galois key, rotation {step} (level {level})"),
            );
            done_bytes += switching_key_bytes(params, level);
            galois.insert(kg.galois_key(sk, rotation_element(log_n, step.into()), level)?);
        }
        let mut bootstrap = BTreeMap::new();
        for &slots in &requirements.bootstrap_slots {
            let plan = BootstrapPlan::new(ctx, &BootstrapConfig::new(slots))?;
            let (count, bytes) = plan.key_estimate();
            report(
                done_bytes,
                format!("bootstrapping keys, {slots} slots ({count} Galois keys)"),
            );
            done_bytes += bytes as u64;
            bootstrap.insert(slots, plan.generate_keys(&mut kg, sk)?);
        }
        report(done_bytes, "done".into());
        Ok(Self {
            params: params.clone(),
            requirements: requirements.clone(),
            relin,
            galois,
            bootstrap,
        })
    }

    /// The relinearization key, where the plan multiplies ciphertexts.
    pub fn relin(&self) -> Option<&RelinKey> {
        self.relin.as_ref()
    }

    /// The Galois keys of the plan's rotations.
    pub fn galois(&self) -> &GaloisKeys {
        &self.galois
    }

    /// The parameters the keys belong to.
    pub fn parameters(&self) -> &CpuParameters {
        &self.params
    }

    /// What the keys were generated for.
    pub fn requirements(&self) -> &KeyRequirements {
        &self.requirements
    }

    /// In-memory bytes of all keys.
    pub fn bytes(&self) -> u64 {
        let relin = self
            .relin
            .as_ref()
            .map_or(0, |k| k.switching_key().size_bytes());
        let boot: usize = self.bootstrap.values().map(BootstrapKeys::size_bytes).sum();
        (relin + self.galois.size_bytes() + boot) as u64
    }

    /// Checks that the keys serve `requirements` (each key present, up to the level needed).
    ///
    /// # Errors
    /// [`CpuError::MissingKeys`] listing what is missing.
    pub fn check_covers(&self, requirements: &KeyRequirements) -> Result<(), CpuError> {
        let mut missing = Vec::new();
        if let Some(level) = requirements.relinearization {
            match &self.relin {
                None => missing.push("the relinearization key".to_string()),
                Some(k) if k.switching_key().level() < level => missing.push(format!(
                    "the relinearization key up to level {level} (it reaches {})",
                    k.switching_key().level()
                )),
                Some(_) => {}
            }
        }
        let log_n = self.params.context().params().log_n;
        for (&step, &level) in &requirements.rotations {
            match self.galois.for_step(log_n, step.into()) {
                Err(_) => missing.push(format!("the Galois key of rotation {step}")),
                Ok(k) if k.switching_key().level() < level => missing.push(format!(
                    "the Galois key of rotation {step} up to level {level} (it reaches {})",
                    k.switching_key().level()
                )),
                Ok(_) => {}
            }
        }
        for slots in &requirements.bootstrap_slots {
            if !self.bootstrap.contains_key(slots) {
                missing.push(format!("bootstrapping keys for {slots} slots"));
            }
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(CpuError::MissingKeys(format!(
                "{} (were they generated for another plan?)",
                missing.join(", ")
            )))
        }
    }

    /// Writes the keys into directory `dir` (created if needed); returns the key set's content
    /// hash (SHA-256 of `keys.json`) and the bytes written.
    ///
    /// # Errors
    /// [`CpuError::Io`], [`CpuError::Ckks`] (serialization).
    pub fn write_dir(&self, dir: &Path) -> Result<(ContentHash, u64), CpuError> {
        std::fs::create_dir_all(dir).map_err(|e| CpuError::io(dir, e))?;
        let ctx = self.params.context();
        let mut parts: Vec<(String, String, Vec<u8>)> = Vec::new();
        if let Some(relin) = &self.relin {
            parts.push((
                "relin.key".into(),
                "relinearization key".into(),
                relin.to_bytes(ctx)?,
            ));
        }
        parts.push((
            "galois.key".into(),
            "Galois keys".into(),
            self.galois.to_bytes(ctx)?,
        ));
        for (slots, keys) in &self.bootstrap {
            parts.push((
                format!("bootstrap-{slots}.key"),
                format!("bootstrapping keys, {slots} slots"),
                keys.to_bytes(ctx)?,
            ));
        }
        let mut files = BTreeMap::new();
        let mut total = 0;
        for (name, kind, payload) in parts {
            let bytes = seal(&kind, &self.params, &payload)?;
            let path = dir.join(&name);
            std::fs::write(&path, &bytes).map_err(|e| CpuError::io(&path, e))?;
            total += bytes.len() as u64;
            files.insert(name, (kind, bytes.len() as u64, ContentHash::of(&bytes)));
        }
        let manifest = Manifest {
            format: MANIFEST_FORMAT.into(),
            version: MANIFEST_VERSION,
            parameters: self.params.parameters().name.clone(),
            parameters_hash: self.params.hash(),
            requirements: self.requirements.clone(),
            files,
            total_bytes: total,
        };
        let json = serde_json::to_vec_pretty(&manifest).map_err(|e| CpuError::Format {
            what: MANIFEST.into(),
            message: e.to_string(),
        })?;
        let path = dir.join(MANIFEST);
        std::fs::write(&path, &json).map_err(|e| CpuError::io(&path, e))?;
        Ok((ContentHash::of(&json), total + json.len() as u64))
    }

    /// Reads a key directory written by [`EvaluationKeys::write_dir`] for `params` (used by
    /// `user`, e.g. "the plan", in messages); returns the keys and their content hash.
    ///
    /// # Errors
    /// [`CpuError::Io`]; [`CpuError::Format`] for a manifest or file of another format or
    /// version, or a file whose SHA-256 differs from the manifest's; [`CpuError::ParametersHash`]
    /// for keys of another parameter set (naming both); [`CpuError::Ckks`] for malformed keys.
    pub fn read_dir(
        dir: &Path,
        params: &CpuParameters,
        user: &str,
    ) -> Result<(Self, ContentHash), CpuError> {
        let path = dir.join(MANIFEST);
        let json = std::fs::read(&path).map_err(|e| CpuError::io(&path, e))?;
        let format = |what: &Path, message: String| CpuError::Format {
            what: what.display().to_string(),
            message,
        };
        let manifest: Manifest = serde_json::from_slice(&json)
            .map_err(|e| format(&path, format!("not an evaluation-key index: {e}")))?;
        if manifest.format != MANIFEST_FORMAT || manifest.version != MANIFEST_VERSION {
            return Err(format(
                &path,
                format!(
                    "{} version {}; this build reads {MANIFEST_FORMAT} version {MANIFEST_VERSION}",
                    manifest.format, manifest.version
                ),
            ));
        }
        if manifest.parameters_hash != params.hash() {
            return Err(ParametersMismatch {
                what: format!("the evaluation keys in {}", dir.display()),
                found_name: manifest.parameters,
                found: manifest.parameters_hash,
                expected_what: user.into(),
                expected_name: params.parameters().name.clone(),
                expected: params.hash(),
            }
            .into());
        }
        let ctx = params.context();
        let mut keys = Self {
            params: params.clone(),
            requirements: manifest.requirements.clone(),
            relin: None,
            galois: GaloisKeys::default(),
            bootstrap: BTreeMap::new(),
        };
        for (name, (kind, _, hash)) in &manifest.files {
            if name.contains(['/', '\\']) || name.starts_with('.') {
                return Err(format(&path, format!("bad file name `{name}`")));
            }
            let file = dir.join(name);
            let bytes = std::fs::read(&file).map_err(|e| CpuError::io(&file, e))?;
            if ContentHash::of(&bytes) != *hash {
                return Err(format(
                    &file,
                    "content differs from keys.json (corrupted?)".into(),
                ));
            }
            let payload = open(&bytes, kind, &file.display().to_string(), params, user)?;
            if name == "relin.key" {
                keys.relin = Some(RelinKey::from_bytes(ctx, payload)?);
            } else if name == "galois.key" {
                keys.galois = GaloisKeys::from_bytes(ctx, payload)?;
            } else if let Some(slots) = name
                .strip_prefix("bootstrap-")
                .and_then(|s| s.strip_suffix(".key"))
                .and_then(|s| s.parse::<usize>().ok())
            {
                keys.bootstrap
                    .insert(slots, BootstrapKeys::from_bytes(ctx, payload)?);
            } else {
                return Err(format(&path, format!("unknown key file `{name}`")));
            }
        }
        Ok((keys, ContentHash::of(&json)))
    }
}
