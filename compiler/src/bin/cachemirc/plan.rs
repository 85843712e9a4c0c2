//! The slot-level half of `cachemirc compile`: lowering, the level pass, scheduling, and writing
//! the plan and its weights.

use crate::args::{CompileArgs, CompileEmit};
use crate::error::input_error;
use crate::levels::{is_auto, level_options, leveling_summary, select_parameters};
use crate::summary::{plan_summary, schedule_summary};
use anyhow::{Context, Result};
use cachemir_ir::Graph;
use std::path::Path;

/// The slot-level half of `compile`: lowers the approximated graph and writes the plan (binary,
/// JSON or disassembly) and, next to a plan file, its weights; prints the plan summary (with
/// the line `squarings` on how the softmax squaring count was chosen).
pub(crate) fn write_plan(
    graph: &Graph,
    args: &CompileArgs,
    emit: CompileEmit,
    generation: Option<cachemir_ir::plan::Generation>,
    squarings: Option<&str>,
    tensor_level: std::time::Duration,
) -> Result<()> {
    use cachemir_compiler::lower::weights::write_weights;
    use cachemir_compiler::lower::{LowerOptions, lower};

    let output = args.output.as_deref();
    let weights_file = weights_file_name(output.unwrap_or(&args.model));
    let start = std::time::Instant::now();
    let lowered = lower(
        graph,
        &LowerOptions {
            slots: args.slots,
            period: args.period,
            weights_file: weights_file.clone(),
        },
    )
    .map_err(|e| {
        let hint = if args.encrypt_from.is_empty() {
            " (without --encrypt-from only the float inputs are encrypted; --encrypt-from NAME \
             has the client encrypt from that value, e.g. the token embedding)"
        } else {
            ""
        };
        input_error(anyhow::anyhow!("lowering: {e}{hint}"))
    })?;
    let mut lowered = lowered;
    if generation.is_some() {
        lowered.plan = cachemir_compiler::lower::dedupe::dedupe(&lowered.plan).0;
    }
    let lowering = start.elapsed();
    lowered
        .plan
        .validate()
        .context("the lowered plan is inconsistent (a compiler bug)")?;
    let start = std::time::Instant::now();
    let mut selection_line = None;
    let leveled = match level_options(args)? {
        Some(mut options) => Some({
            if is_auto(args) {
                selection_line = Some(select_parameters(&lowered.plan, &mut options)?);
            }
            cachemir_compiler::levels::assign_levels(
                &lowered.plan,
                &|site| cachemir_compiler::levels::calibrated_bound(graph, site),
                &options,
            )
            .map_err(|e| input_error(anyhow::anyhow!("levels: {e}")))?
        }),
        None => None,
    };
    let leveling = start.elapsed();
    // A leveled plan is final: it is scheduled. An unleveled one keeps the lowering's order, in
    // which the level pass (or a later `--params` compile) expects each site's instructions.
    let start = std::time::Instant::now();
    let (mut plan, schedule_line) = match &leveled {
        Some(l) => {
            let scheduled = cachemir_compiler::schedule::schedule(&l.plan)
                .context("scheduling (a compiler bug)")?;
            let line = schedule_summary(
                &scheduled.before,
                &scheduled.after,
                scheduled.plan.registers,
            );
            (scheduled.plan, Some(line))
        }
        None => (lowered.plan.clone(), None),
    };
    let scheduling = start.elapsed();
    if generation.is_some() {
        plan.generation = generation;
        plan.validate()
            .context("the generation plan is inconsistent (a compiler bug)")?;
    }
    let (bytes, weights) = match emit {
        CompileEmit::Plan => (plan.to_bytes()?, true),
        CompileEmit::PlanJson => (serde_json::to_vec(&plan)?, true),
        CompileEmit::Asm => (plan.disassemble().into_bytes(), false),
        _ => unreachable!("only lowering emits reach write_plan"),
    };
    let mut summary = plan_summary(&lowered, args.verbose);
    for line in squarings.into_iter().chain(selection_line.as_deref()) {
        summary.push_str(line);
        summary.push('\n');
    }
    match output {
        Some(path) => {
            let dir = path.parent().unwrap_or(Path::new(""));
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
            std::fs::write(path, &bytes).with_context(|| format!("writing {}", path.display()))?;
            println!("wrote {} ({} bytes)", path.display(), bytes.len());
            if weights {
                let weights_path = dir.join(&weights_file);
                write_weights(&lowered, graph, &weights_path).map_err(|m| anyhow::anyhow!(m))?;
                let size = std::fs::metadata(&weights_path).map_or(0, |m| m.len());
                println!(
                    "wrote {} ({} weights, {size} bytes)",
                    weights_path.display(),
                    plan.weight_shapes.len()
                );
            }
            print!("{summary}");
            if let Some(l) = &leveled {
                println!("{}", leveling_summary(l));
            }
            if let Some(line) = &schedule_line {
                println!("{line}");
            }
            println!(
                "compiled in {:.2} s (import and tensor-level passes {:.2} s, lowering {:.2} s, \
                 levels {:.2} s, schedule {:.2} s)",
                (tensor_level + lowering + leveling + scheduling).as_secs_f64(),
                tensor_level.as_secs_f64(),
                lowering.as_secs_f64(),
                leveling.as_secs_f64(),
                scheduling.as_secs_f64()
            );
        }
        None => {
            // The plan goes to standard output; the summary to standard error.
            use std::io::Write;
            std::io::stdout()
                .write_all(&bytes)
                .context("writing to standard output")?;
            eprint!("{summary}");
            if let Some(l) = &leveled {
                eprintln!("{}", leveling_summary(l));
            }
            if let Some(line) = &schedule_line {
                eprintln!("{line}");
            }
        }
    }
    Ok(())
}

/// `<stem>.weights.safetensors` for a plan written to `output` (`model.plan`,
/// `model.plan.json`, `model.asm` → `model.weights.safetensors`).
pub(crate) fn weights_file_name(output: &Path) -> String {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into());
    let stem = [".plan.json", ".plan", ".json", ".asm", ".onnx", ".cmr"]
        .iter()
        .find_map(|suffix| name.strip_suffix(suffix))
        .filter(|stem| !stem.is_empty())
        .map_or_else(
            || {
                output
                    .file_stem()
                    .map_or("model".into(), |s| s.to_string_lossy().into_owned())
            },
            str::to_string,
        );
    format!("{stem}.weights.safetensors")
}
