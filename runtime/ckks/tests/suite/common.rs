//! Shared fixtures: deterministic contexts, keys and random slot vectors.

use cachemir_ckks::*;

/// A toy context with keys generated from a fixed seed.
pub struct Fixture {
    pub ctx: CkksContext,
    pub sk: SecretKey,
    pub pk: PublicKey,
    pub rlk: RelinKey,
    pub enc: Encoder,
    pub encryptor: Encryptor,
    pub dec: Decryptor,
    pub eval: Evaluator,
}

pub fn fixture(set: ParamSet, seed: u8) -> Fixture {
    let ctx = CkksContext::from_set(set, Security::InsecureForTesting).unwrap();
    let mut kg = KeyGenerator::with_rng(&ctx, Csprng::from_seed([seed; 32]));
    let sk = kg.secret_key();
    let pk = kg.public_key(&sk).unwrap();
    let rlk = kg.relin_key(&sk, ctx.max_level()).unwrap();
    Fixture {
        enc: Encoder::new(&ctx),
        encryptor: Encryptor::with_rng(&ctx, Csprng::from_seed([seed ^ 0x55; 32])),
        dec: Decryptor::new(&ctx),
        eval: Evaluator::new(&ctx),
        ctx,
        sk,
        pk,
        rlk,
    }
}

/// Deterministic pseudo-random values in [−1, 1].
pub fn values(n: usize, seed: u64) -> Vec<f64> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 11) as f64 / (1u64 << 52) as f64 - 1.0
        })
        .collect()
}

/// Complex values with both parts in [−1, 1].
pub fn complex_values(n: usize, seed: u64) -> Vec<Complex64> {
    let re = values(n, seed);
    let im = values(n, seed + 1000);
    re.into_iter()
        .zip(im)
        .map(|(a, b)| Complex64::new(a, b))
        .collect()
}

/// −log2 of the max absolute error.
pub fn precision_bits(expected: &[f64], got: &[f64]) -> f64 {
    assert_eq!(expected.len(), got.len());
    let err = expected
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f64, f64::max);
    -err.max(1e-300).log2()
}

/// −log2 of the max absolute error over complex slots.
pub fn precision_bits_complex(expected: &[Complex64], got: &[Complex64]) -> f64 {
    let err = expected
        .iter()
        .zip(got)
        .map(|(a, b)| (a - b).norm())
        .fold(0.0f64, f64::max);
    -err.max(1e-300).log2()
}

impl Fixture {
    pub fn scale(&self) -> f64 {
        self.ctx.params().default_scale()
    }
    pub fn slots(&self) -> usize {
        self.ctx.n() / 2
    }
    pub fn encrypt(&mut self, v: &[f64], level: usize) -> Ciphertext {
        let pt = self
            .enc
            .encode_real(v, self.slots(), level, self.scale())
            .unwrap();
        self.encryptor.encrypt_pk(&self.pk, &pt).unwrap()
    }
    pub fn decrypt(&self, ct: &Ciphertext) -> Vec<f64> {
        self.dec.decrypt_real(&self.sk, ct).unwrap()
    }
}
