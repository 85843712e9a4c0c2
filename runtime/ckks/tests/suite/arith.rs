use crate::common::*;
use cachemir_ckks::*;

#[test]
fn add_sub_negate_and_plain_ops() {
    let mut f = fixture(ParamSet::ToyN12, 10);
    let n = f.slots();
    let (x, y) = (values(n, 1), values(n, 2));
    let (cx, cy) = (f.encrypt(&x, 6), f.encrypt(&y, 6));
    let py = f.enc.encode_real(&y, n, 6, f.scale()).unwrap();
    let cases: Vec<(&str, Ciphertext, Vec<f64>)> = vec![
        (
            "add",
            f.eval.add(&cx, &cy).unwrap(),
            x.iter().zip(&y).map(|(a, b)| a + b).collect(),
        ),
        (
            "sub",
            f.eval.sub(&cx, &cy).unwrap(),
            x.iter().zip(&y).map(|(a, b)| a - b).collect(),
        ),
        (
            "neg",
            f.eval.negate(&cx).unwrap(),
            x.iter().map(|a| -a).collect(),
        ),
        (
            "add_plain",
            f.eval.add_plain(&cx, &py).unwrap(),
            x.iter().zip(&y).map(|(a, b)| a + b).collect(),
        ),
        (
            "sub_plain",
            f.eval.sub_plain(&cx, &py).unwrap(),
            x.iter().zip(&y).map(|(a, b)| a - b).collect(),
        ),
        (
            "add_const",
            f.eval.add_const(&cx, 0.75).unwrap(),
            x.iter().map(|a| a + 0.75).collect(),
        ),
        (
            "mul_integer",
            f.eval.mul_integer(&cx, -3).unwrap(),
            x.iter().map(|a| -3.0 * a).collect(),
        ),
    ];
    for (name, ct, want) in cases {
        let bits = precision_bits(&want, &f.decrypt(&ct));
        assert!(bits >= 22.0, "{name}: {bits:.1} bits");
    }
}

#[test]
fn mul_plain_and_const_then_rescale() {
    let mut f = fixture(ParamSet::ToyN12, 11);
    let n = f.slots();
    let (x, y) = (values(n, 3), values(n, 4));
    let cx = f.encrypt(&x, 6);
    let py = f.enc.encode_real(&y, n, 6, f.scale()).unwrap();
    let prod = f
        .eval
        .rescale(&f.eval.mul_plain(&cx, &py).unwrap())
        .unwrap();
    assert_eq!(prod.level(), 5);
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let bits = precision_bits(&want, &f.decrypt(&prod));
    assert!(bits >= 25.0, "mul_plain: {bits:.1}");
    let c = f
        .eval
        .rescale(&f.eval.mul_const(&cx, -0.3, f.scale()).unwrap())
        .unwrap();
    let want: Vec<f64> = x.iter().map(|a| -0.3 * a).collect();
    let bits = precision_bits(&want, &f.decrypt(&c));
    assert!(bits >= 25.0, "mul_const: {bits:.1}");
}

#[test]
fn mul_relin_rescale_precision_and_depth() {
    let mut f = fixture(ParamSet::ToyN12, 12);
    let n = f.slots();
    let (x, y) = (values(n, 5), values(n, 6));
    let (cx, cy) = (f.encrypt(&x, 6), f.encrypt(&y, 6));
    let prod = f.eval.mul_relin(&cx, &cy, &f.rlk).unwrap();
    assert_eq!(prod.degree(), 1);
    let prod = f.eval.rescale(&prod).unwrap();
    let mut want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let bits = precision_bits(&want, &f.decrypt(&prod));
    eprintln!("ct-ct mult + relin + rescale at 2^40, N=2^12: {bits:.2} bits");
    assert!(bits >= 25.0, "mul_relin + rescale: {bits:.2} bits");
    // Keep squaring down the chain to level 0 (x·y)^(2^k) stays in [−1, 1].
    let mut ct = prod;
    while ct.level() > 0 {
        ct = f
            .eval
            .rescale(&f.eval.mul_relin(&ct, &ct, &f.rlk).unwrap())
            .unwrap();
        want.iter_mut().for_each(|w| *w *= *w);
    }
    let bits = precision_bits(&want, &f.decrypt(&ct));
    assert!(bits >= 18.0, "after depth 6: {bits:.1}");
    // Degree-2 ciphertexts decrypt too; relinearization matches.
    let t = f.eval.mul_no_relin(&cx, &cy).unwrap();
    let bits = precision_bits(
        &f.decrypt(&f.eval.relinearize(&t, &f.rlk).unwrap()),
        &f.decrypt(&t),
    );
    assert!(bits >= 25.0);
}

#[test]
fn level_down_and_mixed_levels() {
    let mut f = fixture(ParamSet::ToyN12, 13);
    let n = f.slots();
    let x = values(n, 7);
    let cx = f.encrypt(&x, 6);
    let low = f.eval.level_down(&cx, 2).unwrap();
    assert_eq!(low.level(), 2);
    assert!(precision_bits(&x, &f.decrypt(&low)) >= 24.0);
    // Plaintext at a higher level than the ciphertext is accepted.
    let p = f.enc.encode_real(&x, n, 6, f.scale()).unwrap();
    let s = f.eval.add_plain(&low, &p).unwrap();
    let want: Vec<f64> = x.iter().map(|a| 2.0 * a).collect();
    assert!(precision_bits(&want, &f.decrypt(&s)) >= 24.0);
}

#[test]
fn deeper_chain_toy_n13() {
    let mut f = fixture(ParamSet::ToyN13, 14);
    let n = f.slots();
    let (x, y) = (values(n, 8), values(n, 9));
    let (cx, cy) = (f.encrypt(&x, 12), f.encrypt(&y, 12));
    let prod = f
        .eval
        .rescale(&f.eval.mul_relin(&cx, &cy, &f.rlk).unwrap())
        .unwrap();
    let want: Vec<f64> = x.iter().zip(&y).map(|(a, b)| a * b).collect();
    let bits = precision_bits(&want, &f.decrypt(&prod));
    assert!(bits >= 25.0, "ToyN13 mul: {bits:.1}");
}

#[test]
fn sparse_ternary_secret() {
    let mut params = ParamSet::ToyN12.params();
    params.secret = SecretDistribution::SparseTernary { hamming_weight: 64 };
    let ctx = CkksContext::new(params, Security::InsecureForTesting).unwrap();
    let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([60; 32]));
    let sk = kg.secret_key();
    assert_eq!(sk.coefficients().iter().filter(|&&c| c != 0).count(), 64);
    let pk = kg.public_key(&sk).unwrap();
    let rlk = kg.relin_key(&sk, ctx.max_level()).unwrap();
    let gks = kg.galois_keys(&sk, &[3], false, ctx.max_level()).unwrap();
    let (enc, eval, dec) = (
        Encoder::new(&ctx),
        Evaluator::new(&ctx),
        Decryptor::new(&ctx),
    );
    let mut encryptor = Encryptor::with_rng(&ctx, Csprng::from_seed([61; 32]));
    let n = ctx.n() / 2;
    let x = values(n, 70);
    let ct = encryptor
        .encrypt_pk(&pk, &enc.encode_real(&x, n, 6, 2f64.powi(40)).unwrap())
        .unwrap();
    let sq = eval
        .rescale(&eval.mul_relin(&ct, &ct, &rlk).unwrap())
        .unwrap();
    let r = eval.rotate(&sq, 3, &gks).unwrap();
    let want: Vec<f64> = (0..n).map(|j| x[(j + 3) % n].powi(2)).collect();
    let bits = precision_bits(&want, &dec.decrypt_real(&sk, &r).unwrap());
    assert!(bits >= 25.0, "sparse secret: {bits:.1}");
}

#[test]
fn key_switch_between_secrets_and_monomials() {
    let mut f = fixture(ParamSet::ToyN12, 80);
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([81; 32]));
    let sk2 = kg.secret_key();
    let swk = kg.switching_key_between(&f.sk, &sk2, 4).unwrap();
    let n = f.slots();
    let x = values(n, 82);
    let ct = f.encrypt(&x, 4);
    let switched = f.eval.switch_key(&ct, &swk).unwrap();
    let bits = precision_bits(&x, &f.dec.decrypt_real(&sk2, &switched).unwrap());
    assert!(bits >= 26.0, "switched: {bits:.1}");
    assert!(
        f.dec
            .decrypt_real(&f.sk, &switched)
            .map(|v| precision_bits(&x, &v) < 5.0)
            .unwrap()
    );
    // X^{N/2} multiplies every slot by i.
    let c = complex_values(n, 83);
    let pt = f.enc.encode_complex(&c, n, 4, f.scale()).unwrap();
    let ct = f.encryptor.encrypt_sk(&f.sk, &pt).unwrap();
    let m = f.eval.mul_monomial(&ct, f.ctx.n() / 2).unwrap();
    let want: Vec<Complex64> = c.iter().map(|z| z * Complex64::new(0.0, 1.0)).collect();
    let bits = precision_bits_complex(&want, &f.dec.decrypt_complex(&f.sk, &m).unwrap());
    assert!(bits >= 29.0, "X^(N/2): {bits:.1}");
    assert!(f.eval.mul_monomial(&ct, 2 * f.ctx.n()).is_err());
}
