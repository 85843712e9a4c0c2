use crate::common::*;
use cachemir_ckks::serialize::{params_from_bytes, params_to_bytes};
use cachemir_ckks::*;

#[test]
fn round_trips_and_parameter_hash_checks() {
    let mut f = fixture(ParamSet::ToyN12, 40);
    let n = f.slots();
    let x = values(n, 1);
    let ct = f.encrypt(&x, 4);
    let bytes = ct.to_bytes(&f.ctx).unwrap();
    assert_eq!(Ciphertext::from_bytes(&f.ctx, &bytes).unwrap(), ct);
    let pt = f.enc.encode_real(&x, n, 2, f.scale()).unwrap();
    assert_eq!(
        Plaintext::from_bytes(&f.ctx, &pt.to_bytes(&f.ctx).unwrap()).unwrap(),
        pt
    );
    let pk2 = PublicKey::from_bytes(&f.ctx, &f.pk.to_bytes(&f.ctx).unwrap()).unwrap();
    assert_eq!(pk2, f.pk);
    let rlk_bytes = f.rlk.to_bytes(&f.ctx).unwrap();
    let rlk2 = RelinKey::from_bytes(&f.ctx, &rlk_bytes).unwrap();
    assert_eq!(rlk2, f.rlk);
    // Compressed: about half the in-memory size.
    assert!(rlk_bytes.len() < f.rlk.switching_key().size_bytes() * 6 / 10);
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([41; 32]));
    let gks = kg.galois_keys(&f.sk, &[1, -3], true, 4).unwrap();
    let gks2 = GaloisKeys::from_bytes(&f.ctx, &gks.to_bytes(&f.ctx).unwrap()).unwrap();
    assert_eq!(gks2, gks);
    let r = f.eval.rotate(&ct, -3, &gks2).unwrap();
    assert_eq!(r, f.eval.rotate(&ct, -3, &gks).unwrap());
    let sk2 = SecretKey::from_bytes(&f.ctx, &f.sk.to_bytes(&f.ctx).unwrap()).unwrap();
    assert!(precision_bits(&x, &f.dec.decrypt_real(&sk2, &ct).unwrap()) > 20.0);
    let p = params_from_bytes(&params_to_bytes(f.ctx.params()).unwrap()).unwrap();
    assert_eq!(&p, f.ctx.params());

    // Loading under other parameters fails clearly.
    let other = CkksContext::from_set(ParamSet::ToyN13, Security::InsecureForTesting).unwrap();
    assert!(matches!(
        Ciphertext::from_bytes(&other, &bytes),
        Err(CkksError::ParamsMismatch { .. })
    ));
    assert!(matches!(
        RelinKey::from_bytes(&other, &rlk_bytes),
        Err(CkksError::ParamsMismatch { .. })
    ));
    // Wrong kind, truncation, corruption, bad magic.
    assert!(matches!(
        Plaintext::from_bytes(&f.ctx, &bytes),
        Err(CkksError::Deserialize(_))
    ));
    assert!(Ciphertext::from_bytes(&f.ctx, &bytes[..bytes.len() / 2]).is_err());
    let mut bad = bytes.clone();
    bad[0] ^= 1;
    assert!(matches!(
        Ciphertext::from_bytes(&f.ctx, &bad),
        Err(CkksError::Deserialize(_))
    ));
}
