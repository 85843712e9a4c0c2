//! Same results with 1 and 2 threads.

use crate::common::*;
use cachemir_ckks::*;

fn run() -> (Ciphertext, Vec<Ciphertext>, Ciphertext) {
    let mut f = fixture(ParamSet::ToyN12, 50);
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([51; 32]));
    let gks = kg.galois_keys(&f.sk, &[1, 2, 3], false, 6).unwrap();
    let x = values(f.slots(), 1);
    let a = f.encrypt(&x, 6);
    let m = f
        .eval
        .rescale(&f.eval.mul_relin(&a, &a, &f.rlk).unwrap())
        .unwrap();
    let h = f.eval.hoist(&a).unwrap();
    let r = f.eval.rotate_hoisted(&h, &[1, 2, 3], &gks).unwrap();
    (m, r, a)
}

#[test]
fn one_and_two_threads_agree_bitwise() {
    let pool = |t| {
        rayon::ThreadPoolBuilder::new()
            .num_threads(t)
            .build()
            .unwrap()
    };
    let one = pool(1).install(run);
    let two = pool(2).install(run);
    assert_eq!(one, two);
}
