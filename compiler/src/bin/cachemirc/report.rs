//! `cachemirc report` and `cachemirc dot`: read a plan and print its report or dataflow graph.

use crate::error::input_error;
use anyhow::{Context, Result};
use std::path::Path;

/// `cachemirc report PLAN`: the plan's report as text or JSON (docs/report.md), costed with the
/// cost model at `cost_model` (default: the built-in CPU model); a decode plan's latency is
/// also extrapolated to `cache_lengths`.
pub(crate) fn report(
    plan: &Path,
    json: bool,
    cost_model: Option<&Path>,
    assume_level: u32,
    cache_lengths: &[usize],
    output: Option<&Path>,
) -> Result<()> {
    use cachemir_compiler::report::{PlanReport, ReportOptions};
    let plan = read_plan(plan)?;
    let cost = match cost_model {
        Some(path) => cachemir_ir::plan::CostModel::from_file(path).map_err(input_error)?,
        None => cachemir_ir::plan::CostModel::default_cpu(),
    };
    let options = ReportOptions {
        assumed_level: assume_level,
    };
    let mut report = PlanReport::new(&plan, &cost, &options)
        .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", plan.name)))?;
    report.set_cache_lengths(cache_lengths);
    let text = if json {
        let mut text = report.json();
        text.push('\n');
        text
    } else {
        report.text()
    };
    write_text(output, &text)
}

/// `cachemirc dot PLAN`: the plan's site-level dataflow as a Graphviz graph.
pub(crate) fn dot(plan: &Path, output: Option<&Path>) -> Result<()> {
    let plan = read_plan(plan)?;
    write_text(output, &cachemir_compiler::report::dot::dot(&plan))
}
/// Reads a plan file: the binary form, or its JSON (`--emit plan-json`); validated either way.
pub(crate) fn read_plan(path: &Path) -> Result<cachemir_ir::plan::Plan> {
    use cachemir_ir::plan::Plan;
    let bytes = std::fs::read(path)
        .map_err(|e| input_error(anyhow::anyhow!("reading {}: {e}", path.display())))?;
    let plan = if bytes.first() == Some(&b'{') {
        let plan: Plan = serde_json::from_slice(&bytes)
            .map_err(|e| input_error(anyhow::anyhow!("{}: not a plan: {e}", path.display())))?;
        plan.validate()
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", path.display())))?;
        plan
    } else {
        Plan::from_bytes(&bytes)
            .map_err(|e| input_error(anyhow::anyhow!("{}: {e}", path.display())))?
    };
    Ok(plan)
}

/// Writes `text` to `output`, or to standard output.
pub(crate) fn write_text(output: Option<&Path>, text: &str) -> Result<()> {
    match output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
        }
        None => {
            print!("{text}");
            Ok(())
        }
    }
}
