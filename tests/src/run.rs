//! Plans run on a backend for one reference case, the client's part done in the clear.

use cachemir_compiler::lower::Lowered;
use cachemir_compiler::lower::weights::weight_values;
use cachemir_compiler::reference::Case;
use cachemir_ir::plan::{Plan, TensorRef};
use cachemir_ir::{Graph, Interpreter, Precision, Tensor};
use cachemir_vm::{Client, Report, run_cleartext};
use std::collections::HashMap;

/// A plan's client or public program (Tensor IR as JSON; empty: no program) run in f64 on the
/// inputs it reads.
fn run_program(json: &str, inputs: &HashMap<String, Tensor>) -> HashMap<String, Tensor> {
    if json.is_empty() {
        return HashMap::new();
    }
    let graph: Graph = serde_json::from_str(json).unwrap();
    let feed: HashMap<String, Tensor> = graph
        .inputs()
        .iter()
        .map(|i| {
            let name = graph.input_name(i).to_string();
            (name.clone(), inputs[&name].clone())
        })
        .collect();
    Interpreter::new(&graph, Precision::F64).run(&feed).unwrap()
}

/// Runs a plan on the `sim` backend for one case: client and public programs in f64, weights
/// from the graph, inputs encoded and outputs decoded by the plan's layouts.
///
/// # Panics
/// On any failure (test helper).
pub fn run_sim(
    lowered: &Lowered,
    plan: &Plan,
    graph: &Graph,
    case: &Case,
) -> HashMap<String, Vec<f64>> {
    run_backend(
        &cachemir_vm::SimBackend::for_plan(plan),
        lowered,
        plan,
        graph,
        case,
    )
    .0
}

/// Runs a plan on any [`Client`] backend for one case (as [`run_sim`]: client and public
/// programs in f64, weights from the graph, inputs encrypted at their declared levels and
/// outputs decrypted and decoded by the plan's layouts), with the run's report.
///
/// # Panics
/// On any failure (test helper).
pub fn run_backend<B: Client>(
    backend: &B,
    lowered: &Lowered,
    plan: &Plan,
    graph: &Graph,
    case: &Case,
) -> (HashMap<String, Vec<f64>>, Report) {
    plan.validate().unwrap();
    let client = run_program(&plan.client_program, &case.inputs);
    let public = run_program(&plan.public_program, &case.inputs);
    let mut tensors: HashMap<TensorRef, Vec<f64>> = weight_values(lowered, graph)
        .into_iter()
        .map(|(name, (_, v))| (TensorRef::Weight(name), v))
        .collect();
    for (name, t) in public {
        tensors.insert(
            TensorRef::Public(name),
            t.to_f64().iter().copied().collect(),
        );
    }
    let inputs: Vec<Vec<Vec<f64>>> = plan
        .inputs
        .iter()
        .map(|io| {
            let tensor = client.get(&io.name).or(case.inputs.get(&io.name)).unwrap();
            let values: Vec<f64> = tensor.to_f64().iter().copied().collect();
            io.layout.encode(&values).unwrap()
        })
        .collect();
    let (outputs, report) = run_cleartext(backend, plan, &tensors, &inputs)
        .unwrap_or_else(|e| panic!("{} backend: {e}", backend.name()));
    let outputs = plan
        .outputs
        .iter()
        .zip(outputs)
        .map(|(io, slots)| (io.name.clone(), io.layout.decode(&slots).unwrap()))
        .collect();
    (outputs, report)
}
