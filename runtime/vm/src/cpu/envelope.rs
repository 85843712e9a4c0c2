//! The container of every file the `cpu` backend writes (secret key, evaluation keys,
//! ciphertexts): the magic `CACHEMIR-CKKS`, a format version (u32 little endian), then postcard
//! of the object's kind, the parameter set's name and SHA-256 hash, and the payload. Reading
//! checks each in turn, so a file of another kind, version or parameter set is refused with an
//! error that names both sides before the payload is decoded.

use serde::{Deserialize, Serialize};

use super::{CpuError, CpuParameters, ParametersMismatch};
use cachemir_ir::plan::ContentHash;

/// The format version this build reads and writes.
pub const ENVELOPE_VERSION: u32 = 1;
const MAGIC: &[u8] = b"CACHEMIR-CKKS";

#[derive(Serialize, Deserialize)]
struct Header {
    kind: String,
    parameters: String,
    parameters_hash: ContentHash,
}

/// `payload` sealed as an object of `kind` made under `params`.
pub fn seal(kind: &str, params: &CpuParameters, payload: &[u8]) -> Result<Vec<u8>, CpuError> {
    let header = Header {
        kind: kind.into(),
        parameters: params.parameters().name.clone(),
        parameters_hash: params.hash(),
    };
    let mut bytes = MAGIC.to_vec();
    bytes.extend_from_slice(&ENVELOPE_VERSION.to_le_bytes());
    let header = postcard::to_stdvec(&header).map_err(|e| CpuError::Format {
        what: kind.into(),
        message: e.to_string(),
    })?;
    bytes.extend_from_slice(&header);
    bytes.extend_from_slice(payload);
    Ok(bytes)
}

/// The payload of an object of `kind` (named `what` in messages, e.g. its path) made under
/// `params`, used by `user` (e.g. "the plan").
///
/// # Errors
/// [`CpuError::Format`] for another magic, version or kind; [`CpuError::ParametersHash`] for
/// another parameter set (naming both).
pub fn open<'a>(
    bytes: &'a [u8],
    kind: &str,
    what: &str,
    params: &CpuParameters,
    user: &str,
) -> Result<&'a [u8], CpuError> {
    let format = |message: String| CpuError::Format {
        what: what.into(),
        message,
    };
    let rest = bytes
        .strip_prefix(MAGIC)
        .ok_or_else(|| format("not a Cachemir CKKS file (bad magic bytes)".into()))?;
    if rest.len() < 4 {
        return Err(format("truncated header".into()));
    }
    let (version, rest) = rest.split_at(4);
    let version = u32::from_le_bytes([version[0], version[1], version[2], version[3]]);
    if version != ENVELOPE_VERSION {
        return Err(format(format!(
            "format version {version}; this build reads version {ENVELOPE_VERSION}"
        )));
    }
    let (header, payload): (Header, &[u8]) =
        postcard::take_from_bytes(rest).map_err(|e| format(format!("bad header: {e}")))?;
    if header.kind != kind {
        return Err(format(format!(
            "a {} file where a {kind} file was expected",
            header.kind
        )));
    }
    if header.parameters_hash != params.hash() {
        return Err(ParametersMismatch {
            what: what.into(),
            found_name: header.parameters,
            found: header.parameters_hash,
            expected_what: user.into(),
            expected_name: params.parameters().name.clone(),
            expected: params.hash(),
        }
        .into());
    }
    Ok(payload)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Insecure;
    use cachemir_ir::plan::parameters::by_name;

    #[test]
    fn kind_version_and_parameters_are_checked() {
        let params = CpuParameters::new(&by_name("ToyBootN12").unwrap(), Insecure::Allow).unwrap();
        let sealed = seal("secret key", &params, b"payload").unwrap();
        assert_eq!(
            open(&sealed, "secret key", "k", &params, "the plan").unwrap(),
            b"payload"
        );
        let err = open(&sealed, "ciphertexts", "k", &params, "the plan").unwrap_err();
        assert!(
            err.to_string()
                .contains("a secret key file where a ciphertexts"),
            "{err}"
        );
        let mut other = sealed.clone();
        other[MAGIC.len()] = 7;
        assert!(
            open(&other, "secret key", "k", &params, "p")
                .unwrap_err()
                .to_string()
                .contains("version 7")
        );
        assert!(open(b"junk", "secret key", "k", &params, "p").is_err());
        for cut in 0..sealed.len().min(80) {
            let _ = open(&sealed[..cut], "secret key", "k", &params, "p");
        }
    }
}
