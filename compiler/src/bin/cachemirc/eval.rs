//! `cachemirc eval`: the reference interpreter on a case file's inputs.

use crate::args::{ImportArgs, PrecisionArg};
use crate::error::input_error;
use crate::model::load_model;
use anyhow::{Context, Result, bail};
use cachemir_compiler::reference::{Case, compare, output_file_name, run_case};
use cachemir_ir::Precision;
use cachemir_ir::npy::{read_npy, write_npy};
use std::path::Path;

pub(crate) fn eval(
    model: &Path,
    case_path: &Path,
    out: &Path,
    expect: bool,
    precision: PrecisionArg,
    args: &ImportArgs,
) -> Result<()> {
    let case = Case::load(case_path).map_err(input_error)?;
    let imported = load_model(model, args, case.input_shapes())?;
    let precision = match precision {
        PrecisionArg::F32 => Precision::F32,
        PrecisionArg::F64 => Precision::F64,
    };
    let outputs = run_case(&imported.graph, &case, precision)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for output in imported.graph.outputs() {
        let path = out.join(output_file_name(&output.name));
        write_npy(&path, &outputs[&output.name])?;
        println!("wrote {}", path.display());
    }
    if expect {
        println!(
            "{:<28} {:>14} {:>14} {:>12} {:>12}",
            "output", "max abs err", "max rel err", "max |ref|", "same argmax"
        );
        for (name, path) in &case.expected {
            let Some(actual) = outputs.get(name) else {
                bail!("the case expects `{name}`, which the graph does not output");
            };
            let reference = read_npy(path).map_err(input_error)?;
            let c = compare(name, actual, &reference, None)
                .map_err(|m| input_error(anyhow::anyhow!(m)))?;
            println!(
                "{:<28} {:>14.3e} {:>14.3e} {:>12.4} {:>12}",
                c.name,
                c.max_abs_error,
                c.max_relative_error,
                c.max_abs_reference,
                format!("{}/{}", c.same_argmax.0, c.same_argmax.1)
            );
        }
    }
    Ok(())
}
