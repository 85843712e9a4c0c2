//! Versioned binary serialization (postcard) of parameters, keys, ciphertexts and plaintexts.
//!
//! Layout: header { magic "CKMS", format version (u16), object kind (u8), SHA-256 parameter
//! hash (32 bytes) } followed by the postcard payload. Loading checks magic, version, kind and
//! that the hash equals the context's ([`CkksError::ParamsMismatch`] otherwise), then validates
//! shapes and that every residue is reduced, so malformed input is an error, never a panic or a
//! silently wrong object. Public and switching keys are stored compressed: the uniform "a"
//! halves are re-expanded from their seed (about half the size).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use zeroize::Zeroize;

use crate::ciphertext::Ciphertext;
use crate::context::CkksContext;
use crate::error::{CkksError, Result};
use crate::keys::{GaloisKey, GaloisKeys, PublicKey, RelinKey, SecretKey, SwitchingKey};
use crate::params::CkksParameters;
use crate::plaintext::Plaintext;
use crate::ring::automorphism::ntt_permutation;
use crate::ring::poly::RnsPoly;
use crate::sampling::{expand_uniform, small_to_ntt, stream};

/// File magic.
pub const MAGIC: [u8; 4] = *b"CKMS";
/// Current format version.
pub const FORMAT_VERSION: u16 = 1;

/// Kinds of serialized objects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// [`CkksParameters`].
    Params = 1,
    /// [`Ciphertext`].
    Ciphertext = 2,
    /// [`Plaintext`].
    Plaintext = 3,
    /// [`PublicKey`].
    PublicKey = 4,
    /// [`RelinKey`].
    RelinKey = 5,
    /// [`GaloisKeys`].
    GaloisKeys = 6,
    /// [`SecretKey`].
    SecretKey = 7,
}

#[derive(Serialize, Deserialize)]
struct Header {
    magic: [u8; 4],
    version: u16,
    kind: u8,
    hash: [u8; 32],
}

fn write<T: Serialize>(kind: Kind, hash: [u8; 32], payload: &T) -> Result<Vec<u8>> {
    let header = Header {
        magic: MAGIC,
        version: FORMAT_VERSION,
        kind: kind as u8,
        hash,
    };
    postcard::to_allocvec(&(header, payload)).map_err(|e| CkksError::Serialize(e.to_string()))
}

fn read<T: DeserializeOwned>(
    bytes: &[u8],
    kind: Kind,
    expected: Option<[u8; 32]>,
) -> Result<([u8; 32], T)> {
    let de = |e: postcard::Error| CkksError::Deserialize(e.to_string());
    let (h, rest): (Header, &[u8]) = postcard::take_from_bytes(bytes).map_err(de)?;
    if h.magic != MAGIC {
        return Err(CkksError::Deserialize(
            "not a Cachemir CKKS object (bad magic)".into(),
        ));
    }
    if h.version != FORMAT_VERSION {
        return Err(CkksError::Deserialize(format!(
            "format version {} (this build reads {FORMAT_VERSION})",
            h.version
        )));
    }
    if h.kind != kind as u8 {
        return Err(CkksError::Deserialize(format!(
            "object kind {} where {:?} was expected",
            h.kind, kind
        )));
    }
    if let Some(exp) = expected
        && exp != h.hash
    {
        let id = |x: &[u8; 32]| u64::from_le_bytes(x[..8].try_into().unwrap_or([0; 8]));
        return Err(CkksError::ParamsMismatch {
            expected: id(&exp),
            found: id(&h.hash),
        });
    }
    let (payload, tail): (T, &[u8]) = postcard::take_from_bytes(rest).map_err(de)?;
    if !tail.is_empty() {
        return Err(CkksError::Deserialize(format!(
            "{} trailing bytes",
            tail.len()
        )));
    }
    Ok((h.hash, payload))
}

/// Checks a polynomial's shape and that limb i is reduced modulo `moduli[i]`.
fn check_poly(ctx: &CkksContext, p: &RnsPoly, moduli: &[u64]) -> Result<()> {
    if p.n() != ctx.n() || p.data().len() != moduli.len() * ctx.n() {
        return Err(CkksError::Deserialize(format!(
            "polynomial of {} words where {} limbs of N = {} were expected",
            p.data().len(),
            moduli.len(),
            ctx.n()
        )));
    }
    for (i, &q) in moduli.iter().enumerate() {
        if p.limb(i).iter().any(|&x| x >= q) {
            return Err(CkksError::Deserialize(format!("limb {i} not reduced")));
        }
    }
    Ok(())
}

fn q_values(ctx: &CkksContext, level: usize) -> Vec<u64> {
    ctx.params().q[..=level].to_vec()
}

fn ext_values(ctx: &CkksContext, level: usize) -> Vec<u64> {
    ctx.ext_moduli(level).iter().map(|m| m.value()).collect()
}

fn check_meta(ctx: &CkksContext, level: usize, scale: f64, slots: usize) -> Result<()> {
    ctx.check_level(level)
        .map_err(|e| CkksError::Deserialize(e.to_string()))?;
    if !(scale.is_finite() && scale > 0.0) {
        return Err(CkksError::Deserialize(format!("bad scale {scale}")));
    }
    if slots == 0 || !slots.is_power_of_two() || slots > ctx.n() / 2 {
        return Err(CkksError::Deserialize(format!("bad slot count {slots}")));
    }
    Ok(())
}

/// Parameters to bytes (the header carries their own hash).
pub fn params_to_bytes(params: &CkksParameters) -> Result<Vec<u8>> {
    write(Kind::Params, params.hash(), params)
}

/// Parameters from bytes; validates them and checks the header hash against the content.
pub fn params_from_bytes(bytes: &[u8]) -> Result<CkksParameters> {
    let (hash, p): (_, CkksParameters) = read(bytes, Kind::Params, None)?;
    p.validate()?;
    if p.hash() != hash {
        return Err(CkksError::Deserialize(
            "parameter hash does not match content".into(),
        ));
    }
    Ok(p)
}

/// Objects that serialize under a context.
pub trait Serializable: Sized {
    /// Versioned bytes with the context's parameter hash.
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>>;
    /// Loads and validates an object made under the same parameters as `ctx`.
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self>;
}

impl Serializable for Ciphertext {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        ctx.check_id(self.params_id)?;
        write(Kind::Ciphertext, ctx.hash(), self)
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, ct): (_, Ciphertext) = read(bytes, Kind::Ciphertext, Some(ctx.hash()))?;
        ctx.check_id(ct.params_id)?;
        check_meta(ctx, ct.level, ct.scale, ct.slots)?;
        if !(2..=3).contains(&ct.parts.len()) {
            return Err(CkksError::Deserialize(format!(
                "{} polynomials",
                ct.parts.len()
            )));
        }
        let q = q_values(ctx, ct.level);
        ct.parts.iter().try_for_each(|p| check_poly(ctx, p, &q))?;
        Ok(ct)
    }
}

impl Serializable for Plaintext {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        ctx.check_id(self.params_id)?;
        write(Kind::Plaintext, ctx.hash(), self)
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, pt): (_, Plaintext) = read(bytes, Kind::Plaintext, Some(ctx.hash()))?;
        ctx.check_id(pt.params_id)?;
        check_meta(ctx, pt.level, pt.scale, pt.slots)?;
        check_poly(ctx, &pt.poly, &q_values(ctx, pt.level))?;
        Ok(pt)
    }
}

#[derive(Serialize, Deserialize)]
struct PublicKeyWire {
    b: RnsPoly,
    seed: [u8; 32],
}

impl Serializable for PublicKey {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        ctx.check_id(self.params_id)?;
        let wire = PublicKeyWire {
            b: self.b.clone(),
            seed: self.seed,
        };
        write(Kind::PublicKey, ctx.hash(), &wire)
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, w): (_, PublicKeyWire) = read(bytes, Kind::PublicKey, Some(ctx.hash()))?;
        let level = ctx.max_level();
        check_poly(ctx, &w.b, &ext_values(ctx, level))?;
        let a = expand_uniform(&w.seed, stream::PUBLIC_KEY, &ctx.ext_moduli(level), ctx.n());
        Ok(PublicKey {
            b: w.b,
            a,
            seed: w.seed,
            params_id: ctx.id(),
        })
    }
}

#[derive(Serialize, Deserialize)]
struct SwitchingKeyWire {
    level: usize,
    b: Vec<RnsPoly>,
    seed: [u8; 32],
}

impl SwitchingKeyWire {
    fn from_key(k: &SwitchingKey) -> Self {
        SwitchingKeyWire {
            level: k.level,
            b: k.digits.iter().map(|(b, _)| b.clone()).collect(),
            seed: k.seed,
        }
    }

    fn into_key(self, ctx: &CkksContext) -> Result<SwitchingKey> {
        ctx.check_level(self.level)
            .map_err(|e| CkksError::Deserialize(e.to_string()))?;
        let digits = (self.level + 1).div_ceil(ctx.params().alpha());
        if self.b.len() != digits {
            return Err(CkksError::Deserialize(format!(
                "{} key digits, expected {digits}",
                self.b.len()
            )));
        }
        let values = ext_values(ctx, self.level);
        let moduli = ctx.ext_moduli(self.level);
        let digits = self
            .b
            .into_iter()
            .enumerate()
            .map(|(j, b)| {
                check_poly(ctx, &b, &values)?;
                let a = expand_uniform(
                    &self.seed,
                    stream::SWITCHING_KEY + j as u64,
                    &moduli,
                    ctx.n(),
                );
                Ok((b, a))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(SwitchingKey {
            level: self.level,
            digits,
            seed: self.seed,
            params_id: ctx.id(),
        })
    }
}

impl Serializable for RelinKey {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        ctx.check_id(self.0.params_id)?;
        write(
            Kind::RelinKey,
            ctx.hash(),
            &SwitchingKeyWire::from_key(&self.0),
        )
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, w): (_, SwitchingKeyWire) = read(bytes, Kind::RelinKey, Some(ctx.hash()))?;
        Ok(RelinKey(w.into_key(ctx)?))
    }
}

impl Serializable for GaloisKeys {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        let wire: Vec<(u64, SwitchingKeyWire)> = self
            .keys
            .values()
            .map(|k| {
                ctx.check_id(k.key.params_id)?;
                Ok((k.galois_element, SwitchingKeyWire::from_key(&k.key)))
            })
            .collect::<Result<_>>()?;
        write(Kind::GaloisKeys, ctx.hash(), &wire)
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, wire): (_, Vec<(u64, SwitchingKeyWire)>) =
            read(bytes, Kind::GaloisKeys, Some(ctx.hash()))?;
        let two_n = 2 * ctx.n() as u64;
        let mut keys = GaloisKeys::default();
        for (g, w) in wire {
            if g % 2 == 0 || g >= two_n {
                return Err(CkksError::Deserialize(format!("bad Galois element {g}")));
            }
            keys.insert(GaloisKey {
                galois_element: g,
                key: w.into_key(ctx)?,
                perm: ntt_permutation(ctx.params().log_n, g),
            });
        }
        Ok(keys)
    }
}

#[derive(Serialize, Deserialize, Zeroize)]
struct SecretKeyWire {
    coeffs: Vec<i8>,
}

impl Serializable for SecretKey {
    fn to_bytes(&self, ctx: &CkksContext) -> Result<Vec<u8>> {
        ctx.check_id(self.params_id)?;
        let mut wire = SecretKeyWire {
            coeffs: self.coeffs.clone(),
        };
        let out = write(Kind::SecretKey, ctx.hash(), &wire);
        wire.zeroize();
        out
    }
    fn from_bytes(ctx: &CkksContext, bytes: &[u8]) -> Result<Self> {
        let (_, mut w): (_, SecretKeyWire) = read(bytes, Kind::SecretKey, Some(ctx.hash()))?;
        if w.coeffs.len() != ctx.n() || w.coeffs.iter().any(|c| !(-1..=1).contains(c)) {
            w.zeroize();
            return Err(CkksError::Deserialize(
                "secret key is not ternary of length N".into(),
            ));
        }
        let tables: Vec<_> = ctx.inner.ntt.iter().collect();
        let ntt = small_to_ntt(&w.coeffs, &tables);
        Ok(SecretKey {
            coeffs: std::mem::take(&mut w.coeffs),
            ntt,
            params_id: ctx.id(),
        })
    }
}
