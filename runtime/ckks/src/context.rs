//! The CKKS context: a validated parameter set with its precomputed tables (NTT plans, rescale
//! constants, ModUp/ModDown basis converters, encoder roots). Cheap to clone (shared `Arc`).

use std::sync::Arc;

use crate::encoding::EncoderTables;
use crate::error::{CkksError, Result};
use crate::params::{CkksParameters, ParamSet};
use crate::ring::basis::BasisConverter;
use crate::ring::basis_ifma::{self, Reducer};
use crate::ring::modulus::Modulus;
use crate::ring::ntt::NttTable;

/// Whether a context may be built from parameters that fail the 128-bit check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    /// Reject anything above the HE-standard 128-bit bound (the default).
    Bits128,
    /// Accept insecure (toy) parameters: tests and experiments only.
    InsecureForTesting,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub params: CkksParameters,
    pub id: u64,
    pub hash: [u8; 32],
    pub n: usize,
    /// q_0 … q_L then p_0 … p_{K−1}.
    pub moduli: Vec<Modulus>,
    pub ntt: Vec<NttTable>,
    /// rescale_inv[ℓ][i] = (q_ℓ^{-1} mod q_i, Shoup) for i < ℓ.
    pub rescale_inv: Vec<Vec<(u64, u64)>>,
    /// modup[j][ℓ]: digit j's limbs at level ℓ → the other limbs of Q_ℓ·P (None if the digit is
    /// empty at level ℓ).
    pub modup: Vec<Vec<Option<BasisConverter>>>,
    /// P → Q_L (use the first ℓ + 1 targets at level ℓ).
    pub moddown: BasisConverter,
    /// P^{-1} mod q_i with Shoup constants.
    pub p_inv: Vec<(u64, u64)>,
    pub encoder: EncoderTables,
    /// IFMA reduction constants per modulus (q then p) where the vector kernels apply.
    pub ifma: Vec<Option<Reducer>>,
    /// The security requirement the context was built with (also applied to bootstrapping's
    /// sparse-secret encapsulation key).
    pub security: Security,
}

/// A CKKS context. All objects (keys, ciphertexts, plaintexts) carry the context's parameter id,
/// and operations on objects of another context fail with [`CkksError::ParamsMismatch`].
#[derive(Debug, Clone)]
pub struct CkksContext {
    pub(crate) inner: Arc<Inner>,
}

impl CkksContext {
    /// Builds a context; rejects parameters failing the 128-bit check unless `security` is
    /// [`Security::InsecureForTesting`]. Errors: [`CkksError::InvalidParameters`],
    /// [`CkksError::Insecure`].
    pub fn new(params: CkksParameters, security: Security) -> Result<Self> {
        params.validate()?;
        if security == Security::Bits128 {
            params.check_security()?;
        }
        let n = params.n();
        let moduli: Vec<Modulus> = params
            .q
            .iter()
            .chain(&params.p)
            .map(|&m| Modulus::new(m))
            .collect();
        let ntt = params
            .q
            .iter()
            .chain(&params.p)
            .map(|&m| NttTable::new(n, m))
            .collect::<Result<Vec<_>>>()?;
        let nq = params.q.len();
        let rescale_inv = (0..nq)
            .map(|l| {
                (0..l)
                    .map(|i| {
                        let m = &moduli[i];
                        let inv = m.inv(m.reduce(params.q[l]));
                        (inv, m.shoup(inv))
                    })
                    .collect()
            })
            .collect();
        let alpha = params.alpha();
        let pm = &moduli[nq..];
        let modup = (0..params.dnum)
            .map(|j| {
                (0..nq)
                    .map(|l| {
                        let start = j * alpha;
                        let end = ((j + 1) * alpha).min(l + 1);
                        (start < end).then(|| {
                            let to: Vec<Modulus> = (0..=l)
                                .filter(|&i| i < start || i >= end)
                                .map(|i| moduli[i])
                                .chain(pm.iter().copied())
                                .collect();
                            BasisConverter::new(&moduli[start..end], &to)
                        })
                    })
                    .collect()
            })
            .collect();
        let moddown = BasisConverter::new(pm, &moduli[..nq]);
        let p_inv = moduli[..nq]
            .iter()
            .map(|m| {
                let p = pm
                    .iter()
                    .fold(1u64, |acc, pk| m.mul(acc, m.reduce(pk.value())));
                let inv = m.inv(p);
                (inv, m.shoup(inv))
            })
            .collect();
        let encoder = EncoderTables::new(params.log_n);
        let ifma = moduli
            .iter()
            .map(|m| (basis_ifma::available() && m.value() < 1 << 50).then(|| Reducer::new(m)))
            .collect();
        Ok(CkksContext {
            inner: Arc::new(Inner {
                id: params.id(),
                hash: params.hash(),
                params,
                n,
                moduli,
                ntt,
                rescale_inv,
                modup,
                moddown,
                p_inv,
                encoder,
                ifma,
                security,
            }),
        })
    }

    /// Context for a named set (toy sets require [`Security::InsecureForTesting`]).
    pub fn from_set(set: ParamSet, security: Security) -> Result<Self> {
        Self::new(set.params(), security)
    }

    /// The security requirement the context was built with.
    pub fn security(&self) -> Security {
        self.inner.security
    }

    /// The parameters.
    pub fn params(&self) -> &CkksParameters {
        &self.inner.params
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        self.inner.n
    }

    /// Top level L.
    pub fn max_level(&self) -> usize {
        self.inner.params.max_level()
    }

    /// Parameter id (first 8 bytes of the parameter hash).
    pub fn id(&self) -> u64 {
        self.inner.id
    }

    /// SHA-256 parameter hash.
    pub fn hash(&self) -> [u8; 32] {
        self.inner.hash
    }

    /// Checks an object's parameter id against this context.
    pub fn check_id(&self, found: u64) -> Result<()> {
        if found == self.inner.id {
            Ok(())
        } else {
            Err(CkksError::ParamsMismatch {
                expected: self.inner.id,
                found,
            })
        }
    }

    /// Checks that `level` exists in the chain.
    pub fn check_level(&self, level: usize) -> Result<()> {
        if level > self.max_level() {
            Err(CkksError::LevelOutOfRange {
                level,
                max: self.max_level(),
            })
        } else {
            Ok(())
        }
    }

    /// Number of special primes K.
    pub fn num_special(&self) -> usize {
        self.inner.params.p.len()
    }

    /// Moduli q_0 … q_ℓ.
    pub(crate) fn q_moduli(&self, level: usize) -> &[Modulus] {
        &self.inner.moduli[..=level]
    }

    /// NTT tables of q_0 … q_ℓ.
    pub(crate) fn q_tables(&self, level: usize) -> Vec<&NttTable> {
        self.inner.ntt[..=level].iter().collect()
    }

    /// Moduli of the extended basis Q_ℓ·P: q_0 … q_ℓ, p_0 … p_{K−1}.
    pub(crate) fn ext_moduli(&self, level: usize) -> Vec<Modulus> {
        let nq = self.max_level() + 1;
        self.inner.moduli[..=level]
            .iter()
            .chain(&self.inner.moduli[nq..])
            .copied()
            .collect()
    }

    /// NTT tables of the extended basis Q_ℓ·P.
    pub(crate) fn ext_tables(&self, level: usize) -> Vec<&NttTable> {
        let nq = self.max_level() + 1;
        self.inner.ntt[..=level]
            .iter()
            .chain(&self.inner.ntt[nq..])
            .collect()
    }
}
