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

#[test]
fn types_are_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<CkksContext>();
    check::<Evaluator>();
    check::<Ciphertext>();
    check::<Plaintext>();
    check::<SecretKey>();
    check::<PublicKey>();
    check::<RelinKey>();
    check::<GaloisKeys>();
    check::<HoistedCiphertext>();
}

#[test]
fn independent_ciphertexts_in_parallel() {
    use rayon::prelude::*;
    let mut f = fixture(ParamSet::ToyN12, 52);
    let xs: Vec<Vec<f64>> = (0..4).map(|k| values(f.slots(), 90 + k)).collect();
    let cts: Vec<Ciphertext> = xs.iter().map(|x| f.encrypt(x, 6)).collect();
    let sq: Vec<Ciphertext> = cts
        .par_iter()
        .map(|c| {
            f.eval
                .rescale(&f.eval.mul_relin(c, c, &f.rlk).unwrap())
                .unwrap()
        })
        .collect();
    for (x, c) in xs.iter().zip(&sq) {
        let want: Vec<f64> = x.iter().map(|v| v * v).collect();
        assert!(precision_bits(&want, &f.decrypt(c)) >= 25.0);
    }
}
