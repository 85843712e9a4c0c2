//! Reference cases: the `caseN.json` files of `../shared/models` (inputs and expected outputs as
//! `.npy`), running the reference interpreter on them, and comparing against the expectations.

pub use cachemir_ir::case::{Case, CaseError, CaseFile, CaseTensor, output_file_name};
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use ndarray::Dimension as _;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// The folder of reference models: `$CACHEMIR_MODELS`, or `../shared/models` beside the
/// workspace. `None`, with a notice on standard error, where it holds no `manifest.json` (a
/// fresh clone without `../shared`): tests that need the models then skip.
pub fn models_dir() -> Option<PathBuf> {
    let dir = match std::env::var_os("CACHEMIR_MODELS") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/models"),
    };
    if dir.join("manifest.json").is_file() {
        Some(dir)
    } else {
        eprintln!(
            "skipped: no reference models at {} (set CACHEMIR_MODELS to run this test)",
            dir.display()
        );
        None
    }
}

/// Runs `graph` on the case's inputs (those the graph reads).
///
/// # Errors
/// Missing or mismatched inputs and run-time failures, naming the node.
pub fn run_case(
    graph: &Graph,
    case: &Case,
    precision: Precision,
) -> Result<HashMap<String, Tensor>, CaseError> {
    let wanted: std::collections::HashSet<&str> =
        graph.inputs().iter().map(|i| graph.input_name(i)).collect();
    let inputs: HashMap<String, Tensor> = case
        .inputs
        .iter()
        .filter(|(name, _)| wanted.contains(name.as_str()))
        .map(|(n, t)| (n.clone(), t.clone()))
        .collect();
    Ok(Interpreter::new(graph, precision).run(&inputs)?)
}

/// Error of one output against its reference.
#[derive(Debug, Clone, PartialEq)]
pub struct Comparison {
    pub name: String,
    /// `max |y - ref|`.
    pub max_abs_error: f64,
    /// `max |y - ref| / max |ref|`.
    pub max_relative_error: f64,
    /// `max |ref|`.
    pub max_abs_reference: f64,
    /// Rows along the last axis whose argmax equals the reference's, and the number of rows
    /// (for logits: the next-token choices that agree).
    pub same_argmax: (usize, usize),
}

/// Selects, by multi-index, the elements a comparison covers (e.g. real-token rows only).
pub type ElementFilter<'a> = &'a dyn Fn(&[usize]) -> bool;

/// Compares `actual` with `expected`, over the elements `keep` selects (all when `None`).
///
/// # Errors
/// A message when the shapes differ.
pub fn compare(
    name: &str,
    actual: &Tensor,
    expected: &Tensor,
    keep: Option<ElementFilter>,
) -> Result<Comparison, String> {
    if actual.shape() != expected.shape() {
        return Err(format!(
            "{name}: shape {:?}, reference {:?}",
            actual.shape(),
            expected.shape()
        ));
    }
    let (a, e) = (actual.to_f64(), expected.to_f64());
    let mut max_abs_error: f64 = 0.0;
    let mut max_abs_reference: f64 = 0.0;
    for ((index, &x), &y) in a.indexed_iter().zip(e.iter()) {
        if keep.is_some_and(|k| !k(index.slice())) {
            continue;
        }
        let error = (x - y).abs();
        max_abs_error = if error.is_nan() {
            f64::INFINITY
        } else {
            max_abs_error.max(error)
        };
        max_abs_reference = max_abs_reference.max(y.abs());
    }
    let last = a.shape().last().copied().unwrap_or(1).max(1);
    let argmax = |row: &[f64]| (0..row.len()).max_by(|&i, &j| row[i].total_cmp(&row[j]));
    let (a_rows, e_rows) = (a.as_standard_layout(), e.as_standard_layout());
    let rows = a_rows
        .as_slice()
        .expect("standard layout")
        .chunks(last)
        .zip(e_rows.as_slice().expect("standard layout").chunks(last));
    let same = rows.clone().filter(|(x, y)| argmax(x) == argmax(y)).count();
    Ok(Comparison {
        same_argmax: (same, rows.count()),
        name: name.to_string(),
        max_abs_error,
        max_relative_error: if max_abs_reference > 0.0 {
            max_abs_error / max_abs_reference
        } else {
            max_abs_error
        },
        max_abs_reference,
    })
}
