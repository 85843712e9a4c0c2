//! Versioned serialization of [`BootstrapKeys`], so a client can ship them to a server.
//!
//! Layout: postcard of (magic "CKBK", format version u16, SHA-256 parameter hash, payload). The
//! Galois and relinearization keys inside are the crate's own serialized objects (with their
//! headers, seeds and checks, see [`crate::serialize`]); the sparse → dense switching key travels
//! in the relinearization-key wire form (the same structure: a switching key up to a level); the
//! small dense → sparse encapsulation key (two limbs) is stored whole and checked limb by limb,
//! and, for a [`Security::Bits128`] context, against the sparse-secret security bound again.

use serde::{Deserialize, Serialize};

use super::BootstrapKeys;
use super::mod_raise::{ENCAPSULATION_SPECIAL_PRIMES, EncapsulationKey};
use crate::context::{CkksContext, Security};
use crate::error::{CkksError, Result};
use crate::keys::{GaloisKeys, RelinKey};
use crate::params::security::check_sparse_key;
use crate::ring::poly::RnsPoly;
use crate::serialize::Serializable;

const MAGIC: [u8; 4] = *b"CKBK";
const FORMAT_VERSION: u16 = 1;

/// Magic, format version, parameter hash.
type Header = ([u8; 4], u16, [u8; 32]);

#[derive(Serialize, Deserialize)]
struct EncapsulationWire {
    b: RnsPoly,
    a: RnsPoly,
    seed: [u8; 32],
    hamming_weight: usize,
}

#[derive(Serialize, Deserialize)]
struct Wire {
    galois: Vec<u8>,
    relin: Vec<u8>,
    to_sparse: Option<EncapsulationWire>,
    to_dense: Option<Vec<u8>>,
}

fn id_of(hash: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first)
}

impl EncapsulationWire {
    fn into_key(self, ctx: &CkksContext) -> Result<EncapsulationKey> {
        let p = ctx.params();
        let moduli = [p.q[0], p.p[0]];
        for (name, poly) in [("b", &self.b), ("a", &self.a)] {
            if poly.n() != ctx.n()
                || poly.data().len() != (1 + ENCAPSULATION_SPECIAL_PRIMES) * ctx.n()
            {
                return Err(CkksError::Deserialize(format!(
                    "encapsulation key half {name}: {} limbs of N = {} (expected {} of N = {})",
                    poly.num_limbs(),
                    poly.n(),
                    1 + ENCAPSULATION_SPECIAL_PRIMES,
                    ctx.n()
                )));
            }
            for (i, q) in moduli.iter().enumerate() {
                if poly.limb(i).iter().any(|x| x >= q) {
                    return Err(CkksError::Deserialize(format!(
                        "encapsulation key half {name}: limb {i} not reduced"
                    )));
                }
            }
        }
        if self.hamming_weight == 0 || self.hamming_weight > ctx.n() {
            return Err(CkksError::Deserialize(format!(
                "encapsulation key: Hamming weight {} outside 1..={}",
                self.hamming_weight,
                ctx.n()
            )));
        }
        let key = EncapsulationKey {
            b: self.b,
            a: self.a,
            seed: self.seed,
            hamming_weight: self.hamming_weight,
            params_id: ctx.id(),
        };
        if ctx.security() == Security::Bits128 {
            check_sparse_key(p.log_n, key.hamming_weight, key.log_modulus(ctx))?;
        }
        Ok(key)
    }
}

impl Serializable for BootstrapKeys {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        let to_sparse = match &self.to_sparse {
            Some(k) => {
                ctx.check_id(k.params_id)?;
                Some(EncapsulationWire {
                    b: k.b.clone(),
                    a: k.a.clone(),
                    seed: k.seed,
                    hamming_weight: k.hamming_weight,
                })
            }
            None => None,
        };
        let to_dense = match &self.to_dense {
            Some(k) => Some(RelinKey(k.clone()).to_bytes(ctx)?),
            None => None,
        };
        let wire = Wire {
            galois: self.galois.to_bytes(ctx)?,
            relin: self.relin.to_bytes(ctx)?,
            to_sparse,
            to_dense,
        };
        postcard::to_allocvec(&(MAGIC, FORMAT_VERSION, ctx.hash(), wire))
            .map_err(|e| CkksError::Serialize(e.to_string()))
    }

    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let de = |e: postcard::Error| CkksError::Deserialize(e.to_string());
        let (header, rest): (Header, &[u8]) = postcard::take_from_bytes(bytes).map_err(de)?;
        let (magic, version, hash) = header;
        if magic != MAGIC {
            return Err(CkksError::Deserialize(
                "not Cachemir bootstrapping keys (bad magic)".into(),
            ));
        }
        if version != FORMAT_VERSION {
            return Err(CkksError::Deserialize(format!(
                "bootstrapping keys format version {version} (this build reads {FORMAT_VERSION})"
            )));
        }
        if hash != ctx.hash() {
            return Err(CkksError::ParamsMismatch {
                expected: ctx.id(),
                found: id_of(&hash),
            });
        }
        let (wire, tail): (Wire, &[u8]) = postcard::take_from_bytes(rest).map_err(de)?;
        if !tail.is_empty() {
            return Err(CkksError::Deserialize(format!(
                "{} trailing bytes after the bootstrapping keys",
                tail.len()
            )));
        }
        Ok(BootstrapKeys {
            galois: GaloisKeys::from_bytes(ctx, &wire.galois)?,
            relin: RelinKey::from_bytes(ctx, &wire.relin)?,
            to_sparse: wire.to_sparse.map(|w| w.into_key(ctx)).transpose()?,
            to_dense: wire
                .to_dense
                .map(|b| RelinKey::from_bytes(ctx, &b).map(|k| k.0))
                .transpose()?,
        })
    }
}
