//! Hybrid key switching on the device (Han–Ki, CT-RSA 2020, §3), relinearization and rotations,
//! single and hoisted (Halevi–Shoup, CRYPTO 2018, §5), as `cachemir-ckks`'s `ops/keyswitch.rs`
//! and `ops/rotate.rs`:
//!
//! 1. **Decompose**: d (NTT, ℓ + 1 limbs) to coefficient form; for each digit j, its limbs
//!    ModUp'ed to every other limb of Q_ℓ·P; the digit polynomial (all ℓ + 1 + K limbs, the
//!    digit's own limbs copied in coefficient form) forward-NTT'ed in one batch — the digit's own
//!    limbs come back to d's residues exactly, the others are the CPU's converted limbs.
//! 2. **Inner product** with the key over Q_ℓ·P (`ks_inner`).
//! 3. **ModDown**: the special limbs to coefficient form, converted to Q_ℓ, NTT'ed, and
//!    (x − conv)·P^{−1}.
//!
//! A rotation by Galois element g key-switches c_1 with g's key (s → σ_g^{−1}(s)) and applies
//! σ_g as an NTT-domain permutation: (σ_g(u_0 + c_0), σ_g(u_1)). Step 1 does not depend on the
//! key, so a [`Hoisted`] ciphertext serves many rotations.

use cachemir_ckks::ring::automorphism::ntt_permutation;
use cachemir_ckks::{CkksError, GaloisKey, SwitchingKey};
use cudarc::driver::{CudaSlice, PushKernelArg};

use super::{DeviceCiphertext, Evaluator};
use crate::conversion::{digit_range, digits_at};
use crate::device::{config, driver};
use crate::error::CudaError;
use crate::geometry::per_coefficient;
use crate::kernels::Kernel;
use crate::poly::DevicePoly;

/// A switching key in device memory: per digit j, b_j and a_j over `level + 1 + K` limbs, stored
/// \[digit\]\[limb\]\[N\] in two buffers.
pub struct DeviceSwitchingKey {
    /// Maximum level the key serves.
    pub level: usize,
    digits: usize,
    b: CudaSlice<u64>,
    a: CudaSlice<u64>,
}

impl std::fmt::Debug for DeviceSwitchingKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "DeviceSwitchingKey(level {}, {} digits)",
            self.level, self.digits
        )
    }
}

impl DeviceSwitchingKey {
    /// Copies `key` to the device.
    ///
    /// # Errors
    /// [`CudaError::Driver`] (out of device memory).
    pub fn upload(ev: &Evaluator, key: &SwitchingKey) -> Result<Self, CudaError> {
        let words: usize = key.digits().iter().map(|(b, _)| b.data().len()).sum();
        let (mut b, mut a) = (Vec::with_capacity(words), Vec::with_capacity(words));
        for (bj, aj) in key.digits() {
            b.extend_from_slice(bj.data());
            a.extend_from_slice(aj.data());
        }
        let s = ev.dev.stream();
        Ok(DeviceSwitchingKey {
            level: key.level(),
            digits: key.num_digits(),
            b: s.clone_htod(&b).map_err(driver)?,
            a: s.clone_htod(&a).map_err(driver)?,
        })
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        (self.b.len() + self.a.len()) * 8
    }

    fn check(&self, level: usize) -> Result<(), CudaError> {
        if level > self.level {
            return Err(CkksError::KeyLevelTooLow {
                key_level: self.level,
                level,
            }
            .into());
        }
        Ok(())
    }
}

/// A Galois key in device memory: the switching key and σ_g's NTT-domain permutation.
#[derive(Debug)]
pub struct DeviceGaloisKey {
    /// The Galois element g.
    pub galois_element: u64,
    key: DeviceSwitchingKey,
    perm: CudaSlice<u32>,
}

impl DeviceGaloisKey {
    /// Copies `key` to the device with its permutation.
    ///
    /// # Errors
    /// [`CudaError::Driver`].
    pub fn upload(ev: &Evaluator, key: &GaloisKey) -> Result<Self, CudaError> {
        let g = key.galois_element();
        let perm = ntt_permutation(ev.ctx.params().log_n, g);
        Ok(DeviceGaloisKey {
            galois_element: g,
            key: DeviceSwitchingKey::upload(ev, key.switching_key())?,
            perm: ev.dev.stream().clone_htod(&perm).map_err(driver)?,
        })
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        self.key.bytes() + self.perm.len() * 4
    }
}

/// The ModUp'ed digits of a polynomial at level ℓ: \[digit\]\[ℓ + 1 + K limbs\]\[N\], NTT form.
struct Decomposed {
    level: usize,
    digits: usize,
    data: CudaSlice<u64>,
}

/// A ciphertext with c_1 decomposed once, for many rotations ([`Evaluator::rotate_hoisted`]).
pub struct Hoisted {
    c0: DevicePoly,
    dec: Decomposed,
    level: usize,
    scale: f64,
    slots: usize,
}

impl std::fmt::Debug for Hoisted {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Hoisted(level {}, {} digits)",
            self.level, self.dec.digits
        )
    }
}

impl Evaluator {
    /// Step 1: decomposition and ModUp of `c`'s first ℓ + 1 limbs.
    fn decompose(&self, c: &DevicePoly, level: usize) -> Result<Decomposed, CudaError> {
        let n = self.n;
        let limbs = level + 1;
        let ext = limbs + self.k;
        let mut coeff = c.copy_limbs(&self.dev, 0..limbs)?;
        let q_map = self.q_map(limbs);
        self.ntt_inverse(&mut coeff.data.as_view_mut(), &q_map, limbs)?;
        let digits = digits_at(self.alpha, level);
        // SAFETY: every digit's ext limbs are written below (own limbs copied, others converted).
        let mut data =
            unsafe { self.dev.stream().alloc::<u64>(digits * ext * n) }.map_err(driver)?;
        let ext_map = self.ext_idx[level].as_view();
        for j in 0..digits {
            let range = digit_range(self.alpha, j, level);
            let conv = self.modup[j][level].as_ref().ok_or_else(|| {
                CudaError::Tables(format!("no ModUp table for digit {j} at level {level}"))
            })?;
            let mut out = data.slice_mut(j * ext * n..(j + 1) * ext * n);
            let own = coeff.limbs_view(range.clone());
            self.dev
                .stream()
                .memcpy_dtod(&own, &mut out.slice_mut(range.start * n..range.end * n))
                .map_err(driver)?;
            self.convert(conv, &own, &mut out, ext - range.len())?;
            self.ntt_forward(&mut out, &ext_map, ext)?;
        }
        Ok(Decomposed {
            level,
            digits,
            data,
        })
    }

    /// Steps 2 and 3: (u_0, u_1) over Q_ℓ with u_0 + u_1·s_out ≈ d·s_in.
    fn key_switch(
        &self,
        dec: &Decomposed,
        key: &DeviceSwitchingKey,
    ) -> Result<(DevicePoly, DevicePoly), CudaError> {
        key.check(dec.level)?;
        let n = self.n;
        let level = dec.level;
        let limbs = level + 1;
        let ext = limbs + self.k;
        let key_ext = key.level + 1 + self.k;
        let mut acc0 = DevicePoly::uninit(&self.dev, n, ext)?;
        let mut acc1 = DevicePoly::uninit(&self.dev, n, ext)?;
        let ext_map = self.ext_idx[level].as_view();
        let (n32, ext32, kext32) = (n as u32, ext as u32, key_ext as u32);
        let (lv, klv, nd) = (
            level as u32,
            key.level as u32,
            dec.digits.min(key.digits) as u32,
        );
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::KsInner));
        l.arg(&mut acc0.data)
            .arg(&mut acc1.data)
            .arg(&dec.data)
            .arg(&key.b)
            .arg(&key.a)
            .arg(&self.moduli)
            .arg(&ext_map)
            .arg(&n32)
            .arg(&ext32)
            .arg(&kext32)
            .arg(&lv)
            .arg(&klv)
            .arg(&nd);
        // SAFETY: ks_inner(u64* ×2, const u64* ×3, const u64*, const u32*, u32 ×6); digits hold
        // `dec.digits` × ext limbs, the key `key.digits` × key_ext limbs, key.level ≥ level.
        unsafe { l.launch(config(per_coefficient(n, ext))) }.map_err(driver)?;
        let u0 = self.mod_down(&mut acc0, level)?;
        let u1 = self.mod_down(&mut acc1, level)?;
        Ok((u0, u1))
    }

    /// ModDown of `x` over Q_ℓ·P (NTT): round(x / P) over Q_ℓ. Destroys x's special limbs.
    fn mod_down(&self, x: &mut DevicePoly, level: usize) -> Result<DevicePoly, CudaError> {
        let limbs = level + 1;
        let ext = limbs + self.k;
        let p_map = self.p_map();
        self.ntt_inverse(&mut x.limbs_view_mut(limbs..ext), &p_map, self.k)?;
        let mut r = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        self.convert(
            &self.moddown,
            &x.limbs_view(limbs..ext),
            &mut r.data.as_view_mut(),
            limbs,
        )?;
        let q_map = self.q_map(limbs);
        self.ntt_forward(&mut r.data.as_view_mut(), &q_map, limbs)?;
        self.sub_mul_scalar(
            &x.limbs_view(0..limbs),
            &r.data.as_view(),
            &self.p_inv.slice(0..limbs),
            limbs,
        )
    }

    /// Relinearizes a degree-2 ciphertext (key switching of c_2 from s² to s, plus (c_0, c_1)).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `CiphertextDegree` or `KeyLevelTooLow`; [`CudaError::Driver`].
    pub fn relinearize(
        &self,
        ct: &DeviceCiphertext,
        rlk: &DeviceSwitchingKey,
    ) -> Result<DeviceCiphertext, CudaError> {
        if ct.degree() != 2 {
            return Err(CkksError::CiphertextDegree(ct.degree(), 2).into());
        }
        rlk.check(ct.level)?;
        let limbs = ct.level + 1;
        let dec = self.decompose(&ct.parts[2], ct.level)?;
        let (u0, u1) = self.key_switch(&dec, rlk)?;
        let c0 = self.binary(
            Kernel::EwAdd,
            &u0.data.as_view(),
            &ct.parts[0].limbs_view(0..limbs),
            limbs,
        )?;
        let c1 = self.binary(
            Kernel::EwAdd,
            &u1.data.as_view(),
            &ct.parts[1].limbs_view(0..limbs),
            limbs,
        )?;
        Ok(DeviceCiphertext {
            parts: vec![c0, c1],
            level: ct.level,
            scale: ct.scale,
            slots: ct.slots,
        })
    }

    /// Tensor product then relinearization (not rescaled).
    ///
    /// # Errors
    /// As [`Evaluator::mul_no_relin`] and [`Evaluator::relinearize`].
    pub fn mul_relin(
        &self,
        a: &DeviceCiphertext,
        b: &DeviceCiphertext,
        rlk: &DeviceSwitchingKey,
    ) -> Result<DeviceCiphertext, CudaError> {
        rlk.check(a.level)?;
        let t = self.mul_no_relin(a, b)?;
        self.relinearize(&t, rlk)
    }

    /// Decomposes c_1 once for [`Evaluator::rotate_hoisted`].
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `CiphertextDegree`; [`CudaError::Driver`].
    pub fn hoist(&self, ct: &DeviceCiphertext) -> Result<Hoisted, CudaError> {
        if ct.degree() != 1 {
            return Err(CkksError::CiphertextDegree(ct.degree(), 1).into());
        }
        Ok(Hoisted {
            c0: ct.parts[0].copy_limbs(&self.dev, 0..ct.level + 1)?,
            dec: self.decompose(&ct.parts[1], ct.level)?,
            level: ct.level,
            scale: ct.scale,
            slots: ct.slots,
        })
    }

    /// σ_g of a hoisted ciphertext with g's key: (σ_g(u_0 + c_0), σ_g(u_1)).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `KeyLevelTooLow`; [`CudaError::Driver`].
    pub fn rotate_hoisted(
        &self,
        h: &Hoisted,
        key: &DeviceGaloisKey,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.galois(&h.c0, &h.dec, key, (h.level, h.scale, h.slots))
    }

    /// σ_g of `ct` with g's key (one decomposition, as the hoisted path with one element, so
    /// results are bit-identical to [`Evaluator::rotate_hoisted`]).
    ///
    /// # Errors
    /// As [`Evaluator::hoist`] and [`Evaluator::rotate_hoisted`].
    pub fn apply_galois(
        &self,
        ct: &DeviceCiphertext,
        key: &DeviceGaloisKey,
    ) -> Result<DeviceCiphertext, CudaError> {
        if ct.degree() != 1 {
            return Err(CkksError::CiphertextDegree(ct.degree(), 1).into());
        }
        key.key.check(ct.level)?;
        let dec = self.decompose(&ct.parts[1], ct.level)?;
        self.galois(&ct.parts[0], &dec, key, (ct.level, ct.scale, ct.slots))
    }

    fn galois(
        &self,
        c0: &DevicePoly,
        dec: &Decomposed,
        key: &DeviceGaloisKey,
        (level, scale, slots): (usize, f64, usize),
    ) -> Result<DeviceCiphertext, CudaError> {
        let (u0, u1) = self.key_switch(dec, &key.key)?;
        let limbs = level + 1;
        let n = self.n as u32;
        let map = self.q_map(limbs);
        let c0v = c0.limbs_view(0..limbs);
        let mut out0 = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwPermuteAdd));
        l.arg(&mut out0.data)
            .arg(&u0.data)
            .arg(&c0v)
            .arg(&key.perm)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: ew_permute_add(u64*, const u64* in, const u64* add, const u32* perm,
        // const u64*, const u32*, u32); perm has N entries below N.
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        let mut out1 = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwPermute));
        l.arg(&mut out1.data).arg(&u1.data).arg(&key.perm).arg(&n);
        // SAFETY: ew_permute(u64*, const u64*, const u32*, u32).
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(DeviceCiphertext {
            parts: vec![out0, out1],
            level,
            scale,
            slots,
        })
    }
}
