//! CKKS operations on device-resident ciphertexts, mirroring `cachemir-ckks`'s `Evaluator`
//! (`ops/arith.rs`, `ops/keyswitch.rs`, `ops/rotate.rs`) residue for residue.
//!
//! [`Evaluator::new`] copies a context's tables to the device once: Barrett constants, NTT
//! twiddles ([`crate::twiddles`]), the limb → modulus maps of Q_ℓ and Q_ℓ·P, the ModUp tables of
//! every (digit, level), the ModDown tables, P^{−1} mod q_i and the rescale inverses
//! ([`crate::conversion`]). Every operation returns new device buffers; nothing is copied back
//! unless asked ([`DeviceCiphertext::download`]).

mod arith;
mod keyswitch;
mod launch;

pub use keyswitch::{DeviceGaloisKey, DeviceSwitchingKey, Hoisted};

use std::sync::Arc;

use cachemir_ckks::ring::modulus::Modulus;
use cachemir_ckks::{Ciphertext, CkksContext, Plaintext};
use cudarc::driver::{CudaSlice, CudaView};

use crate::conversion::{
    ConversionTable, ext_indices, moddown_table, modup_table, p_constants, rescale_inverses,
};
use crate::device::{CudaDevice, driver};
use crate::error::CudaError;
use crate::geometry::NttGeometry;
use crate::poly::DevicePoly;
use crate::twiddles::{Twiddles, barrett_words};

/// A ciphertext in device memory: 2 (or 3 after a tensor product) NTT-form polynomials over
/// q_0 … q_ℓ, with the host-side bookkeeping of `cachemir_ckks::Ciphertext`.
#[derive(Debug)]
pub struct DeviceCiphertext {
    pub(crate) parts: Vec<DevicePoly>,
    /// Level ℓ (ℓ + 1 limbs).
    pub level: usize,
    /// Scale Δ of the message.
    pub scale: f64,
    /// Slots in use.
    pub slots: usize,
}

/// A plaintext in device memory (NTT form over q_0 … q_ℓ).
#[derive(Debug)]
pub struct DevicePlaintext {
    pub(crate) poly: DevicePoly,
    /// Level ℓ.
    pub level: usize,
    /// Scale Δ.
    pub scale: f64,
    /// Slots.
    pub slots: usize,
}

/// One basis conversion's constants in device memory ([`ConversionTable`]).
pub(crate) struct DeviceConversion {
    pub from: CudaSlice<u32>,
    pub to: CudaSlice<u32>,
    /// Target limb positions in the output polynomial.
    pub positions: CudaSlice<u32>,
    pub hat_inv: CudaSlice<u64>,
    pub hat_inv_shoup: CudaSlice<u64>,
    pub inv_from: CudaSlice<f64>,
    pub hat_mod_to: CudaSlice<u64>,
    pub neg_b_mod_to: CudaSlice<u64>,
    /// |B|.
    pub sources: usize,
}

/// Evaluates CKKS operations on one device under one context (see the module documentation).
pub struct Evaluator {
    pub(crate) dev: Arc<CudaDevice>,
    pub(crate) ctx: CkksContext,
    pub(crate) n: usize,
    /// L + 1.
    pub(crate) nq: usize,
    /// K special primes.
    pub(crate) k: usize,
    pub(crate) alpha: usize,
    pub(crate) geo: NttGeometry,
    pub(crate) host_moduli: Vec<Modulus>,
    /// Three words per modulus (q, ⌊2^128/q⌋ high, low), q_0 … q_L, p_0 … p_{K−1}.
    pub(crate) moduli: CudaSlice<u64>,
    /// 0, 1, …, L + K: the limb → modulus map of q_0 … q_ℓ (a prefix), of P (a range), and the
    /// identity positions of ModDown's targets.
    pub(crate) all_idx: CudaSlice<u32>,
    /// Limb → modulus map of Q_ℓ·P per level.
    pub(crate) ext_idx: Vec<CudaSlice<u32>>,
    pub(crate) psi: CudaSlice<u64>,
    pub(crate) psi_shoup: CudaSlice<u64>,
    pub(crate) ipsi: CudaSlice<u64>,
    pub(crate) ipsi_shoup: CudaSlice<u64>,
    pub(crate) n_inv: CudaSlice<u64>,
    pub(crate) n_inv_shoup: CudaSlice<u64>,
    /// modup\[digit\]\[level\].
    pub(crate) modup: Vec<Vec<Option<DeviceConversion>>>,
    pub(crate) moddown: DeviceConversion,
    /// P^{−1} mod q_i.
    pub(crate) p_inv: CudaSlice<u64>,
    /// q_ℓ^{−1} mod q_i (i < ℓ) per level ℓ ≥ 1.
    pub(crate) rescale_inv: Vec<Option<CudaSlice<u64>>>,
}

impl std::fmt::Debug for Evaluator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evaluator")
            .field("device", &self.dev)
            .field("parameters", &self.ctx.params().name)
            .finish()
    }
}

impl Evaluator {
    /// Copies `ctx`'s tables to `dev`.
    ///
    /// # Errors
    /// [`CudaError::Tables`] for a prime without the NTT of degree N; [`CudaError::Driver`].
    pub fn new(dev: Arc<CudaDevice>, ctx: &CkksContext) -> Result<Self, CudaError> {
        let params = ctx.params();
        let n = ctx.n();
        let nq = params.q.len();
        let k = params.p.len();
        let primes: Vec<u64> = params.q.iter().chain(&params.p).copied().collect();
        let host_moduli: Vec<Modulus> = primes.iter().map(|&q| Modulus::new(q)).collect();
        let s = dev.stream().clone();
        let up64 = |v: &[u64]| s.clone_htod(v).map_err(driver);
        let up32 = |v: &[u32]| s.clone_htod(v).map_err(driver);
        let moduli: Vec<u64> = primes.iter().flat_map(|&q| barrett_words(q)).collect();
        let twiddles = primes
            .iter()
            .map(|&q| Twiddles::new(n, q))
            .collect::<Result<Vec<_>, _>>()?;
        let cat = |f: &dyn Fn(&Twiddles) -> &[u64]| -> Vec<u64> {
            twiddles.iter().flat_map(|t| f(t).iter().copied()).collect()
        };
        let all: Vec<u32> = (0..primes.len() as u32).collect();
        let upload_conversion = |t: &ConversionTable, positions: &[u32]| {
            Ok::<_, CudaError>(DeviceConversion {
                from: up32(&t.from)?,
                to: up32(&t.to)?,
                positions: up32(positions)?,
                hat_inv: up64(&t.hat_inv)?,
                hat_inv_shoup: up64(&t.hat_inv_shoup)?,
                inv_from: s.clone_htod(&t.inv_from).map_err(driver)?,
                hat_mod_to: up64(&t.hat_mod_to)?,
                neg_b_mod_to: up64(&t.neg_b_mod_to)?,
                sources: t.from.len(),
            })
        };
        let alpha = params.alpha();
        let mut modup = Vec::with_capacity(params.dnum);
        for digit in 0..params.dnum {
            let mut per_level = Vec::with_capacity(nq);
            for level in 0..nq {
                per_level.push(match modup_table(&host_moduli, nq, alpha, digit, level) {
                    Some((t, positions)) => Some(upload_conversion(&t, &positions)?),
                    None => None,
                });
            }
            modup.push(per_level);
        }
        let moddown = upload_conversion(&moddown_table(&host_moduli, nq), &all[..nq])?;
        let (p_inv, _) = p_constants(&host_moduli, nq);
        let rescale_inv = (0..nq)
            .map(|l| {
                (l > 0)
                    .then(|| up64(&rescale_inverses(&host_moduli, l)))
                    .transpose()
            })
            .collect::<Result<Vec<_>, _>>()?;
        let ext_idx = (0..nq)
            .map(|l| up32(&ext_indices(nq, k, l)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Evaluator {
            geo: NttGeometry::new(params.log_n),
            ctx: ctx.clone(),
            n,
            nq,
            k,
            alpha,
            moduli: up64(&moduli)?,
            all_idx: up32(&all)?,
            ext_idx,
            psi: up64(&cat(&|t| &t.psi_rev))?,
            psi_shoup: up64(&cat(&|t| &t.psi_rev_shoup))?,
            ipsi: up64(&cat(&|t| &t.ipsi_rev))?,
            ipsi_shoup: up64(&cat(&|t| &t.ipsi_rev_shoup))?,
            n_inv: up64(&twiddles.iter().map(|t| t.n_inv).collect::<Vec<_>>())?,
            n_inv_shoup: up64(&twiddles.iter().map(|t| t.n_inv_shoup).collect::<Vec<_>>())?,
            modup,
            moddown,
            p_inv: up64(&p_inv)?,
            rescale_inv,
            host_moduli,
            dev,
        })
    }

    /// The device.
    pub fn device(&self) -> &Arc<CudaDevice> {
        &self.dev
    }

    /// The host context whose tables this evaluator holds.
    pub fn context(&self) -> &CkksContext {
        &self.ctx
    }

    /// The NTT (`forward`) or inverse NTT of `p`, whose limb i is modulo q_i: the batched
    /// kernels on their own, for tests and benchmarks.
    ///
    /// # Errors
    /// [`CudaError::Mismatch`] for more limbs than Q has or another ring degree;
    /// [`CudaError::Driver`].
    pub fn ntt(&self, p: &DevicePoly, forward: bool) -> Result<DevicePoly, CudaError> {
        let limbs = p.limbs();
        if limbs > self.nq || p.n() != self.n {
            return Err(CudaError::Mismatch(format!(
                "{limbs} limbs at N = {} (Q has {} at N = {})",
                p.n(),
                self.nq,
                self.n
            )));
        }
        let mut out = p.copy_limbs(&self.dev, 0..limbs)?;
        let map = self.q_map(limbs);
        if forward {
            self.ntt_forward(&mut out.data.as_view_mut(), &map, limbs)?;
        } else {
            self.ntt_inverse(&mut out.data.as_view_mut(), &map, limbs)?;
        }
        Ok(out)
    }

    /// Limb → modulus map of q_0 … q_{limbs−1}.
    pub(crate) fn q_map(&self, limbs: usize) -> CudaView<'_, u32> {
        self.all_idx.slice(0..limbs)
    }

    /// Limb → modulus map of p_0 … p_{K−1}.
    pub(crate) fn p_map(&self) -> CudaView<'_, u32> {
        self.all_idx.slice(self.nq..self.nq + self.k)
    }
}

impl DeviceCiphertext {
    /// Copies `ct` (made under `ev`'s context) to the device.
    ///
    /// # Errors
    /// [`CudaError::Ckks`] for a ciphertext of another context; [`CudaError::Driver`].
    pub fn upload(ev: &Evaluator, ct: &Ciphertext) -> Result<Self, CudaError> {
        // The parameter id is private to cachemir-ckks: the ring degree and level are checked
        // here, and the backend uploads only ciphertexts of its own parameters.
        if ct.parts().iter().any(|p| p.n() != ev.n) {
            return Err(CudaError::Mismatch(format!(
                "a ciphertext of ring degree {} on an evaluator of N = {}",
                ct.parts()[0].n(),
                ev.n
            )));
        }
        ev.ctx.check_level(ct.level()).map_err(CudaError::Ckks)?;
        let parts = ct
            .parts()
            .iter()
            .map(|p| DevicePoly::upload(&ev.dev, p))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeviceCiphertext {
            parts,
            level: ct.level(),
            scale: ct.scale(),
            slots: ct.slots(),
        })
    }

    /// Copies the ciphertext back as a `cachemir_ckks::Ciphertext` of `ev`'s context.
    ///
    /// # Errors
    /// [`CudaError::Driver`], including failures of queued kernels.
    pub fn download(&self, ev: &Evaluator) -> Result<Ciphertext, CudaError> {
        let parts = self
            .parts
            .iter()
            .map(|p| p.download(&ev.dev))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Ciphertext::from_parts(
            parts,
            self.level,
            self.scale,
            self.slots,
            ev.ctx.id(),
        )?)
    }

    /// Degree (number of parts − 1).
    pub fn degree(&self) -> usize {
        self.parts.len() - 1
    }
}

impl DevicePlaintext {
    /// Copies `pt` to the device.
    ///
    /// # Errors
    /// [`CudaError::Driver`].
    pub fn upload(ev: &Evaluator, pt: &Plaintext) -> Result<Self, CudaError> {
        Ok(DevicePlaintext {
            poly: DevicePoly::upload(&ev.dev, pt.poly())?,
            level: pt.level(),
            scale: pt.scale(),
            slots: pt.slots(),
        })
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.poly.n() * self.poly.limbs() * 8
    }
}
