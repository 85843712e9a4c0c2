//! ONNX import: reads a model exported by PyTorch / Hugging Face exporters (opset 13 to 20,
//! default domain), binds its symbolic dimensions, folds every subgraph that is computable from
//! constants and static shapes (the Shape/Gather/Unsqueeze/Concat/Range/ConstantOfShape/Expand
//! chains exporters emit), recognises `past_*` / `present*` tensors as KV-cache state, and
//! produces Tensor IR.
//!
//! ```no_run
//! use cachemir_onnx::{import_file, ImportOptions};
//! let mut options = ImportOptions::default();
//! options.dims.insert("sequence".into(), 16);
//! options.dims.insert("batch".into(), 1);
//! let imported = import_file("minilm.onnx".as_ref(), &options)?;
//! println!("{}", imported.summary_text());
//! # Ok::<(), cachemir_onnx::OnnxError>(())
//! ```

mod error;
mod fold;
mod importer;
mod ops;
mod proto;
mod summary;

pub use error::OnnxError;
pub use importer::{ImportOptions, Imported, import_bytes, import_file};
pub use summary::ImportSummary;
