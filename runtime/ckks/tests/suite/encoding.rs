use crate::common::*;
use cachemir_ckks::*;

#[test]
fn encode_decode_full_and_sparse_slots() {
    let f = fixture(ParamSet::ToyN12, 1);
    for slots in [f.slots(), 256, 8, 1] {
        let v = complex_values(slots, 3);
        let pt = f.enc.encode_complex(&v, slots, 3, 2f64.powi(40)).unwrap();
        let back = f.enc.decode_complex(&pt).unwrap();
        let bits = precision_bits_complex(&v, &back);
        assert!(bits >= 33.0, "{slots} slots: {bits:.1} bits");
        let r = values(slots, 4);
        let pt = f.enc.encode_real(&r, slots, 0, 2f64.powi(40)).unwrap();
        let bits = precision_bits(&r, &f.enc.decode_real(&pt).unwrap());
        assert!(bits >= 33.0, "{slots} real slots: {bits:.1} bits");
    }
}

#[test]
fn large_scale_encoding_is_exact_beyond_64_bits() {
    let f = fixture(ParamSet::ToyN12, 1);
    let v = values(16, 9);
    let pt = f.enc.encode_real(&v, 16, 6, 2f64.powi(80)).unwrap();
    let bits = precision_bits(&v, &f.enc.decode_real(&pt).unwrap());
    assert!(bits >= 45.0, "{bits:.1}");
}

#[test]
fn fresh_encryption_precision() {
    let mut f = fixture(ParamSet::ToyN12, 2);
    let v = values(f.slots(), 5);
    let pt = f.enc.encode_real(&v, f.slots(), 6, 2f64.powi(40)).unwrap();
    let sk_ct = f.encryptor.encrypt_sk(&f.sk, &pt).unwrap();
    let sk_bits = precision_bits(&v, &f.decrypt(&sk_ct));
    let pk_ct = f.encryptor.encrypt_pk(&f.pk, &pt).unwrap();
    let pk_bits = precision_bits(&v, &f.decrypt(&pk_ct));
    eprintln!("fresh precision at 2^40, N=2^12: sk {sk_bits:.2} bits, pk {pk_bits:.2} bits");
    assert!(sk_bits >= 30.0, "secret-key encryption: {sk_bits:.2} bits");
    assert!(pk_bits >= 27.0, "public-key encryption: {pk_bits:.2} bits");
    // Complex slots.
    let c = complex_values(f.slots(), 6);
    let pt = f
        .enc
        .encode_complex(&c, f.slots(), 6, 2f64.powi(40))
        .unwrap();
    let ct = f.encryptor.encrypt_sk(&f.sk, &pt).unwrap();
    let bits = precision_bits_complex(&c, &f.dec.decrypt_complex(&f.sk, &ct).unwrap());
    assert!(bits >= 29.0, "complex: {bits:.2}");
}

#[test]
fn noise_flooded_decryption() {
    let mut f = fixture(ParamSet::ToyN12, 3);
    let v = values(f.slots(), 7);
    let ct = f.encrypt(&v, 6);
    let mut rng = Csprng::from_seed([9; 32]);
    let a = f.dec.decrypt_flooded(&f.sk, &ct, 12, &mut rng).unwrap();
    let b = f.dec.decrypt_flooded(&f.sk, &ct, 12, &mut rng).unwrap();
    let re: Vec<f64> = a.iter().map(|c| c.re).collect();
    let bits = precision_bits(&v, &re);
    assert!(bits >= 18.0, "flooded: {bits:.1}");
    assert_ne!(a, b, "flooding must add fresh noise");
    assert!(f.dec.decrypt_flooded(&f.sk, &ct, 0, &mut rng).is_err());
}
