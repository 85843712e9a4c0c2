//! `cachemirc compile`: import, the tensor-level passes (recognize, rotate_residual, rewrite,
//! decompose, calibrate, approximate) and their summary; lowering to a plan is in [`crate::plan`].

use crate::args::{CompileArgs, CompileEmit};
use crate::error::input_error;
use crate::levels::level_options;
use crate::model::{emit_dsl, ir_text, load_model};
use crate::plan::write_plan;
use anyhow::{Context, Result};
use cachemir_compiler::reference::Case;
use std::collections::HashMap;

pub(crate) fn compile(args: CompileArgs) -> Result<()> {
    use cachemir_compiler::passes::approximate::table;
    use cachemir_compiler::passes::calibrate::Calibration;
    use cachemir_compiler::passes::depth;

    let start = std::time::Instant::now();
    level_options(&args)?;
    let emit = args.emit.unwrap_or_else(|| {
        if args
            .output
            .as_deref()
            .is_some_and(|o| o.extension().is_some_and(|e| e == "plan"))
        {
            CompileEmit::Plan
        } else {
            CompileEmit::Summary
        }
    });
    if emit.lowers() {
        if let Some(pass) = &args.stop_after {
            return Err(input_error(anyhow::anyhow!(
                "--stop-after {pass} stops before the slot-level lowering; it applies to --emit summary, ir, json and dsl"
            )));
        }
        if emit == CompileEmit::Plan && args.output.is_none() {
            return Err(input_error(anyhow::anyhow!(
                "--emit plan writes a binary file: give -o FILE.plan"
            )));
        }
        if !args.slots.is_power_of_two() {
            return Err(input_error(anyhow::anyhow!(
                "--slots {}: the slot count must be a power of two",
                args.slots
            )));
        }
        if args.period == Some(0) {
            return Err(input_error(anyhow::anyhow!(
                "--period 0: the period must be positive"
            )));
        }
    }
    let sample = match &args.sample {
        Some(case) => Some(Case::load(case).map_err(input_error)?),
        None => None,
    };
    let shapes = sample
        .as_ref()
        .map_or_else(HashMap::new, |case| case.input_shapes());
    let mut graph = load_model(&args.model, &args.import, shapes)?.graph;
    for name in &args.encrypt_from {
        graph
            .encrypt_from(name)
            .map_err(|e| input_error(anyhow::anyhow!("--encrypt-from: {e}")))?;
    }
    let generation = match (args.generation, args.import.max_context) {
        (true, Some(max_context)) => Some(
            cachemir_compiler::generation::generation_step(&mut graph, max_context)
                .map_err(|e| input_error(anyhow::anyhow!("--generation: {e}")))?,
        ),
        _ => None,
    };
    let mut calibration = match &args.calibration {
        Some(path) => Some(Calibration::load(path).map_err(input_error)?),
        None => None,
    };
    if let (Some(generation), Some(calibration)) = (&generation, calibration.as_mut()) {
        cachemir_compiler::generation::generation_calibration(calibration, generation, &graph)
            .map_err(|e| input_error(anyhow::anyhow!("--generation: calibration: {e}")))?;
    }
    let passes = crate::tensor::run(
        &mut graph,
        &args,
        calibration,
        sample.as_ref().map(|case| &case.inputs),
    )?;
    if emit.lowers() {
        return write_plan(
            &graph,
            &args,
            emit,
            generation,
            passes.squarings.as_deref(),
            start.elapsed(),
        );
    }
    let text = match emit {
        CompileEmit::Summary => {
            let mut report =
                String::from("pass          time (ms)   nodes before → after   what it did\n");
            for r in &passes.records {
                report.push_str(&format!(
                    "{:<12} {:>10.1}   {:>7} → {:<7}     {}\n",
                    r.name,
                    r.elapsed.as_secs_f64() * 1e3,
                    r.nodes_before,
                    r.nodes_after,
                    r.summary
                ));
            }
            if let Some(r) = &passes.rewrite_report {
                report.push_str(&format!("\n{r}"));
            }
            if let Some(line) = &passes.squarings {
                report.push_str(&format!("\n{line}\n"));
            }
            if let Some(sites) = &passes.approximations {
                report.push_str("\napproximations\n");
                report.push_str(&table(sites));
            }
            report.push_str("\nmultiplicative depth (encrypted values)\n");
            let mut previous = 0;
            for (layer, d) in depth::depth_by_layer(&graph) {
                report.push_str(&format!(
                    "  layer {layer}: reaches {d} (+{})\n",
                    d.saturating_sub(previous)
                ));
                previous = d;
            }
            let depths = depth::depths(&graph);
            for output in graph.outputs() {
                report.push_str(&format!(
                    "  output {}: {}\n",
                    output.name,
                    depths.get(&output.value.node).copied().unwrap_or(0)
                ));
            }
            report.push_str(
                "\n(-o FILE.plan lowers the graph to a plan that `cachemir run` executes)\n",
            );
            report
        }
        CompileEmit::Ir => ir_text(&graph, args.output.as_deref())?,
        CompileEmit::Json => serde_json::to_string(&graph)?,
        CompileEmit::Dsl => emit_dsl(&graph, args.output.as_deref(), None)?,
        CompileEmit::Plan | CompileEmit::PlanJson | CompileEmit::Asm => {
            unreachable!("lowering emits returned above")
        }
    };
    match &args.output {
        Some(path) => {
            std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?
        }
        None => print!("{text}"),
    }
    Ok(())
}
