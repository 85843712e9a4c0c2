//! KV-cache states between a backend and a session directory ([`cachemir_vm::Session`]), shared
//! by `cachemir run --session` and `cachemir generate --session`.
//!
//! A session stores opaque blobs; this module turns a plan's states (`plan.states`, each the
//! ciphertexts of its state input's layout, in layout order) into one blob per ciphertext, in
//! plan order, and back. [`StateCodec`] serializes one ciphertext of a backend: the CKKS crate's
//! serialized ciphertext for `cpu` ([`CpuStates`]), the slot vector and its bookkeeping for `sim`
//! ([`SimStates`]). Reading checks the blob count against the plan's layouts, so a session whose
//! blobs do not fit the plan is refused rather than misread.

use anyhow::{Result, anyhow};
use cachemir_ckks::{Ciphertext, Serializable};
use cachemir_ir::plan::{ContentHash, Plan};
use cachemir_vm::{
    CpuCiphertext, CpuParameters, Session, SessionError, SessionIdentity, SimCiphertext,
};

use crate::exit::{cpu_error, input_error};

/// Serializes one state ciphertext of a backend for a session.
pub trait StateCodec {
    type Ciphertext;

    /// The bytes of `ct`.
    ///
    /// # Errors
    /// A ciphertext the codec cannot serialize (e.g. of other parameters).
    fn serialize(&self, ct: &Self::Ciphertext) -> Result<Vec<u8>>;

    /// The ciphertext of `bytes` (named `what` in messages).
    ///
    /// # Errors
    /// Malformed bytes, or a ciphertext of another slot count or parameter set (input errors).
    fn deserialize(&self, bytes: &[u8], what: &str) -> Result<Self::Ciphertext>;
}

/// The `cpu` backend's states: CKKS ciphertexts under `params` with `slots` slots.
#[derive(Debug, Clone, Copy)]
pub struct CpuStates<'a> {
    pub params: &'a CpuParameters,
    pub slots: usize,
}

impl StateCodec for CpuStates<'_> {
    type Ciphertext = CpuCiphertext;

    fn serialize(&self, ct: &CpuCiphertext) -> Result<Vec<u8>> {
        ct.ciphertext()
            .to_bytes(self.params.context())
            .map_err(|e| anyhow!("serializing a KV-cache state ciphertext: {e}"))
    }

    fn deserialize(&self, bytes: &[u8], what: &str) -> Result<CpuCiphertext> {
        let ct = Ciphertext::from_bytes(self.params.context(), bytes)
            .map_err(|e| input_error(anyhow!("{what}: {e}")))?;
        CpuCiphertext::from_ciphertext(ct, self.params, self.slots)
            .map_err(|e| cpu_error(e).context(what.to_string()))
    }
}

/// The `sim` backend's states: `slots` reals each, with depth, level and scale.
#[derive(Debug, Clone, Copy)]
pub struct SimStates {
    pub slots: usize,
}

/// `sim` state blob: magic, level (`u32::MAX` for none), depth, scale in bits, slot count, then
/// the slots; little-endian.
const SIM_MAGIC: &[u8; 8] = b"CMSIMCT1";
const SIM_HEADER: usize = 8 + 4 + 4 + 8 + 8;

impl StateCodec for SimStates {
    type Ciphertext = SimCiphertext;

    fn serialize(&self, ct: &SimCiphertext) -> Result<Vec<u8>> {
        let mut bytes = Vec::with_capacity(SIM_HEADER + 8 * ct.values.len());
        bytes.extend_from_slice(SIM_MAGIC);
        bytes.extend_from_slice(&ct.level.unwrap_or(u32::MAX).to_le_bytes());
        bytes.extend_from_slice(&ct.depth.to_le_bytes());
        bytes.extend_from_slice(&ct.scale_bits.to_le_bytes());
        bytes.extend_from_slice(&(ct.values.len() as u64).to_le_bytes());
        for v in &ct.values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        Ok(bytes)
    }

    fn deserialize(&self, bytes: &[u8], what: &str) -> Result<SimCiphertext> {
        let bad = |message: String| input_error(anyhow!("{what}: {message}"));
        let expected = SIM_HEADER + 8 * self.slots;
        if bytes.len() != expected || !bytes.starts_with(SIM_MAGIC) {
            return Err(bad(format!(
                "not a sim ciphertext of {} slots ({} bytes; {expected} expected)",
                self.slots,
                bytes.len()
            )));
        }
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4"));
        let f64_at = |at: usize| f64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        let level = u32_at(8);
        if u64_at(24) != self.slots as u64 {
            return Err(bad(format!(
                "{} slots; the plan has {}",
                u64_at(24),
                self.slots
            )));
        }
        Ok(SimCiphertext {
            values: (0..self.slots)
                .map(|k| f64_at(SIM_HEADER + 8 * k))
                .collect(),
            depth: u32_at(12),
            scale_bits: f64_at(16),
            level: (level != u32::MAX).then_some(level),
            ciphertext_degree: 1,
        })
    }
}

/// What a `sim` session is bound to: the plan, and fixed hashes standing for "no keys" and "no
/// CKKS parameters", so that a `cpu` run refuses it.
///
/// # Errors
/// The plan cannot be hashed.
pub fn sim_identity(plan: &Plan) -> Result<SessionIdentity> {
    Ok(SessionIdentity {
        plan_hash: plan.content_hash().map_err(input_error)?,
        key_hash: ContentHash::of(b"cachemir sim backend: no evaluation keys"),
        parameters_hash: ContentHash::of(b"cachemir sim backend: cleartext slots"),
    })
}

/// A session error as an input error (exit 2: another plan or keys, a corrupt or unreadable
/// manifest) or a runtime failure (I/O).
pub fn session_error(e: SessionError) -> anyhow::Error {
    match e {
        SessionError::Io { .. } => anyhow::Error::new(e),
        _ => input_error(e),
    }
}

/// Opens the session in `dir`, or creates one there at step 0 (see
/// [`Session::open_or_create`]).
///
/// # Errors
/// As [`session_error`].
pub fn open_session(dir: &std::path::Path, identity: SessionIdentity) -> Result<Session> {
    Session::open_or_create(dir, identity).map_err(session_error)
}

/// The number of ciphertexts of each state of `plan` (its state input's layout).
///
/// # Errors
/// An input error when a state names no encrypted input (an inconsistent plan).
pub fn state_parts(plan: &Plan) -> Result<Vec<usize>> {
    plan.states
        .iter()
        .map(|state| {
            plan.inputs
                .iter()
                .find(|io| io.name == state.input)
                .map(|io| io.layout.ciphertexts())
                .ok_or_else(|| {
                    input_error(anyhow!(
                        "the plan's state `{}` is not an encrypted input",
                        state.input
                    ))
                })
        })
        .collect()
}

/// The states whose output is written at another level than the next step reads the input at
/// (`"name: written at level a, read at b"`): such a plan runs its first step only (a plan
/// leveled without the KV-aware bootstrap placement).
pub fn state_level_mismatches(plan: &Plan) -> Vec<String> {
    let level = |ios: &[cachemir_ir::plan::Ciphertexts], name: &str| {
        ios.iter()
            .find(|io| io.name == name)
            .and_then(|io| io.level)
    };
    plan.states
        .iter()
        .filter_map(|state| {
            let written = level(&plan.outputs, &state.output);
            let read = level(&plan.inputs, &state.input);
            (written != read).then(|| {
                let show = |l: Option<u32>| l.map_or("none".to_string(), |l| l.to_string());
                format!(
                    "`{}` written at level {}, read at {}",
                    state.input,
                    show(written),
                    show(read)
                )
            })
        })
        .collect()
}

/// Refuses a step that would read states written by a previous step when the plan's state
/// levels disagree ([`state_level_mismatches`]).
///
/// # Errors
/// An input error naming the states and their levels.
pub fn check_state_levels(plan: &Plan, what: &str) -> Result<()> {
    let mismatches = state_level_mismatches(plan);
    if mismatches.is_empty() {
        return Ok(());
    }
    Err(input_error(anyhow!(
        "{what}: the plan's KV-cache states are written at other levels than they are read \
         ({}), so it runs one step only; compile it with the KV-aware bootstrap placement",
        mismatches.join("; ")
    )))
}

/// The states of the session's last complete step, one entry per `plan.states`; `None` at step 0
/// (nothing committed yet).
///
/// # Errors
/// Input errors: a blob count that does not fit the plan's layouts, a malformed or corrupt blob;
/// I/O failures exit 1.
pub fn load_states<C: StateCodec>(
    session: &Session,
    plan: &Plan,
    codec: &C,
) -> Result<Option<Vec<Vec<C::Ciphertext>>>> {
    if session.step() == 0 {
        return Ok(None);
    }
    let blobs = session.load_state().map_err(session_error)?;
    let parts = state_parts(plan)?;
    let expected: usize = parts.iter().sum();
    if blobs.len() != expected {
        return Err(input_error(anyhow!(
            "session {}: {} state ciphertexts at step {}; the plan's states have {expected}",
            session.dir().display(),
            blobs.len(),
            session.step()
        )));
    }
    let mut blobs = blobs.iter();
    let mut states = Vec::with_capacity(parts.len());
    for (state, count) in plan.states.iter().zip(parts) {
        let cts = (0..count)
            .map(|part| {
                let bytes = blobs.next().expect("counted above");
                let what = format!(
                    "session {} step {}: state `{}` part {part}",
                    session.dir().display(),
                    session.step(),
                    state.input
                );
                codec.deserialize(bytes, &what)
            })
            .collect::<Result<Vec<_>>>()?;
        states.push(cts);
    }
    Ok(Some(states))
}

/// Commits `states` (one entry per `plan.states`) as the session's next step with `metadata`,
/// atomically; returns the new step count.
///
/// # Errors
/// A ciphertext the codec cannot serialize; I/O failures (the session then stays at its previous
/// step).
pub fn commit_states<C: StateCodec>(
    session: &mut Session,
    codec: &C,
    states: &[Vec<C::Ciphertext>],
    metadata: serde_json::Value,
) -> Result<u64> {
    let blobs = states
        .iter()
        .flatten()
        .map(|ct| codec.serialize(ct))
        .collect::<Result<Vec<_>>>()?;
    session.commit_step(&blobs, metadata).map_err(session_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_states_round_trip_and_refuse_other_slot_counts() {
        let codec = SimStates { slots: 4 };
        let ct = SimCiphertext {
            values: vec![1.5, -2.0, 0.0, 3.25],
            depth: 3,
            scale_bits: 40.0,
            level: Some(7),
            ciphertext_degree: 1,
        };
        let bytes = codec.serialize(&ct).unwrap();
        assert_eq!(bytes.len(), SIM_HEADER + 32);
        let back = codec.deserialize(&bytes, "blob").unwrap();
        assert_eq!(back.values, ct.values);
        assert_eq!((back.depth, back.level), (3, Some(7)));
        assert_eq!(back.scale_bits, 40.0);
        let unleveled = SimCiphertext { level: None, ..ct };
        let back = codec
            .deserialize(&codec.serialize(&unleveled).unwrap(), "blob")
            .unwrap();
        assert_eq!(back.level, None);

        let other = SimStates { slots: 8 };
        let e = other.deserialize(&bytes, "blob").unwrap_err();
        assert!(e.downcast_ref::<crate::exit::InputError>().is_some());
        assert!(
            format!("{e:#}").contains("not a sim ciphertext of 8 slots"),
            "{e:#}"
        );
        let e = codec.deserialize(&bytes[..10], "blob").unwrap_err();
        assert!(format!("{e:#}").contains("10 bytes"), "{e:#}");
    }
}
