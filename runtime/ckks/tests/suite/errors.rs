//! Wrong inputs return typed errors, never panics or silently wrong results.

use crate::common::*;
use cachemir_ckks::*;

#[test]
fn typed_errors_on_wrong_inputs() {
    let mut f = fixture(ParamSet::ToyN12, 30);
    let n = f.slots();
    let x = values(n, 1);
    let a = f.encrypt(&x, 6);
    let b = f.encrypt(&x, 5);
    assert!(matches!(
        f.eval.add(&a, &b),
        Err(CkksError::LevelMismatch(6, 5))
    ));
    assert!(matches!(
        f.eval.mul_relin(&a, &b, &f.rlk),
        Err(CkksError::LevelMismatch(6, 5))
    ));
    let sq = f
        .eval
        .mul_plain(&a, &f.enc.encode_real(&x, n, 6, f.scale()).unwrap())
        .unwrap();
    assert!(matches!(
        f.eval.add(&a, &sq),
        Err(CkksError::ScaleMismatch(..))
    ));
    let low = f.encrypt(&x, 0);
    assert!(matches!(
        f.eval.rescale(&low),
        Err(CkksError::LevelTooLow { .. })
    ));
    assert!(matches!(
        f.eval.relinearize(&a, &f.rlk),
        Err(CkksError::CiphertextDegree(1, 2))
    ));
    // Missing Galois key, and keys generated below the ciphertext's level.
    let mut kg = KeyGenerator::with_rng(&f.ctx, Csprng::from_seed([31; 32]));
    let gks = kg.galois_keys(&f.sk, &[1], false, 2).unwrap();
    assert!(matches!(
        f.eval.rotate(&a, 2, &gks),
        Err(CkksError::MissingGaloisKey { step: Some(2), .. })
    ));
    assert!(matches!(
        f.eval.conjugate(&a, &gks),
        Err(CkksError::MissingGaloisKey { step: None, .. })
    ));
    assert!(matches!(
        f.eval.rotate(&a, 1, &gks),
        Err(CkksError::KeyLevelTooLow {
            key_level: 2,
            level: 6
        })
    ));
    let h = f.eval.hoist(&a).unwrap();
    assert!(f.eval.rotate_hoisted(&h, &[1, 5], &gks).is_err());
    assert!(matches!(
        kg.galois_key(&f.sk, 4, 2),
        Err(CkksError::InvalidInput(_))
    ));
    assert!(matches!(
        kg.galois_key(&f.sk, 1 << 20, 2),
        Err(CkksError::InvalidInput(_))
    ));
    let rlk_low = kg.relin_key(&f.sk, 1).unwrap();
    assert!(matches!(
        f.eval.mul_relin(&a, &a, &rlk_low),
        Err(CkksError::KeyLevelTooLow { .. })
    ));
    // Encoding errors.
    assert!(matches!(
        f.enc.encode_real(&x, 3, 0, f.scale()),
        Err(CkksError::InvalidSlots(_))
    ));
    assert!(matches!(
        f.enc.encode_real(&x, 8, 0, f.scale()),
        Err(CkksError::InvalidInput(_))
    ));
    assert!(matches!(
        f.enc.encode_real(&[f64::NAN], 8, 0, f.scale()),
        Err(CkksError::InvalidInput(_))
    ));
    assert!(matches!(
        f.enc.encode_real(&[1.0], 8, 99, f.scale()),
        Err(CkksError::LevelOutOfRange { .. })
    ));
    assert!(matches!(
        f.enc.encode_real(&[1e30], 8, 0, f.scale()),
        Err(CkksError::Overflow(_))
    ));
    // Objects from another parameter set.
    let g = fixture(ParamSet::ToyN13, 32);
    let c13 = {
        let mut g = fixture(ParamSet::ToyN13, 33);
        g.encrypt(&values(g.slots(), 2), 3)
    };
    assert!(matches!(
        f.eval.add(&a, &c13),
        Err(CkksError::ParamsMismatch { .. })
    ));
    assert!(matches!(
        f.dec.decrypt_real(&g.sk, &a),
        Err(CkksError::ParamsMismatch { .. })
    ));
    assert!(matches!(
        g.eval.mul_relin(&c13, &c13, &f.rlk),
        Err(CkksError::ParamsMismatch { .. })
    ));
}

#[test]
fn security_check_rejects_insecure_sets() {
    let err = CkksContext::from_set(ParamSet::ToyN12, Security::Bits128).unwrap_err();
    match &err {
        CkksError::Insecure { bound, log_qp, .. } => {
            assert_eq!(*bound, 109);
            assert!(*log_qp > 109.0);
        }
        other => panic!("{other:?}"),
    }
    assert!(
        err.to_string().contains("109"),
        "the bound is in the message: {err}"
    );
    // The bootstrappable sets pass (context creation builds all tables).
    let p = ParamSet::N16Boot.params();
    p.check_security().unwrap();
    // A sparse secret below the table's range is refused.
    let mut sparse = p.clone();
    sparse.secret = SecretDistribution::SparseTernary { hamming_weight: 64 };
    assert!(sparse.check_security().is_err());
    sparse.secret = SecretDistribution::SparseTernary {
        hamming_weight: 192,
    };
    sparse.check_security().unwrap();
}
