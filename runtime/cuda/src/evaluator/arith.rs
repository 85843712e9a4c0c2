//! Addition, subtraction, negation (ct-ct, ct-pt, ct-const), ct-pt multiplication, the ct-ct
//! tensor product, rescale and level-down on the device, with `cachemir-ckks`'s checks and scale
//! bookkeeping (`ops/arith.rs`).

use cachemir_ckks::CkksError;
use cudarc::driver::PushKernelArg;

use super::{DeviceCiphertext, DevicePlaintext, Evaluator};
use crate::device::{config, driver};
use crate::error::CudaError;
use crate::geometry::per_coefficient;
use crate::kernels::Kernel;
use crate::poly::DevicePoly;

/// Relative tolerance for scale equality (as `cachemir-ckks`).
const SCALE_TOLERANCE: f64 = 1e-9;

fn same_scale(a: f64, b: f64) -> bool {
    ((a / b) - 1.0).abs() < SCALE_TOLERANCE
}

impl Evaluator {
    fn check_pair(&self, a: &DeviceCiphertext, b: &DeviceCiphertext) -> Result<(), CudaError> {
        if a.level != b.level {
            return Err(CkksError::LevelMismatch(a.level, b.level).into());
        }
        if a.slots != b.slots {
            return Err(
                CkksError::InvalidSlots(format!("{} vs {} slots", a.slots, b.slots)).into(),
            );
        }
        if a.parts.len() != b.parts.len() {
            return Err(CudaError::Mismatch(format!(
                "ciphertexts of degree {} and {}",
                a.degree(),
                b.degree()
            )));
        }
        Ok(())
    }

    fn check_plain(&self, ct: &DeviceCiphertext, pt: &DevicePlaintext) -> Result<(), CudaError> {
        if pt.level < ct.level {
            return Err(CkksError::LevelMismatch(ct.level, pt.level).into());
        }
        if pt.slots != ct.slots {
            return Err(
                CkksError::InvalidSlots(format!("{} vs {} slots", ct.slots, pt.slots)).into(),
            );
        }
        Ok(())
    }

    fn same_meta(&self, ct: &DeviceCiphertext, parts: Vec<DevicePoly>) -> DeviceCiphertext {
        DeviceCiphertext {
            parts,
            level: ct.level,
            scale: ct.scale,
            slots: ct.slots,
        }
    }

    fn add_sub(
        &self,
        a: &DeviceCiphertext,
        b: &DeviceCiphertext,
        kernel: Kernel,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.check_pair(a, b)?;
        if !same_scale(a.scale, b.scale) {
            return Err(CkksError::ScaleMismatch(a.scale.log2(), b.scale.log2()).into());
        }
        let limbs = a.level + 1;
        let parts = a
            .parts
            .iter()
            .zip(&b.parts)
            .map(|(x, y)| {
                self.binary(
                    kernel,
                    &x.limbs_view(0..limbs),
                    &y.limbs_view(0..limbs),
                    limbs,
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.same_meta(a, parts))
    }

    /// a + b (same level, scale, slots and degree).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `LevelMismatch`, `ScaleMismatch` or `InvalidSlots`;
    /// [`CudaError::Mismatch`] for different degrees; [`CudaError::Driver`].
    pub fn add(
        &self,
        a: &DeviceCiphertext,
        b: &DeviceCiphertext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.add_sub(a, b, Kernel::EwAdd)
    }

    /// a − b (as [`Evaluator::add`]).
    ///
    /// # Errors
    /// As [`Evaluator::add`].
    pub fn sub(
        &self,
        a: &DeviceCiphertext,
        b: &DeviceCiphertext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.add_sub(a, b, Kernel::EwSub)
    }

    /// −a.
    ///
    /// # Errors
    /// [`CudaError::Driver`].
    pub fn negate(&self, a: &DeviceCiphertext) -> Result<DeviceCiphertext, CudaError> {
        let limbs = a.level + 1;
        let parts = a
            .parts
            .iter()
            .map(|p| self.negate_poly(&p.limbs_view(0..limbs), limbs))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self.same_meta(a, parts))
    }

    fn add_sub_plain(
        &self,
        ct: &DeviceCiphertext,
        pt: &DevicePlaintext,
        kernel: Kernel,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.check_plain(ct, pt)?;
        if !same_scale(ct.scale, pt.scale) {
            return Err(CkksError::ScaleMismatch(ct.scale.log2(), pt.scale.log2()).into());
        }
        let limbs = ct.level + 1;
        let mut parts = Vec::with_capacity(ct.parts.len());
        parts.push(self.binary(
            kernel,
            &ct.parts[0].limbs_view(0..limbs),
            &pt.poly.limbs_view(0..limbs),
            limbs,
        )?);
        for p in &ct.parts[1..] {
            parts.push(p.copy_limbs(&self.dev, 0..limbs)?);
        }
        Ok(self.same_meta(ct, parts))
    }

    /// ct + pt (pt at a level ≥ ct's, same scale).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `LevelMismatch`, `ScaleMismatch` or `InvalidSlots`;
    /// [`CudaError::Driver`].
    pub fn add_plain(
        &self,
        ct: &DeviceCiphertext,
        pt: &DevicePlaintext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.add_sub_plain(ct, pt, Kernel::EwAdd)
    }

    /// ct − pt (as [`Evaluator::add_plain`]).
    ///
    /// # Errors
    /// As [`Evaluator::add_plain`].
    pub fn sub_plain(
        &self,
        ct: &DeviceCiphertext,
        pt: &DevicePlaintext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.add_sub_plain(ct, pt, Kernel::EwSub)
    }

    /// ct · pt; the result's scale is the product of the scales (not rescaled).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `LevelMismatch` or `InvalidSlots`; [`CudaError::Driver`].
    pub fn mul_plain(
        &self,
        ct: &DeviceCiphertext,
        pt: &DevicePlaintext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.check_plain(ct, pt)?;
        let limbs = ct.level + 1;
        let m = pt.poly.limbs_view(0..limbs);
        let parts = ct
            .parts
            .iter()
            .map(|p| self.binary(Kernel::EwMul, &p.limbs_view(0..limbs), &m, limbs))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = self.same_meta(ct, parts);
        out.scale = ct.scale * pt.scale;
        Ok(out)
    }

    /// round(c·scale) as residues mod q_0 … q_ℓ (`cachemir-ckks`'s `const_residues`).
    fn const_residues(&self, c: f64, scale: f64, level: usize) -> Result<Vec<u64>, CudaError> {
        let v = (c * scale).round();
        if !v.is_finite() || v.abs() >= 1.7e38 {
            return Err(CkksError::Overflow(format!(
                "constant {c} at scale 2^{:.1}",
                scale.log2()
            ))
            .into());
        }
        let v = v as i128;
        Ok(self.host_moduli[..=level]
            .iter()
            .map(|m| m.reduce_i128(v))
            .collect())
    }

    /// ct + c in every slot, at the ciphertext's scale.
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `Overflow` for a constant beyond 2^127; [`CudaError::Driver`].
    pub fn add_const(&self, ct: &DeviceCiphertext, c: f64) -> Result<DeviceCiphertext, CudaError> {
        let r = self.const_residues(c, ct.scale, ct.level)?;
        let limbs = ct.level + 1;
        let mut parts =
            vec![self.with_scalars(Kernel::EwAddScalar, &ct.parts[0].limbs_view(0..limbs), &r)?];
        for p in &ct.parts[1..] {
            parts.push(p.copy_limbs(&self.dev, 0..limbs)?);
        }
        Ok(self.same_meta(ct, parts))
    }

    fn times_residues(
        &self,
        ct: &DeviceCiphertext,
        r: &[u64],
    ) -> Result<Vec<DevicePoly>, CudaError> {
        let limbs = ct.level + 1;
        ct.parts
            .iter()
            .map(|p| self.with_scalars(Kernel::EwMulScalar, &p.limbs_view(0..limbs), r))
            .collect()
    }

    /// ct · c with c encoded at `const_scale` (the result's scale is ct.scale·const_scale).
    ///
    /// # Errors
    /// As [`Evaluator::add_const`].
    pub fn mul_const(
        &self,
        ct: &DeviceCiphertext,
        c: f64,
        const_scale: f64,
    ) -> Result<DeviceCiphertext, CudaError> {
        let r = self.const_residues(c, const_scale, ct.level)?;
        let mut out = self.same_meta(ct, self.times_residues(ct, &r)?);
        out.scale = ct.scale * const_scale;
        Ok(out)
    }

    /// ct · k for an integer k (scale unchanged).
    ///
    /// # Errors
    /// As [`Evaluator::add_const`].
    pub fn mul_integer(
        &self,
        ct: &DeviceCiphertext,
        k: i64,
    ) -> Result<DeviceCiphertext, CudaError> {
        let r = self.const_residues(k as f64, 1.0, ct.level)?;
        Ok(self.same_meta(ct, self.times_residues(ct, &r)?))
    }

    /// Tensor product of two degree-1 ciphertexts (degree 2, scale the product of the scales).
    ///
    /// # Errors
    /// As [`Evaluator::add`], and [`CudaError::Ckks`] with `CiphertextDegree` for degree ≠ 1.
    pub fn mul_no_relin(
        &self,
        a: &DeviceCiphertext,
        b: &DeviceCiphertext,
    ) -> Result<DeviceCiphertext, CudaError> {
        self.check_pair(a, b)?;
        if a.degree() != 1 {
            return Err(CkksError::CiphertextDegree(a.degree(), 1).into());
        }
        let limbs = a.level + 1;
        let mut d: Vec<DevicePoly> = (0..3)
            .map(|_| DevicePoly::uninit(&self.dev, self.n, limbs))
            .collect::<Result<_, _>>()?;
        let (a0, a1) = (
            a.parts[0].limbs_view(0..limbs),
            a.parts[1].limbs_view(0..limbs),
        );
        let (b0, b1) = (
            b.parts[0].limbs_view(0..limbs),
            b.parts[1].limbs_view(0..limbs),
        );
        let map = self.q_map(limbs);
        let n = self.n as u32;
        let [d0, d1, d2] = &mut d[..] else {
            unreachable!("three parts")
        };
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwTensor));
        l.arg(&mut d0.data)
            .arg(&mut d1.data)
            .arg(&mut d2.data)
            .arg(&a0)
            .arg(&a1)
            .arg(&b0)
            .arg(&b1)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: ew_tensor(u64* ×3, const u64* ×4, const u64*, const u32*, u32); all operands
        // hold `limbs` limbs.
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(DeviceCiphertext {
            parts: d,
            level: a.level,
            scale: a.scale * b.scale,
            slots: a.slots,
        })
    }

    /// Rescale: divides by q_ℓ with rounding, ℓ → ℓ − 1, scale / q_ℓ.
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `LevelTooLow` at level 0; [`CudaError::Driver`].
    pub fn rescale(&self, ct: &DeviceCiphertext) -> Result<DeviceCiphertext, CudaError> {
        let l = ct.level;
        let Some(Some(inv)) = self.rescale_inv.get(l) else {
            return Err(CkksError::LevelTooLow {
                needed: 1,
                level: l,
            }
            .into());
        };
        let parts = ct
            .parts
            .iter()
            .map(|p| self.rescale_poly(p, l, &inv.as_view()))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DeviceCiphertext {
            parts,
            level: l - 1,
            scale: ct.scale / self.host_moduli[l].value() as f64,
            slots: ct.slots,
        })
    }

    /// (x − \[x\]_{q_ℓ}) / q_ℓ over q_0 … q_{ℓ−1}, \[·\] centered: the top limb to coefficient
    /// form, its centered lift into the other limbs (`ew_lift_centered`), their NTT, then
    /// (x_i − t_i)·q_ℓ^{−1}.
    fn rescale_poly(
        &self,
        p: &DevicePoly,
        l: usize,
        inv: &cudarc::driver::CudaView<'_, u64>,
    ) -> Result<DevicePoly, CudaError> {
        let mut top = p.copy_limbs(&self.dev, l..l + 1)?;
        let top_map = self.all_idx.slice(l..l + 1);
        self.ntt_inverse(&mut top.data.as_view_mut(), &top_map, 1)?;
        let mut t = DevicePoly::uninit(&self.dev, self.n, l)?;
        let map = self.q_map(l);
        let (n, src) = (self.n as u32, l as u32);
        let mut b = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwLiftCentered));
        b.arg(&mut t.data)
            .arg(&top.data)
            .arg(&src)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: ew_lift_centered(u64*, const u64* top (one limb), u32, const u64*, const u32*,
        // u32); `t` holds ℓ limbs.
        unsafe { b.launch(config(per_coefficient(self.n, l))) }.map_err(driver)?;
        self.ntt_forward(&mut t.data.as_view_mut(), &map, l)?;
        self.sub_mul_scalar(&p.limbs_view(0..l), &t.data.as_view(), inv, l)
    }

    /// Drops limbs down to `level` (scale unchanged).
    ///
    /// # Errors
    /// [`CudaError::Ckks`] with `LevelTooLow` when `level` is above the ciphertext's;
    /// [`CudaError::Driver`].
    pub fn level_down(
        &self,
        ct: &DeviceCiphertext,
        level: usize,
    ) -> Result<DeviceCiphertext, CudaError> {
        if level > ct.level {
            return Err(CkksError::LevelTooLow {
                needed: level,
                level: ct.level,
            }
            .into());
        }
        let parts = ct
            .parts
            .iter()
            .map(|p| p.copy_limbs(&self.dev, 0..level + 1))
            .collect::<Result<Vec<_>, _>>()?;
        let mut out = self.same_meta(ct, parts);
        out.level = level;
        Ok(out)
    }
}
