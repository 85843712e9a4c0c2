//! Reference case files: a JSON file naming input tensors (and optionally expected outputs) stored
//! as `.npy` files beside it, as in `../shared/models/*/caseN.json`:
//!
//! ```json
//! {"inputs": [{"name": "input_ids", "file": "case0_input_ids.npy"}],
//!  "outputs": [{"name": "logits", "file": "case0_logits.npy"}]}
//! ```
//!
//! Shared by the compiler (`cachemirc eval`, calibration) and the runtime (`cachemir run`), which
//! must not depend on the compiler.

use crate::error::IrError;
use crate::npy::read_npy;
use crate::tensor::Tensor;
use serde::Deserialize;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Errors reading a case file or running it.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The case file or one of its `.npy` files is missing or malformed.
    #[error("{path}: {message}")]
    File { path: String, message: String },
    #[error(transparent)]
    Ir(#[from] IrError),
}

/// The JSON form of a case file.
#[derive(Debug, Deserialize)]
pub struct CaseFile {
    pub inputs: Vec<CaseTensor>,
    #[serde(default)]
    pub outputs: Vec<CaseTensor>,
}

/// One named tensor of a case file: its `.npy` file, relative to the case file's folder.
#[derive(Debug, Deserialize)]
pub struct CaseTensor {
    pub name: String,
    pub file: String,
}

/// A reference case: named input tensors and the expected outputs' files.
#[derive(Debug)]
pub struct Case {
    pub inputs: HashMap<String, Tensor>,
    /// Expected output name → `.npy` path (read on demand: they can be large).
    pub expected: Vec<(String, PathBuf)>,
}

impl Case {
    /// Reads a case file; the `.npy` paths in it are relative to the file's folder.
    ///
    /// # Errors
    /// [`CaseError::File`] naming the JSON file when it is missing or malformed, and
    /// [`CaseError::Ir`] (an [`IrError::Io`] naming the file) for a bad `.npy` file.
    pub fn load(path: &Path) -> Result<Case, CaseError> {
        let file_error = |message: String| CaseError::File {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| file_error(e.to_string()))?;
        let file: CaseFile = serde_json::from_str(&text).map_err(|e| file_error(e.to_string()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let mut inputs = HashMap::new();
        for input in file.inputs {
            inputs.insert(input.name, read_npy(&dir.join(&input.file))?);
        }
        let expected = file
            .outputs
            .into_iter()
            .map(|o| (o.name, dir.join(o.file)))
            .collect();
        Ok(Case { inputs, expected })
    }

    /// The shape of every input, for binding symbolic dimensions at import.
    pub fn input_shapes(&self) -> HashMap<String, Vec<usize>> {
        self.inputs
            .iter()
            .map(|(name, t)| (name.clone(), t.shape().to_vec()))
            .collect()
    }
}

/// The file name `cachemirc eval` and `cachemir run` write an output to: `.` and `/` become `_`,
/// and `.npy` is appended (`model.logits` → `model_logits.npy`).
pub fn output_file_name(name: &str) -> String {
    format!("{}.npy", name.replace(['.', '/'], "_"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_names_are_flattened() {
        assert_eq!(output_file_name("a.b/c"), "a_b_c.npy");
    }

    #[test]
    fn missing_and_malformed_files_name_the_path() {
        let err = Case::load(Path::new("/nonexistent/case.json")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/case.json"), "{err}");
    }
}
