//! Sessions: the encrypted KV cache of a generation, kept in a directory between decode steps so
//! that a server process may stop (or be killed) between two steps and go on later.
//!
//! A session stores opaque bytes — one serialized ciphertext per KV-cache state ciphertext of the
//! plan (`Plan::states`), in whatever form the backend serializes them — and knows nothing of
//! CKKS. It is bound to a [`SessionIdentity`]: the hashes of the plan, of the evaluation keys and
//! of the CKKS parameters; opening it with anything else is refused ([`SessionError::Bound`]),
//! since a cache encrypted under other keys or laid out for another plan would decrypt to garbage.
//!
//! # Layout and crash safety
//! ```text
//! DIR/manifest.json          format, version, the three hashes, step count, data file name,
//!                            per-blob sizes and SHA-256, caller metadata (JSON)
//! DIR/state-0000000005.bin   the state ciphertexts after step 5, concatenated
//! ```
//! [`Session::commit_step`] writes the next step's data to `state-….bin.tmp`, fsyncs it, renames
//! it into place and fsyncs the directory; then writes `manifest.json.tmp`, fsyncs, renames it over
//! `manifest.json` and fsyncs the directory; only then removes the previous step's data. The
//! rename of the manifest is the commit point (rename is atomic in POSIX), so a process killed at
//! any instant leaves a manifest naming a complete, checksummed data file: the last complete
//! step. [`Session::open`] removes what an interrupted commit left (temporary files, a data file
//! no manifest names). A checksum mismatch on reading ([`Session::load_state`]) is an error
//! ([`SessionError::Corrupt`]), never a silently wrong cache.
//!
//! One process writes a session at a time (the directory is not locked).

use cachemir_ir::plan::ContentHash;
use serde::{Deserialize, Serialize};
use std::fs::{self, File};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The manifest format version this crate reads and writes.
pub const SESSION_FORMAT_VERSION: u32 = 1;
const FORMAT: &str = "cachemir-session";
const MANIFEST: &str = "manifest.json";
const TEMPORARY: &str = ".tmp";
const DATA_PREFIX: &str = "state-";
const DATA_SUFFIX: &str = ".bin";

/// What a session is bound to: SHA-256 hashes of the plan file, of the evaluation keys (as
/// serialized) and of the CKKS parameters (`cachemir_ckks::CkksContext::hash`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionIdentity {
    pub plan_hash: ContentHash,
    pub key_hash: ContentHash,
    pub parameters_hash: ContentHash,
}

/// Which part of a [`SessionIdentity`] differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Plan,
    Keys,
    Parameters,
}

impl std::fmt::Display for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Binding::Plan => "plan",
            Binding::Keys => "evaluation keys",
            Binding::Parameters => "CKKS parameters",
        })
    }
}

/// Why a session cannot be created, opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} already holds a session ({MANIFEST} present): open it or choose another directory", dir.display())]
    Exists { dir: PathBuf },
    #[error("no session in {} (no {MANIFEST})", dir.display())]
    NotFound { dir: PathBuf },
    #[error("session manifest {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("session format version {found}; this build reads version {SESSION_FORMAT_VERSION}")]
    Version { found: u32 },
    #[error("session {} was made for {what} {session}, not {given}", dir.display())]
    Bound {
        dir: PathBuf,
        what: Binding,
        /// The hash recorded in the session.
        session: ContentHash,
        /// The hash of what it was opened with.
        given: ContentHash,
    },
    #[error("session data {}: {message}", path.display())]
    Corrupt { path: PathBuf, message: String },
}

type Result<T> = std::result::Result<T, SessionError>;

/// Size and checksum of one stored state ciphertext.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Blob {
    /// Bytes.
    pub bytes: u64,
    pub sha256: ContentHash,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Manifest {
    format: String,
    version: u32,
    #[serde(flatten)]
    identity: SessionIdentity,
    /// Completed steps.
    step: u64,
    /// The data file (in the session directory) of `step`; `None` before the first step.
    data: Option<String>,
    blobs: Vec<Blob>,
    metadata: serde_json::Value,
}

impl Manifest {
    /// Bytes of the data file (`None` if the sizes overflow: a corrupt manifest).
    fn total_bytes(&self) -> Option<u64> {
        self.blobs
            .iter()
            .try_fold(0u64, |n, b| n.checked_add(b.bytes))
    }
}

/// Where [`Session::commit_step_interrupted`] stops, as if the process were killed there.
#[doc(hidden)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashPoint {
    /// Half of the data written to its temporary file.
    DataPartlyWritten,
    /// The data's temporary file complete, not renamed.
    DataWritten,
    /// The data renamed into place; the manifest not yet written.
    DataRenamed,
    /// Half of the new manifest written to its temporary file.
    ManifestPartlyWritten,
    /// The new manifest's temporary file complete, not renamed.
    ManifestWritten,
    /// The new manifest renamed into place (the step is committed); the previous data not yet
    /// removed.
    ManifestRenamed,
}

/// An open session directory (see the module documentation).
#[derive(Debug)]
pub struct Session {
    dir: PathBuf,
    manifest: Manifest,
}

impl Session {
    /// Creates a session at step 0 (no state yet) in `dir`, creating the directory if needed.
    ///
    /// # Errors
    /// [`SessionError::Exists`] if `dir` already holds a session; [`SessionError::Io`].
    pub fn create(dir: impl AsRef<Path>, identity: SessionIdentity) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(io(&dir))?;
        if dir.join(MANIFEST).exists() {
            return Err(SessionError::Exists { dir });
        }
        remove_leftovers(&dir, None)?;
        let manifest = Manifest {
            format: FORMAT.into(),
            version: SESSION_FORMAT_VERSION,
            identity,
            step: 0,
            data: None,
            blobs: Vec::new(),
            metadata: serde_json::Value::Null,
        };
        write_manifest(&dir, &manifest, None)?;
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(Self { dir, manifest })
    }

    /// Opens the session in `dir` at its last complete step, after removing what an interrupted
    /// step left behind (temporary files, data no manifest names).
    ///
    /// # Errors
    /// [`SessionError::NotFound`]; [`SessionError::Manifest`] or [`SessionError::Version`] for a
    /// manifest this build cannot read; [`SessionError::Bound`] (naming both hashes) when the
    /// session belongs to another plan, other keys or other parameters; [`SessionError::Corrupt`]
    /// when its data file is missing or of the wrong size; [`SessionError::Io`].
    pub fn open(dir: impl AsRef<Path>, identity: SessionIdentity) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let path = dir.join(MANIFEST);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(SessionError::NotFound { dir });
            }
            Err(e) => return Err(io(&path)(e)),
        };
        let manifest = parse_manifest(&path, &text)?;
        let recorded = manifest.identity;
        for (what, session, given) in [
            (Binding::Plan, recorded.plan_hash, identity.plan_hash),
            (Binding::Keys, recorded.key_hash, identity.key_hash),
            (
                Binding::Parameters,
                recorded.parameters_hash,
                identity.parameters_hash,
            ),
        ] {
            if session != given {
                return Err(SessionError::Bound {
                    dir,
                    what,
                    session,
                    given,
                });
            }
        }
        remove_leftovers(&dir, manifest.data.as_deref())?;
        let session = Self { dir, manifest };
        if let Some(path) = session.data_path() {
            let expected = session.manifest.total_bytes().unwrap_or(u64::MAX);
            let found = fs::metadata(&path)
                .map_err(|e| SessionError::Corrupt {
                    path: path.clone(),
                    message: format!("the data of step {} is unreadable: {e}", session.step()),
                })?
                .len();
            if found != expected {
                return Err(SessionError::Corrupt {
                    path,
                    message: format!("{found} bytes; the manifest lists {expected}"),
                });
            }
        }
        Ok(session)
    }

    /// [`Session::open`] if `dir` holds a session, else [`Session::create`].
    pub fn open_or_create(dir: impl AsRef<Path>, identity: SessionIdentity) -> Result<Self> {
        if dir.as_ref().join(MANIFEST).exists() {
            Self::open(dir, identity)
        } else {
            Self::create(dir, identity)
        }
    }

    /// The session directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// What the session is bound to.
    pub fn identity(&self) -> SessionIdentity {
        self.manifest.identity
    }

    /// The number of completed steps.
    pub fn step(&self) -> u64 {
        self.manifest.step
    }

    /// The metadata committed with the last step (`null` at step 0).
    pub fn metadata(&self) -> &serde_json::Value {
        &self.manifest.metadata
    }

    /// Sizes and checksums of the stored state ciphertexts, in order.
    pub fn blobs(&self) -> &[Blob] {
        &self.manifest.blobs
    }

    /// The state ciphertexts of the last complete step, one byte blob each, in the order they
    /// were committed (empty at step 0), each checked against its size and SHA-256.
    ///
    /// # Errors
    /// [`SessionError::Corrupt`] on a size or checksum mismatch (naming the blob and both
    /// hashes); [`SessionError::Io`].
    pub fn load_state(&self) -> Result<Vec<Vec<u8>>> {
        let Some(path) = self.data_path() else {
            return Ok(Vec::new());
        };
        let data = fs::read(&path).map_err(io(&path))?;
        let corrupt = |message: String| SessionError::Corrupt {
            path: path.clone(),
            message,
        };
        let expected = self.manifest.total_bytes().unwrap_or(u64::MAX);
        if data.len() as u64 != expected {
            return Err(corrupt(format!(
                "{} bytes; the manifest lists {expected}",
                data.len()
            )));
        }
        let mut rest = data.as_slice();
        let mut states = Vec::with_capacity(self.manifest.blobs.len());
        for (k, blob) in self.manifest.blobs.iter().enumerate() {
            // The total matches, so every blob fits.
            let (bytes, tail) = rest.split_at(blob.bytes as usize);
            let found = ContentHash::of(bytes);
            if found != blob.sha256 {
                return Err(corrupt(format!(
                    "state ciphertext {k} of step {}: SHA-256 {found}, the manifest lists {}",
                    self.step(),
                    blob.sha256
                )));
            }
            states.push(bytes.to_vec());
            rest = tail;
        }
        Ok(states)
    }

    /// Commits the state ciphertexts after one more step, with `metadata` (e.g. the tokens so
    /// far), atomically (see the module documentation); returns the new step count.
    ///
    /// # Errors
    /// [`SessionError::Io`]; the session on disk is then still at its previous step.
    pub fn commit_step<B: AsRef<[u8]>>(
        &mut self,
        states: &[B],
        metadata: serde_json::Value,
    ) -> Result<u64> {
        self.commit(states, metadata, None)?;
        Ok(self.step())
    }

    /// [`Session::commit_step`] stopped at `at`, as a process killed there would: tests of crash
    /// recovery only.
    #[doc(hidden)]
    pub fn commit_step_interrupted<B: AsRef<[u8]>>(
        mut self,
        states: &[B],
        metadata: serde_json::Value,
        at: CrashPoint,
    ) -> Result<()> {
        self.commit(states, metadata, Some(at))
    }

    fn data_path(&self) -> Option<PathBuf> {
        self.manifest.data.as_ref().map(|name| self.dir.join(name))
    }

    fn commit<B: AsRef<[u8]>>(
        &mut self,
        states: &[B],
        metadata: serde_json::Value,
        crash: Option<CrashPoint>,
    ) -> Result<()> {
        let step = self.manifest.step + 1;
        let name = data_name(step);
        let path = self.dir.join(&name);
        let temporary = temporary_of(&path);
        let blobs: Vec<Blob> = states
            .iter()
            .map(|s| Blob {
                bytes: s.as_ref().len() as u64,
                sha256: ContentHash::of(s.as_ref()),
            })
            .collect();
        {
            let mut file = File::create(&temporary).map_err(io(&temporary))?;
            let total: usize = states.iter().map(|s| s.as_ref().len()).sum();
            let mut written = 0;
            for s in states {
                let s = s.as_ref();
                if crash == Some(CrashPoint::DataPartlyWritten) && written + s.len() >= total / 2 {
                    let half = total / 2 - written;
                    file.write_all(&s[..half]).map_err(io(&temporary))?;
                    return Ok(());
                }
                file.write_all(s).map_err(io(&temporary))?;
                written += s.len();
            }
            if crash == Some(CrashPoint::DataPartlyWritten) {
                return Ok(());
            }
            file.sync_all().map_err(io(&temporary))?;
        }
        if crash == Some(CrashPoint::DataWritten) {
            return Ok(());
        }
        fs::rename(&temporary, &path).map_err(io(&path))?;
        sync_dir(&self.dir)?;
        if crash == Some(CrashPoint::DataRenamed) {
            return Ok(());
        }
        let manifest = Manifest {
            step,
            data: Some(name),
            blobs,
            metadata,
            ..self.manifest.clone()
        };
        write_manifest(&self.dir, &manifest, crash)?;
        if matches!(
            crash,
            Some(CrashPoint::ManifestPartlyWritten | CrashPoint::ManifestWritten)
        ) {
            return Ok(());
        }
        let previous = std::mem::replace(&mut self.manifest, manifest);
        if crash == Some(CrashPoint::ManifestRenamed) {
            return Ok(());
        }
        if let Some(old) = previous.data {
            let old = self.dir.join(old);
            fs::remove_file(&old).map_err(io(&old))?;
        }
        Ok(())
    }
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> SessionError + '_ {
    move |source| SessionError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn data_name(step: u64) -> String {
    format!("{DATA_PREFIX}{step:010}{DATA_SUFFIX}")
}

fn temporary_of(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(TEMPORARY);
    PathBuf::from(name)
}

fn parse_manifest(path: &Path, text: &str) -> Result<Manifest> {
    let error = |message: String| SessionError::Manifest {
        path: path.to_path_buf(),
        message,
    };
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| error(e.to_string()))?;
    if value.get("format").and_then(|f| f.as_str()) != Some(FORMAT) {
        return Err(error(format!("not a {FORMAT} manifest")));
    }
    match value.get("version").and_then(serde_json::Value::as_u64) {
        Some(v) if v == u64::from(SESSION_FORMAT_VERSION) => {}
        Some(v) => {
            return Err(SessionError::Version {
                found: u32::try_from(v).unwrap_or(u32::MAX),
            });
        }
        None => return Err(error("no format version".into())),
    }
    let manifest: Manifest = serde_json::from_value(value).map_err(|e| error(e.to_string()))?;
    let names_its_step = manifest.data.as_deref() == Some(data_name(manifest.step).as_str());
    if (manifest.step == 0) != manifest.data.is_none() || (manifest.step > 0 && !names_its_step) {
        return Err(error(format!(
            "step {} with data file {:?}",
            manifest.step, manifest.data
        )));
    }
    if manifest.total_bytes().is_none() {
        return Err(error("blob sizes overflow".into()));
    }
    Ok(manifest)
}

/// Writes `manifest.json` atomically: temporary file, fsync, rename, fsync of the directory
/// (stopping early at a manifest crash point).
fn write_manifest(dir: &Path, manifest: &Manifest, crash: Option<CrashPoint>) -> Result<()> {
    let path = dir.join(MANIFEST);
    let temporary = temporary_of(&path);
    let text = serde_json::to_string_pretty(manifest).map_err(|e| SessionError::Manifest {
        path: path.clone(),
        message: e.to_string(),
    })?;
    let mut file = File::create(&temporary).map_err(io(&temporary))?;
    if crash == Some(CrashPoint::ManifestPartlyWritten) {
        file.write_all(&text.as_bytes()[..text.len() / 2])
            .map_err(io(&temporary))?;
        return Ok(());
    }
    file.write_all(text.as_bytes()).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    drop(file);
    if crash == Some(CrashPoint::ManifestWritten) {
        return Ok(());
    }
    fs::rename(&temporary, &path).map_err(io(&path))?;
    sync_dir(dir)
}

/// Removes the session's temporary files and every data file but `keep`.
fn remove_leftovers(dir: &Path, keep: Option<&str>) -> Result<()> {
    let mut removed = false;
    for entry in fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        let ours = name.starts_with(DATA_PREFIX) || name.starts_with(MANIFEST);
        let stale = name.ends_with(TEMPORARY)
            || (name.starts_with(DATA_PREFIX) && name.ends_with(DATA_SUFFIX) && Some(name) != keep);
        if ours && stale {
            let path = entry.path();
            fs::remove_file(&path).map_err(io(&path))?;
            removed = true;
        }
    }
    if removed {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes renames and removals in `dir` durable (an fsync of the directory; POSIX only).
fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}
