//! The tiny Llama decode step (`tiny_llama_decode_step_p15_ts17`, compiled at ToyBootN12: N = 2^12,
//! 2048 slots, INSECURE) runs on the `cuda` backend and on the `cpu` backend with the same keys
//! and inputs: the decrypted outputs are identical (the device computes the same ciphertexts),
//! and the logits are within 0.1 of onnxruntime's. Skipped without a GPU or the shared models.
#![cfg(feature = "cuda")]

mod common;

use std::time::Instant;

use cachemir_compiler::levels::params::by_name;
use cachemir_compiler::levels::{LevelOptions, Strategy, assign_levels, calibrated_bound};
use cachemir_compiler::reference::{Case, compare, models_dir};
use cachemir_cuda::CudaBackend;
use cachemir_ir::Tensor;
use cachemir_ir::npy::read_npy;
use cachemir_tests::{approximated, lower_model_at, run_backend};
use cachemir_vm::{
    ClientKeys, CpuOptions, CpuParameters, EvaluationKeys, Insecure, KeyRequirements,
};
use common::device;
use ndarray::{ArrayD, IxDyn};

const MODEL: &str = "tiny_llama_decode_step_p15_ts17";
const SLOTS: usize = 2048;

#[test]
fn tiny_llama_decode_step_is_identical_on_cuda_and_cpu() {
    let Some(dev) = device() else { return };
    let Some(dir) = models_dir() else {
        eprintln!("skipped: ../shared/models not found");
        return;
    };
    let (_, graph, _) = approximated(&dir, MODEL, usize::MAX);
    let lowered = lower_model_at(&graph, MODEL, SLOTS);
    let parameters = by_name("ToyBootN12").unwrap();
    let mut options = LevelOptions::new(parameters.clone());
    options.strategy = Strategy::Greedy;
    // The cuda backend runs `mul.nr`/`relin` through the Backend defaults (relinearized at
    // once): bit-identical outputs need the eagerly relinearized plan.
    options.lazy_relinearization = false;
    let plan = assign_levels(
        &lowered.plan,
        &|site| calibrated_bound(&graph, site),
        &options,
    )
    .unwrap()
    .plan;
    let params = CpuParameters::new(&parameters, Insecure::Allow).unwrap();
    let client = ClientKeys::generate(&params).unwrap();
    let requirements = KeyRequirements::for_plan(&plan).unwrap();
    let keys = EvaluationKeys::generate(&client, &requirements, &mut |_| {}).unwrap();
    let cuda = CudaBackend::new(&plan, keys, CpuOptions::default(), dev)
        .unwrap()
        .with_secret(&client);
    let case = Case::load(&dir.join(MODEL).join("case0.json")).unwrap();

    let start = Instant::now();
    let (gpu, report) = run_backend(&cuda, &lowered, &plan, &graph, &case);
    let gpu_time = start.elapsed();
    let start = Instant::now();
    let (cpu, _) = run_backend(cuda.cpu(), &lowered, &plan, &graph, &case);
    let cpu_time = start.elapsed();
    let stats = cuda.stats();
    eprintln!(
        "{MODEL}: {} instructions; cuda {gpu_time:.2?} ({} key switches on the device, {} bootstraps on the host in {:.2?}), cpu {cpu_time:.2?}",
        report.instructions(),
        stats.key_switches,
        stats.host_bootstraps,
        stats.bootstrap_time
    );
    assert_eq!(gpu, cpu, "cuda and cpu outputs differ");

    let (name, path) = case.expected.iter().find(|(n, _)| n == "logits").unwrap();
    let expected = read_npy(path).unwrap();
    let got = Tensor::F64(
        ArrayD::from_shape_vec(IxDyn(expected.shape()), gpu["logits"].clone()).unwrap(),
    );
    let c = compare(name, &got, &expected, None).unwrap();
    eprintln!(
        "{MODEL}: logits max abs error {:.3e} on cuda",
        c.max_abs_error
    );
    assert!(
        c.max_abs_error <= 0.1,
        "logits max abs error {:.3e}",
        c.max_abs_error
    );
}
