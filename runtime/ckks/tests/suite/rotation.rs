use std::collections::BTreeMap;

use crate::common::*;
use cachemir_ckks::*;

fn rotated(v: &[f64], k: i64) -> Vec<f64> {
    let n = v.len() as i64;
    (0..n)
        .map(|j| v[((j + k).rem_euclid(n)) as usize])
        .collect()
}

#[test]
fn rotations_hoisted_and_single_are_bit_identical() {
    let mut f = fixture(ParamSet::ToyN12, 20);
    let n = f.slots();
    let steps: Vec<i64> = vec![1, 2, 3, 5, 16, -1, -7, 100];
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([21; 32]));
    let gks = kg
        .galois_keys(&f.sk, &steps, true, f.ctx.max_level())
        .unwrap();
    let x = values(n, 11);
    let ct = f.encrypt(&x, 6);
    let h = f.eval.hoist(&ct).unwrap();
    let many = f.eval.rotate_hoisted(&h, &steps, &gks).unwrap();
    for (&k, hr) in steps.iter().zip(&many) {
        let single = f.eval.rotate(&ct, k, &gks).unwrap();
        assert_eq!(&single, hr, "step {k}: hoisted and single rotation differ");
        let bits = precision_bits(&rotated(&x, k), &f.decrypt(&single));
        eprintln!("rotation by {k} (hoisted == single) at 2^40, N=2^12: {bits:.2} bits");
        assert!(bits >= 24.0, "rotate {k}: {bits:.1} bits");
    }
    // Rotation at a lower level with keys generated at the top.
    let low = f.eval.level_down(&ct, 1).unwrap();
    let r = f.eval.rotate(&low, 3, &gks).unwrap();
    assert!(precision_bits(&rotated(&x, 3), &f.decrypt(&r)) >= 24.0);
    // Step 0 is the identity.
    assert_eq!(f.eval.rotate(&ct, 0, &gks).unwrap(), ct);
}

#[test]
fn conjugation_and_sparse_slot_rotation() {
    let mut f = fixture(ParamSet::ToyN12, 22);
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([23; 32]));
    let gks = kg.galois_keys(&f.sk, &[1, -2], true, 3).unwrap();
    let c = complex_values(f.slots(), 12);
    let pt = f.enc.encode_complex(&c, f.slots(), 3, f.scale()).unwrap();
    let ct = f.encryptor.encrypt_pk(&f.pk, &pt).unwrap();
    let conj = f.eval.conjugate(&ct, &gks).unwrap();
    let want: Vec<Complex64> = c.iter().map(|z| z.conj()).collect();
    let bits = precision_bits_complex(&want, &f.dec.decrypt_complex(&f.sk, &conj).unwrap());
    assert!(bits >= 23.0, "conjugate: {bits:.1}");
    // Sparse packing: 64 slots rotate cyclically within 64.
    let slots = 64;
    let v = values(slots, 13);
    let pt = f.enc.encode_real(&v, slots, 3, f.scale()).unwrap();
    let ct = f.encryptor.encrypt_pk(&f.pk, &pt).unwrap();
    for k in [1i64, -2] {
        let r = f.eval.rotate(&ct, k, &gks).unwrap();
        let bits = precision_bits(&rotated(&v, k), &f.decrypt(&r));
        assert!(bits >= 24.0, "sparse rotate {k}: {bits:.1}");
    }
}

#[test]
fn bsgs_linear_transform_matches_matrix_vector() {
    let mut f = fixture(ParamSet::ToyN12, 24);
    let slots = 64;
    let mut diagonals = BTreeMap::new();
    for (i, k) in [0usize, 1, 2, 7, 9, 33, 63].into_iter().enumerate() {
        let d: Vec<Complex64> = values(slots, 100 + i as u64)
            .into_iter()
            .map(|v| Complex64::new(v / 4.0, 0.0))
            .collect();
        diagonals.insert(k, d);
    }
    let lt = LinearTransform::new(slots, diagonals.clone()).unwrap();
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([25; 32]));
    let gks = kg
        .galois_keys(&f.sk, &lt.rotation_steps(), false, f.ctx.max_level())
        .unwrap();
    let x = values(slots, 14);
    let pt = f.enc.encode_real(&x, slots, 5, f.scale()).unwrap();
    let ct = f.encryptor.encrypt_pk(&f.pk, &pt).unwrap();
    let y = f
        .eval
        .rescale(&f.eval.linear_transform(&ct, &lt, &gks).unwrap())
        .unwrap();
    let want: Vec<f64> = (0..slots)
        .map(|j| {
            diagonals
                .iter()
                .map(|(&k, d)| d[j].re * x[(j + k) % slots])
                .sum()
        })
        .collect();
    let bits = precision_bits(&want, &f.decrypt(&y));
    eprintln!("BSGS linear transform (7 diagonals, 64 slots) + rescale: {bits:.2} bits");
    assert!(bits >= 22.0, "BSGS: {bits:.1}");
    assert!((y.scale() / ct.scale() - 1.0).abs() < 1e-9);
}

#[test]
fn bsgs_full_slots_complex_diagonals() {
    let mut f = fixture(ParamSet::ToyN12, 26);
    let slots = f.slots();
    let mut diagonals = BTreeMap::new();
    for (i, k) in [0usize, 1, 5, 17, 64, 300, 1000, 2047]
        .into_iter()
        .enumerate()
    {
        let d: Vec<Complex64> = complex_values(slots, 200 + i as u64)
            .into_iter()
            .map(|v| v / 8.0)
            .collect();
        diagonals.insert(k, d);
    }
    let lt = LinearTransform::new(slots, diagonals.clone()).unwrap();
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([27; 32]));
    let partial = kg.galois_keys(&f.sk, &[1], false, 6).unwrap();
    let x = complex_values(slots, 15);
    let pt = f.enc.encode_complex(&x, slots, 6, f.scale()).unwrap();
    let ct = f.encryptor.encrypt_pk(&f.pk, &pt).unwrap();
    assert!(matches!(
        f.eval.linear_transform(&ct, &lt, &partial),
        Err(CkksError::MissingGaloisKey { .. })
    ));
    let gks = kg
        .galois_keys(&f.sk, &lt.rotation_steps(), false, 6)
        .unwrap();
    let y = f
        .eval
        .rescale(&f.eval.linear_transform(&ct, &lt, &gks).unwrap())
        .unwrap();
    let want: Vec<Complex64> = (0..slots)
        .map(|j| {
            diagonals
                .iter()
                .map(|(&k, d)| d[j] * x[(j + k) % slots])
                .sum()
        })
        .collect();
    let bits = precision_bits_complex(&want, &f.dec.decrypt_complex(&f.sk, &y).unwrap());
    eprintln!("BSGS full slots, 8 complex diagonals: {bits:.2} bits");
    assert!(bits >= 24.0, "BSGS full: {bits:.1}");
}
