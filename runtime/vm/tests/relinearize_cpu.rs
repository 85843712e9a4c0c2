//! Lazy relinearization on the `cpu` backend at ToyBootN12 (N = 2^12, insecure, tests only): a sum
//! of four ciphertext products (one computed a level higher and dropped with `level.down` at
//! degree 2; a degree-1 ct-pt product promoted into the sum; `add.p`, `add.s`, `sub` and `neg` on
//! the degree-2 sum) relinearized once gives the eagerly relinearized sum to at least 30 bits,
//! with one key switch instead of four; both agree with `sim`.

use cachemir_ir::layout::Layout;
use cachemir_ir::plan::builder::PlanBuilder;
use cachemir_ir::plan::parameters::by_name;
use cachemir_ir::plan::{Plan, Register, TensorRef, levels};
use cachemir_vm::{
    ClientKeys, CpuBackend, CpuOptions, CpuParameters, EvaluationKeys, Insecure, KeyRequirements,
    run_cleartext, sim,
};
use std::collections::HashMap;

const SLOTS: usize = 2048;

/// Deterministic values in [−bound, bound].
fn wave(seed: f64, bound: f64) -> Vec<f64> {
    (0..SLOTS)
        .map(|i| bound * (seed * (i as f64 + 1.0)).sin())
        .collect()
}

/// `x` at level 12: `a = x·w` and `b = x²` rescaled to level 11, then the sum
/// a·b + a·a + b·b + x² (at level 12, dropped to 11) − x·w + w + 0.25, negated and rescaled:
/// eagerly (output 0) and lazily (output 1).
fn plan() -> Plan {
    let vector = Layout::row_major(&[SLOTS], SLOTS);
    let mut b = PlanBuilder::new("relinearize-cpu", SLOTS);
    b.parameters(by_name("ToyBootN12").unwrap())
        .weights("w.safetensors");
    let w = b.gathered_weight("w", &[SLOTS]);
    let x = b.input("x", &vector, Some(12));
    let (eager_out, lazy_out) = (
        b.output("eager", &vector, Some(10)),
        b.output("lazy", &vector, Some(10)),
    );
    b.site("sum-of-products", "test", Some(0));
    let x = b.load(x, 0);
    let a = b.multiply_plain(x, w);
    let a = b.rescale(a);
    let square = b.multiply(x, x);
    let square = b.rescale(square);
    let x11 = b.level_down(x, 11);
    let term = b.multiply_plain(x11, w);
    let sum = |b: &mut PlanBuilder, products: [Register; 4]| {
        let s = b.add(products[0], products[1]);
        let s = b.add(s, products[2]);
        let high = b.level_down(products[3], 11);
        let s = b.add(s, high);
        // The ct-pt product (degree 1) promoted into the sum.
        let s = b.sub(s, term);
        let s = b.add_plain(s, w);
        let s = b.add_scalar(s, 0.25);
        b.negate(s)
    };
    let eager = [
        b.multiply(a, square),
        b.multiply(a, a),
        b.multiply(square, square),
        b.multiply(x, x),
    ];
    let eager = sum(&mut b, eager);
    let eager = b.rescale(eager);
    b.store(eager, eager_out, 0);
    let lazy = [
        b.multiply_no_relinearize(a, square),
        b.multiply_no_relinearize(a, a),
        b.multiply_no_relinearize(square, square),
        b.multiply_no_relinearize(x, x),
    ];
    let lazy = sum(&mut b, lazy);
    let lazy = b.relinearize(lazy);
    let lazy = b.rescale(lazy);
    b.store(lazy, lazy_out, 0);
    b.build()
}

#[test]
fn lazy_and_eager_relinearization_agree_to_30_bits_with_fewer_key_switches() {
    let plan = plan();
    plan.validate().unwrap();
    levels::trace(&plan).unwrap();
    let tensors = HashMap::from([(TensorRef::Weight("w".into()), wave(0.37, 0.9))]);
    let inputs = vec![vec![wave(0.71, 1.0)]];
    let want = sim::execute(&plan, &tensors, &inputs).unwrap();
    assert_eq!(want[0], want[1], "sim: the same values either way");

    let params = CpuParameters::new(&by_name("ToyBootN12").unwrap(), Insecure::Allow).unwrap();
    let client = ClientKeys::generate(&params).unwrap();
    let requirements = KeyRequirements::for_plan(&plan).unwrap();
    // `x²` at level 12 sets the relinearization key's level.
    assert_eq!(requirements.relinearization, Some(12));
    let keys = EvaluationKeys::generate(&client, &requirements, &mut |_| {}).unwrap();
    let backend = CpuBackend::new(&plan, keys, CpuOptions::default())
        .unwrap()
        .with_secret(&client);
    let (got, _) = run_cleartext(&backend, &plan, &tensors, &inputs).unwrap();
    let bits = |a: &[f64], b: &[f64]| {
        let err = a
            .iter()
            .zip(b)
            .map(|(x, y)| (x - y).abs())
            .fold(0.0, f64::max);
        -err.log2()
    };
    let between = bits(&got[0][0], &got[1][0]);
    let (eager, lazy) = (bits(&got[0][0], &want[0][0]), bits(&got[1][0], &want[1][0]));
    eprintln!(
        "lazy vs eager: {between:.1} bits apart; against sim: eager {eager:.1} bits, lazy \
         {lazy:.1} bits; {} key switches",
        backend.stats().key_switches
    );
    assert!(between >= 30.0, "lazy and eager {between:.1} bits apart");
    assert!(eager >= 25.0 && lazy >= 25.0, "{eager:.1} / {lazy:.1} bits");
    // x² (1), four eager products (4), one relinearization of the lazy sum (1).
    assert_eq!(backend.stats().key_switches, 1 + 4 + 1);
}
