//! Keys: secret (zeroized on drop), public, and switching keys for relinearization and Galois
//! automorphisms, each generated up to a requested maximum level. The uniform "a" halves of
//! public and switching keys are expanded from a 32-byte seed, so serialized keys carry only the
//! seed and the "b" halves.

mod keygen;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::context::CkksContext;
use crate::error::{CkksError, Result};
use crate::ring::automorphism::rotation_element;
use crate::ring::poly::RnsPoly;
pub use keygen::KeyGenerator;

/// The secret key s: ternary coefficients and s in NTT form over every prime (q_0 … q_L,
/// p_0 … p_{K−1}). Zeroized on drop.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SecretKey {
    pub(crate) coeffs: Vec<i8>,
    pub(crate) ntt: RnsPoly,
    pub(crate) params_id: u64,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretKey(N = {}, <redacted>)", self.coeffs.len())
    }
}

impl SecretKey {
    /// s restricted to q_0 … q_ℓ (NTT form), zeroized on drop.
    pub(crate) fn q_part(&self, level: usize) -> Zeroizing<RnsPoly> {
        Zeroizing::new(self.ntt.prefix(level + 1))
    }

    /// s over the extended basis Q_ℓ·P (NTT form), zeroized on drop.
    pub(crate) fn ext_part(&self, ctx: &CkksContext, level: usize) -> Zeroizing<RnsPoly> {
        Zeroizing::new(self.ntt.restrict_ext(ctx.max_level() + 1, level))
    }

    /// The ternary coefficients (for tests of noise bounds).
    pub fn coefficients(&self) -> &[i8] {
        &self.coeffs
    }
}

/// Public key (b, a) = (−a·s + e, a) over Q_L·P (the special primes let encryption divide its
/// noise by P, as Lattigo does, so public-key encryption is nearly as precise as secret-key).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicKey {
    pub(crate) b: RnsPoly,
    pub(crate) a: RnsPoly,
    pub(crate) seed: [u8; 32],
    pub(crate) params_id: u64,
}

/// A hybrid key-switching key from s_in to s_out (Han–Ki, CT-RSA 2020, §3): for each digit j,
/// (b_j, a_j) over Q_ℓk·P with b_j = −a_j·s_out + e_j + P·[Q̂_j·(Q̂_j^{-1} mod Q_j)]·s_in, i.e.
/// P·s_in on digit j's limbs and 0 elsewhere. Generated up to level ℓk (`level`), usable on
/// ciphertexts at any level ≤ ℓk.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SwitchingKey {
    pub(crate) level: usize,
    /// (b_j, a_j) per digit, each with ℓk + 1 + K limbs.
    pub(crate) digits: Vec<(RnsPoly, RnsPoly)>,
    pub(crate) seed: [u8; 32],
    pub(crate) params_id: u64,
}

impl SwitchingKey {
    /// Maximum level the key serves.
    pub fn level(&self) -> usize {
        self.level
    }
    /// The (b_j, a_j) pairs per digit (NTT form, `level() + 1 + K` limbs each), e.g. to copy the
    /// key to a GPU.
    pub fn digits(&self) -> &[(RnsPoly, RnsPoly)] {
        &self.digits
    }
    /// Number of digits.
    pub fn num_digits(&self) -> usize {
        self.digits.len()
    }
    /// In-memory size, bytes.
    pub fn size_bytes(&self) -> usize {
        self.digits
            .iter()
            .map(|(b, a)| (b.data().len() + a.data().len()) * 8)
            .sum()
    }
    pub(crate) fn check(&self, ctx: &CkksContext, level: usize) -> Result<()> {
        ctx.check_id(self.params_id)?;
        if level > self.level {
            return Err(CkksError::KeyLevelTooLow {
                key_level: self.level,
                level,
            });
        }
        Ok(())
    }
}

/// Relinearization key: switches s² → s.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RelinKey(pub(crate) SwitchingKey);

impl RelinKey {
    /// The underlying switching key.
    pub fn switching_key(&self) -> &SwitchingKey {
        &self.0
    }
}

/// Key for the automorphism σ_g. Stored as the switching key s → σ_g^{-1}(s), so that key
/// switching happens before the permutation and hoisted rotations share one decomposition
/// (Bossuat et al., EUROCRYPT 2021, §5; Halevi–Shoup, CRYPTO 2018, §5).
#[derive(Debug, Clone, PartialEq)]
pub struct GaloisKey {
    pub(crate) galois_element: u64,
    pub(crate) key: SwitchingKey,
    /// NTT-domain permutation of σ_g.
    pub(crate) perm: Vec<u32>,
}

impl GaloisKey {
    /// The Galois element g.
    pub fn galois_element(&self) -> u64 {
        self.galois_element
    }
    /// The underlying switching key.
    pub fn switching_key(&self) -> &SwitchingKey {
        &self.key
    }
}

/// A set of Galois keys indexed by Galois element (serialize with [`crate::Serializable`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GaloisKeys {
    pub(crate) keys: BTreeMap<u64, GaloisKey>,
}

impl GaloisKeys {
    /// The key for element g, or [`CkksError::MissingGaloisKey`].
    pub fn get(&self, g: u64, step: Option<i64>) -> Result<&GaloisKey> {
        self.keys.get(&g).ok_or(CkksError::MissingGaloisKey {
            galois_element: g,
            step,
        })
    }
    /// The key for a left rotation by `step` slots.
    pub fn for_step(&self, log_n: u32, step: i64) -> Result<&GaloisKey> {
        self.get(rotation_element(log_n, step), Some(step))
    }
    /// Adds (or replaces) a key.
    pub fn insert(&mut self, key: GaloisKey) {
        self.keys.insert(key.galois_element, key);
    }
    /// Galois elements present.
    pub fn elements(&self) -> impl Iterator<Item = u64> + '_ {
        self.keys.keys().copied()
    }
    /// Number of keys.
    pub fn len(&self) -> usize {
        self.keys.len()
    }
    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
    /// In-memory size, bytes.
    pub fn size_bytes(&self) -> usize {
        self.keys.values().map(|k| k.key.size_bytes()).sum()
    }
}
