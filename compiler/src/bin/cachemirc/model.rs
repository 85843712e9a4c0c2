//! `cachemirc import` and model loading: ONNX, Cachemir model files (`.cmr`) and Tensor IR JSON.

use crate::args::{Emit, ImportArgs};
use crate::error::input_error;
use anyhow::{Context, Result};
use cachemir_ir::Graph;
use cachemir_ir::printer::print_graph;
use cachemir_onnx::{ImportOptions, Imported, import_file};
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `cachemirc import MODEL`: prints (or writes to `output`) the model's summary, IR, IR JSON or
/// model text (with its weights at `weights_out`).
pub(crate) fn import(
    model: &Path,
    import: &ImportArgs,
    emit: Emit,
    output: Option<PathBuf>,
    weights_out: Option<PathBuf>,
) -> Result<()> {
    let loaded = load_model(model, import, HashMap::new())?;
    let text = match emit {
        Emit::Summary => loaded.summary,
        Emit::Ir => ir_text(&loaded.graph, output.as_deref())?,
        Emit::Json => serde_json::to_string(&loaded.graph)?,
        Emit::Dsl => {
            // Model text reads best with the composite ops an exporter spelled out.
            let mut graph = loaded.graph;
            cachemir_ir::recognize::recognize(&mut graph);
            emit_dsl(&graph, output.as_deref(), weights_out)?
        }
    };
    match output {
        Some(path) => {
            std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}

/// A loaded model and its summary text.
pub(crate) struct Loaded {
    pub(crate) graph: Graph,
    pub(crate) summary: String,
}

/// Loads an ONNX file, or a Cachemir model file (`.cmr`), into Tensor IR.
pub(crate) fn load_model(
    model: &Path,
    args: &ImportArgs,
    input_shapes: HashMap<String, Vec<usize>>,
) -> Result<Loaded> {
    if model.extension().is_some_and(|e| e == "json") {
        let text = std::fs::read_to_string(model)
            .with_context(|| format!("reading {}", model.display()))?;
        let graph: Graph = serde_json::from_str(&text).map_err(|e| {
            input_error(anyhow::anyhow!(
                "{}: not a Tensor IR file: {e}",
                model.display()
            ))
        })?;
        graph
            .verify()
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", model.display())))?;
        let summary = format!(
            "model {}\n{}",
            graph.name,
            cachemir_ir::printer::summary(&graph)
        );
        return Ok(Loaded { graph, summary });
    }
    if model.extension().is_some_and(|e| e == "cmr") {
        if !args.dims.is_empty()
            || args.outputs.is_some()
            || !args.inputs_at.is_empty()
            || args.encrypted.is_some()
        {
            return Err(input_error(anyhow::anyhow!(
                "--dim, --outputs, --inputs-at and --encrypted apply to ONNX files; a model file states them itself"
            )));
        }
        let graph = cachemir_dsl::load_file(model, &cachemir_dsl::LoadOptions::default())
            .map_err(|e| input_error(anyhow::anyhow!("{e}")))?;
        let summary = format!(
            "model {}
{}",
            graph.name,
            cachemir_ir::printer::summary(&graph)
        );
        return Ok(Loaded { graph, summary });
    }
    let imported = import_model(model, args, input_shapes)?;
    Ok(Loaded {
        summary: imported.summary_text(),
        graph: imported.graph,
    })
}

/// The IR as text, or as JSON (the form `eval` and `compile` load) for a `.json` output file.
pub(crate) fn ir_text(graph: &Graph, output: Option<&Path>) -> Result<String> {
    if output.is_some_and(|o| o.extension().is_some_and(|e| e == "json")) {
        Ok(serde_json::to_string(graph)?)
    } else {
        Ok(print_graph(graph))
    }
}

/// Prints `graph` as model text and writes its weights; returns the text.
pub(crate) fn emit_dsl(
    graph: &Graph,
    output: Option<&Path>,
    weights_out: Option<PathBuf>,
) -> Result<String> {
    let weights_path = match (weights_out, output) {
        (Some(path), _) => path,
        (None, Some(out)) => out.with_extension("safetensors"),
        (None, None) => {
            return Err(input_error(anyhow::anyhow!(
                "--emit dsl needs -o FILE.cmr or --weights-out FILE.safetensors"
            )));
        }
    };
    // The model file names its weights relative to itself.
    let relative = match output.and_then(Path::parent) {
        Some(dir) => weights_path
            .strip_prefix(dir)
            .unwrap_or(&weights_path)
            .to_path_buf(),
        None => weights_path.clone(),
    };
    let printed = cachemir_dsl::print::print_model(graph, &relative.display().to_string());
    cachemir_dsl::weights::save(&weights_path, &printed.weights).map_err(|m| anyhow::anyhow!(m))?;
    eprintln!(
        "wrote {} ({} weights)",
        weights_path.display(),
        printed.weights.len()
    );
    Ok(printed.text)
}

pub(crate) fn import_model(
    model: &Path,
    args: &ImportArgs,
    input_shapes: HashMap<String, Vec<usize>>,
) -> Result<Imported> {
    let options = ImportOptions {
        dims: args.dims.iter().cloned().collect(),
        input_shapes,
        outputs: args.outputs.clone(),
        inputs_at: args.inputs_at.clone(),
        encrypted: args.encrypted.clone(),
        decode_context: args.max_context,
    };
    import_file(model, &options).map_err(|e| {
        input_error(anyhow::Error::new(e).context(format!("importing {}", model.display())))
    })
}
