//! `cachemirc compile`: import, the tensor-level passes (recognize, rotate_residual, rewrite,
//! decompose, calibrate, approximate) and their summary; lowering to a plan is in [`crate::plan`].

use crate::args::{CompileArgs, CompileEmit, RotateResidualArg};
use crate::error::input_error;
use crate::levels::level_options;
use crate::model::{emit_dsl, ir_text, load_model};
use crate::plan::write_plan;
use anyhow::{Context, Result};
use cachemir_compiler::reference::Case;
use cachemir_ir::Graph;
use cachemir_ir::printer::print_graph;
use std::collections::HashMap;

pub(crate) fn compile(args: CompileArgs) -> Result<()> {
    use cachemir_compiler::passes::approximate::{Approximate, ApproximationOptions, table};
    use cachemir_compiler::passes::calibrate::{Calibrate, Calibration};
    use cachemir_compiler::passes::decompose::Decompose;
    use cachemir_compiler::passes::rotate_residual::RotateResidual;
    use cachemir_compiler::passes::{Pipeline, Recognize, Rewrite, depth};

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
    let shapes = match &args.sample {
        Some(case) => Case::load(case).map_err(input_error)?.input_shapes(),
        None => HashMap::new(),
    };
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
    let decompose = Decompose {
        softmax_squarings: args.softmax_squarings,
    };
    let mut calibration = match &args.calibration {
        Some(path) => Some(Calibration::load(path).map_err(input_error)?),
        None => None,
    };
    if let (Some(generation), Some(calibration)) = (&generation, calibration.as_mut()) {
        cachemir_compiler::generation::generation_calibration(calibration, generation, &graph)
            .map_err(|e| input_error(anyhow::anyhow!("--generation: calibration: {e}")))?;
    }
    let mut pipeline = Pipeline::new().with(Recognize);
    if let Some(RotateResidualArg::Hadamard) = args.rotate_residual {
        let samples = calibration
            .as_ref()
            .map(|c| c.samples.clone())
            .unwrap_or_default();
        pipeline = pipeline.with(RotateResidual::new(args.seed).with_samples(samples));
    }
    let rewrite = std::rc::Rc::new(std::cell::RefCell::new(Rewrite::default()));
    pipeline = pipeline.with(SharedPass(rewrite.clone())).with(decompose);
    let needs_calibration = !matches!(
        args.stop_after.as_deref(),
        Some("recognize" | "rotate_residual" | "rewrite" | "decompose")
    );
    let mut approximate = None;
    if needs_calibration {
        pipeline = match (calibration, args.assume_range) {
            (Some(calibration), _) => pipeline.with(Calibrate { calibration }),
            (None, Some(bound)) => {
                pipeline.with(cachemir_compiler::passes::calibrate::AssumeRanges {
                    bound,
                    ..Default::default()
                })
            }
            (None, None) => {
                return Err(input_error(anyhow::anyhow!(
                    "--calibration CALIB.json (or --assume-range B for a shape-only model) is needed for `calibrate` and `approximate` (or stop earlier with --stop-after decompose)"
                )));
            }
        };
        let options = ApproximationOptions {
            precision_bits: args.precision_bits,
            margin: args.margin,
            ..Default::default()
        };
        approximate = Some(std::rc::Rc::new(std::cell::RefCell::new(Approximate {
            options,
            sites: Vec::new(),
        })));
        pipeline = pipeline.with(SharedPass(approximate.clone().expect("set")));
    }
    let mut dump = |pass: &str, g: &Graph| eprintln!("== IR after {pass}\n{}", print_graph(g));
    let records = pipeline
        .run(
            &mut graph,
            args.stop_after.as_deref(),
            &args.dump_after,
            &mut dump,
        )
        .map_err(input_error)?;
    if emit.lowers() {
        return write_plan(&graph, &args, emit, generation, start.elapsed());
    }
    let text = match emit {
        CompileEmit::Summary => {
            let mut report =
                String::from("pass          time (ms)   nodes before → after   what it did\n");
            for r in &records {
                report.push_str(&format!(
                    "{:<12} {:>10.1}   {:>7} → {:<7}     {}\n",
                    r.name,
                    r.elapsed.as_secs_f64() * 1e3,
                    r.nodes_before,
                    r.nodes_after,
                    r.summary
                ));
            }
            if let Some(r) = &rewrite.borrow().report {
                report.push_str(&format!("\n{r}"));
            }
            if let Some(a) = &approximate {
                report.push_str("\napproximations\n");
                report.push_str(&table(&a.borrow().sites));
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

/// A pass shared with the caller, who reads its results after the pipeline ran.
pub(crate) struct SharedPass<P>(std::rc::Rc<std::cell::RefCell<P>>);

impl<P: cachemir_compiler::passes::Pass> cachemir_compiler::passes::Pass for SharedPass<P> {
    fn name(&self) -> &'static str {
        self.0.borrow().name()
    }

    fn run(
        &mut self,
        graph: &mut Graph,
    ) -> Result<String, cachemir_compiler::passes::CompileError> {
        self.0.borrow_mut().run(graph)
    }
}
