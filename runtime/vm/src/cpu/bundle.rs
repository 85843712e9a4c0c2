//! The ciphertext file: a plan's encrypted tensors between client and server.
//!
//! One [`CiphertextBundle`] holds named entries, each the ciphertexts of one encrypted tensor of
//! the plan by role ([`Role::Input`], [`Role::Output`], [`Role::State`] for the KV cache, which
//! is stored exactly like the others so a session can keep it in the same format), plus the
//! public tensors the server needs for the plan's public program (e.g. positions, masks). It is
//! bound to the plan it was made for (the plan's content hash: layouts and levels come from the
//! plan) and sealed in the [`envelope`](super::envelope) with the parameter hash. Ciphertexts are
//! the CKKS crate's serialized objects, checked on load (parameters, shapes, reduced residues)
//! and their scale recognised as a scale of their level.

use std::path::Path;

use cachemir_ckks::{Ciphertext, Serializable};
use cachemir_ir::plan::ContentHash;
use serde::{Deserialize, Serialize};

use super::envelope::{open, seal};
use super::{CpuCiphertext, CpuError, CpuParameters};

/// What an entry is to the plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// An encrypted input (`plan.inputs`).
    Input,
    /// An encrypted output (`plan.outputs`).
    Output,
    /// A KV-cache state (`plan.states`), stored between decode steps.
    State,
}

/// The ciphertexts of one encrypted tensor, in layout order.
#[derive(Debug, Clone)]
pub struct BundleEntry {
    pub name: String,
    pub role: Role,
    pub parts: Vec<CpuCiphertext>,
}

/// A public tensor (row-major values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicTensor {
    pub name: String,
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// The file's content (see the module documentation).
#[derive(Debug, Clone)]
pub struct CiphertextBundle {
    /// The content hash of the plan the ciphertexts were made for.
    pub plan: ContentHash,
    pub entries: Vec<BundleEntry>,
    pub public: Vec<PublicTensor>,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    plan: ContentHash,
    slots: usize,
    entries: Vec<(String, Role, Vec<Vec<u8>>)>,
    public: Vec<PublicTensor>,
}

const KIND: &str = "ciphertexts";

impl CiphertextBundle {
    /// The entry named `name`.
    pub fn entry(&self, name: &str) -> Option<&BundleEntry> {
        self.entries.iter().find(|e| e.name == name)
    }

    /// The sealed bytes, for ciphertexts of `slots` slots under `params`.
    ///
    /// # Errors
    /// [`CpuError::Ckks`] (a ciphertext of other parameters), [`CpuError::Format`].
    pub fn to_bytes(&self, params: &CpuParameters, slots: usize) -> Result<Vec<u8>, CpuError> {
        let ctx = params.context();
        let entries = self
            .entries
            .iter()
            .map(|e| {
                let parts = e
                    .parts
                    .iter()
                    .map(|c| c.ciphertext().to_bytes(ctx))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((e.name.clone(), e.role, parts))
            })
            .collect::<Result<Vec<_>, CpuError>>()?;
        let wire = Wire {
            plan: self.plan,
            slots,
            entries,
            public: self.public.clone(),
        };
        let payload = postcard::to_stdvec(&wire).map_err(|e| CpuError::Format {
            what: KIND.into(),
            message: e.to_string(),
        })?;
        seal(KIND, params, &payload)
    }

    /// Reads sealed bytes (named `what` in messages) made under `params` for a plan of `slots`
    /// slots, used by `user` (e.g. "the plan").
    ///
    /// # Errors
    /// [`CpuError::Format`] (magic, version, kind, a malformed payload, a ciphertext of another
    /// slot count or an unknown scale), [`CpuError::ParametersHash`] (another parameter set,
    /// naming both), [`CpuError::Ckks`] (a malformed ciphertext).
    pub fn from_bytes(
        bytes: &[u8],
        what: &str,
        params: &CpuParameters,
        slots: usize,
        user: &str,
    ) -> Result<Self, CpuError> {
        let payload = open(bytes, KIND, what, params, user)?;
        let format = |message: String| CpuError::Format {
            what: what.into(),
            message,
        };
        let (wire, tail): (Wire, &[u8]) =
            postcard::take_from_bytes(payload).map_err(|e| format(e.to_string()))?;
        if !tail.is_empty() {
            return Err(format(format!("{} trailing bytes", tail.len())));
        }
        if wire.slots != slots {
            return Err(format(format!(
                "ciphertexts of {} slots; the plan has {slots}",
                wire.slots
            )));
        }
        for t in &wire.public {
            if t.shape.iter().product::<usize>() != t.values.len() {
                return Err(format(format!(
                    "public tensor `{}`: {} values for shape {:?}",
                    t.name,
                    t.values.len(),
                    t.shape
                )));
            }
        }
        let ctx = params.context();
        let entries = wire
            .entries
            .into_iter()
            .map(|(name, role, parts)| {
                let parts = parts
                    .iter()
                    .map(|bytes| {
                        let ct = Ciphertext::from_bytes(ctx, bytes)?;
                        CpuCiphertext::from_ciphertext(ct, params, slots)
                            .map_err(|e| format(format!("`{name}`: {e}")))
                    })
                    .collect::<Result<Vec<_>, CpuError>>()?;
                Ok(BundleEntry { name, role, parts })
            })
            .collect::<Result<Vec<_>, CpuError>>()?;
        Ok(Self {
            plan: wire.plan,
            entries,
            public: wire.public,
        })
    }

    /// Writes the file atomically (a temporary file in the same folder, synced, then renamed).
    ///
    /// # Errors
    /// [`CpuError::Io`] and as [`CiphertextBundle::to_bytes`].
    pub fn write(&self, path: &Path, params: &CpuParameters, slots: usize) -> Result<(), CpuError> {
        use std::io::Write;
        let bytes = self.to_bytes(params, slots)?;
        let name = path
            .file_name()
            .map_or("ct".into(), |n| n.to_string_lossy().into_owned());
        let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
        let write = || -> std::io::Result<()> {
            let mut file = std::fs::File::create(&tmp)?;
            file.write_all(&bytes)?;
            file.sync_all()?;
            std::fs::rename(&tmp, path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            CpuError::io(path, e)
        })
    }

    /// Reads a file written by [`CiphertextBundle::write`].
    ///
    /// # Errors
    /// [`CpuError::Io`] and as [`CiphertextBundle::from_bytes`].
    pub fn read(
        path: &Path,
        params: &CpuParameters,
        slots: usize,
        user: &str,
    ) -> Result<Self, CpuError> {
        let bytes = std::fs::read(path).map_err(|e| CpuError::io(path, e))?;
        Self::from_bytes(&bytes, &path.display().to_string(), params, slots, user)
    }

    /// Checks that the bundle was made for the plan of content hash `plan` (named `what`).
    ///
    /// # Errors
    /// [`CpuError::PlanHash`] naming both hashes.
    pub fn check_plan(&self, plan: ContentHash, what: &str) -> Result<(), CpuError> {
        if self.plan == plan {
            Ok(())
        } else {
            Err(CpuError::PlanHash {
                what: what.into(),
                found: self.plan,
                expected: plan,
            })
        }
    }
}
