//! # cachemir-ckks
//!
//! RNS-CKKS (Cheon–Kim–Kim–Song, ASIACRYPT 2017; full-RNS variant of Cheon–Han–Kim–Kim–Song,
//! SAC 2018) on the CPU: NTT-friendly prime chains with negacyclic NTTs from `tfhe-ntt`
//! (AVX-512/IFMA), a canonical-embedding encoder with full and sparse slots, public- and
//! secret-key encryption, noise-flooded decryption, hybrid key switching (Han–Ki, CT-RSA 2020)
//! with `dnum` digits and special primes, relinearization, rescale, rotations and conjugation,
//! hoisted rotations and a BSGS linear-transform helper, versioned serialization, and the
//! HE-standard 128-bit security check. Parallel with rayon over RNS limbs and independent work.
//!
//! ```
//! use cachemir_ckks::*;
//! let ctx = CkksContext::from_set(ParamSet::ToyN12, Security::InsecureForTesting).unwrap();
//! let mut kg = KeyGenerator::new(&ctx).unwrap();
//! let sk = kg.secret_key();
//! let pk = kg.public_key(&sk).unwrap();
//! let enc = Encoder::new(&ctx);
//! let pt = enc.encode_real(&[0.5, -0.25], 4, ctx.max_level(), 2f64.powi(40)).unwrap();
//! let ct = Encryptor::new(&ctx).unwrap().encrypt_pk(&pk, &pt).unwrap();
//! let out = Decryptor::new(&ctx).decrypt_real(&sk, &ct).unwrap();
//! assert!((out[0] - 0.5).abs() < 1e-6 && (out[1] + 0.25).abs() < 1e-6);
//! ```
//!
//! DISCLAIMER: `Toy…` parameter sets are insecure and exist for tests.

pub mod bootstrap;
pub mod ciphertext;
pub mod context;
pub mod encoding;
pub mod encrypt;
pub mod error;
pub mod keys;
pub mod ops;
pub mod params;
pub mod plaintext;
pub mod ring;
pub mod sampling;
pub mod serialize;

pub use ciphertext::Ciphertext;
pub use context::{CkksContext, Security};
pub use encoding::Encoder;
pub use encrypt::{Decryptor, Encryptor};
pub use error::{CkksError, Result};
pub use keys::{GaloisKey, GaloisKeys, KeyGenerator, PublicKey, RelinKey, SecretKey, SwitchingKey};
pub use num_complex::Complex64;
pub use ops::{Evaluator, HoistedCiphertext, LinearTransform};
pub use params::{CkksParameters, ParamSet, SecretDistribution};
pub use plaintext::Plaintext;
pub use sampling::Csprng;
pub use serialize::Serializable;
