//! Kernels: each expands one tensor operation into ciphertext instructions for given layouts, with
//! its rotation and multiplication counts stated in its docstring and tested.
pub mod convert;
pub mod matvec;
pub mod polynomial;
pub mod reduce;
pub mod stacked;

/// Test support: runs a builder's instructions (input 0 in `input`, output 0 in `output`) on the
/// `sim` backend and returns the output ciphertexts' slots.
#[cfg(test)]
pub(crate) fn run_on_sim(
    b: super::Builder,
    input: &cachemir_ir::layout::Layout,
    output: &cachemir_ir::layout::Layout,
    values: &[f64],
) -> Vec<Vec<f64>> {
    use cachemir_ir::plan::Ciphertexts;
    let plan = b.finish(super::Interface {
        inputs: vec![Ciphertexts {
            name: "x".into(),
            layout: input.clone(),
            level: None,
        }],
        outputs: vec![Ciphertexts {
            name: "y".into(),
            layout: output.clone(),
            level: None,
        }],
        ..Default::default()
    });
    plan.validate().unwrap();
    let inputs = [input.encode(values).unwrap()];
    let mut outputs =
        cachemir_vm::sim::execute(&plan, &std::collections::HashMap::new(), &inputs).unwrap();
    outputs.remove(0)
}
