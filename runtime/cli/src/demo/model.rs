//! The demo's embedded default model: the tiny Llama decoder-with-past export of
//! `examples/tiny_llama/` (ONNX, calibration, tokenizer; provenance and licence in its
//! `PROVENANCE.md`), compiled into the binary so that `cachemir demo` needs no other file.

use std::path::Path;

use anyhow::{Context, Result};
use cachemir_ir::plan::ContentHash;

/// The ONNX file's name.
pub const ONNX: &str = "tiny_llama_with_past_ts17.onnx";
/// The calibration file's name (it names the `.npy` files beside it).
pub const CALIBRATION: &str = "calib.json";
/// The tokenizer's name.
pub const TOKENIZER: &str = "tokenizer.json";
/// Where the client's encryption starts: the token embedding (the client looks up the
/// embedding of each token in the clear and encrypts it).
pub const ENCRYPT_FROM: &str = "/model/model/embed_tokens/Gather_output_0";

/// `(name, bytes)` of every embedded file.
const FILES: &[(&str, &[u8])] = &[
    (
        ONNX,
        include_bytes!("../../../../examples/tiny_llama/tiny_llama_with_past_ts17.onnx"),
    ),
    (
        CALIBRATION,
        include_bytes!("../../../../examples/tiny_llama/calib.json"),
    ),
    (
        "calib.input_ids.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.input_ids.npy"),
    ),
    (
        "calib.attention_mask.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.attention_mask.npy"),
    ),
    (
        "calib.position_ids.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.position_ids.npy"),
    ),
    (
        "calib.past_key_values_0_key.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.past_key_values_0_key.npy"),
    ),
    (
        "calib.past_key_values_0_value.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.past_key_values_0_value.npy"),
    ),
    (
        "calib.past_key_values_1_key.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.past_key_values_1_key.npy"),
    ),
    (
        "calib.past_key_values_1_value.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.past_key_values_1_value.npy"),
    ),
    (
        "calib.logits.npy",
        include_bytes!("../../../../examples/tiny_llama/calib.logits.npy"),
    ),
    (
        TOKENIZER,
        include_bytes!("../../../../examples/tiny_llama/tokenizer.json"),
    ),
    (
        "tokenizer_config.json",
        include_bytes!("../../../../examples/tiny_llama/tokenizer_config.json"),
    ),
];

/// Size of the ONNX file, bytes.
pub fn onnx_bytes() -> usize {
    FILES[0].1.len()
}

/// SHA-256 over every embedded file (names and bytes): the model's identity in a work folder.
pub fn content_hash() -> ContentHash {
    let mut all = Vec::new();
    for (name, bytes) in FILES {
        all.extend_from_slice(name.as_bytes());
        all.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
        all.extend_from_slice(bytes);
    }
    ContentHash::of(&all)
}

/// Writes every embedded file into `dir` (created if missing), replacing a file that differs;
/// a file already equal is left alone (another process of a resumed demo may be reading it).
///
/// # Errors
/// An unwritable folder or file.
pub fn write_to(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for (name, bytes) in FILES {
        let path = dir.join(name);
        if std::fs::read(&path).is_ok_and(|there| there == *bytes) {
            continue;
        }
        std::fs::write(&path, bytes).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_embedded_files_are_the_examples_and_calibration_names_them_all() {
        // The ONNX file's SHA-256 as PROVENANCE.md (and the model's sidecar) records it.
        assert_eq!(
            ContentHash::of(FILES[0].1).to_string(),
            "5a186394a9c279caff094e85e9203eaafdcd27a72ad561662ece57e08787fb62"
        );
        let calibration: serde_json::Value = serde_json::from_slice(FILES[1].1).unwrap();
        let mut named: Vec<&str> = ["inputs", "outputs"]
            .iter()
            .flat_map(|k| calibration[*k].as_array().unwrap())
            .map(|io| io["file"].as_str().unwrap())
            .collect();
        named.sort_unstable();
        let mut embedded: Vec<&str> = FILES
            .iter()
            .map(|(name, _)| *name)
            .filter(|n| n.starts_with("calib.") && n.ends_with(".npy"))
            .collect();
        embedded.sort_unstable();
        assert_eq!(named, embedded);
        let dir = tempfile::tempdir().unwrap();
        write_to(dir.path()).unwrap();
        assert_eq!(
            std::fs::read(dir.path().join(ONNX)).unwrap().len(),
            onnx_bytes()
        );
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), FILES.len());
    }
}
