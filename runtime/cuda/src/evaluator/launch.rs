//! Kernel launches on device polynomials: batched NTTs, element-wise operations and basis
//! conversion. Each function states the kernel it launches; the argument lists follow the kernel
//! signatures in `src/kernels/` exactly (the safety condition of every launch).

use cudarc::driver::{CudaSlice, CudaView, CudaViewMut, PushKernelArg};

use super::{DeviceConversion, Evaluator};
use crate::device::{config, driver};
use crate::error::CudaError;
use crate::geometry::per_coefficient;
use crate::kernels::Kernel;
use crate::poly::DevicePoly;

impl Evaluator {
    /// Forward NTT, in place, of the `limbs` limbs of `data` (limb i modulo `limb_mod[i]`):
    /// `ntt_fwd_global` per global stage, then `ntt_fwd_shared`.
    pub(crate) fn ntt_forward(
        &self,
        data: &mut CudaViewMut<'_, u64>,
        limb_mod: &CudaView<'_, u32>,
        limbs: usize,
    ) -> Result<(), CudaError> {
        let twiddles = (&self.psi, &self.psi_shoup);
        for groups in self.geo.global_stages() {
            self.ntt_global_stage(
                Kernel::NttFwdGlobal,
                data,
                twiddles,
                limb_mod,
                limbs,
                groups,
            )?;
        }
        self.ntt_shared_stages(Kernel::NttFwdShared, data, twiddles, limb_mod, limbs)
    }

    /// Inverse NTT (with N^{−1}), in place: `ntt_inv_shared`, `ntt_inv_global` per global stage
    /// in reverse, `ntt_scale`.
    pub(crate) fn ntt_inverse(
        &self,
        data: &mut CudaViewMut<'_, u64>,
        limb_mod: &CudaView<'_, u32>,
        limbs: usize,
    ) -> Result<(), CudaError> {
        let twiddles = (&self.ipsi, &self.ipsi_shoup);
        self.ntt_shared_stages(Kernel::NttInvShared, data, twiddles, limb_mod, limbs)?;
        for groups in self.geo.global_stages().into_iter().rev() {
            self.ntt_global_stage(
                Kernel::NttInvGlobal,
                data,
                twiddles,
                limb_mod,
                limbs,
                groups,
            )?;
        }
        let n = self.n as u32;
        let f = self.dev.function(Kernel::NttScale);
        let mut b = self.dev.stream().launch_builder(f);
        b.arg(&mut *data)
            .arg(&self.n_inv)
            .arg(&self.n_inv_shoup)
            .arg(&self.moduli)
            .arg(limb_mod)
            .arg(&n);
        // SAFETY: ntt_scale(u64*, const u64* ×3, const u32*, u32), one thread per residue.
        unsafe { b.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(())
    }

    /// One global-memory NTT stage of `groups` butterfly groups (`ntt_fwd_global` or
    /// `ntt_inv_global`) with the twiddle table and its Shoup companions `twiddles`.
    fn ntt_global_stage(
        &self,
        kernel: Kernel,
        data: &mut CudaViewMut<'_, u64>,
        twiddles: (&CudaSlice<u64>, &CudaSlice<u64>),
        limb_mod: &CudaView<'_, u32>,
        limbs: usize,
        groups: u32,
    ) -> Result<(), CudaError> {
        let n = self.n as u32;
        let log_t = self.geo.log_n - 1 - groups.trailing_zeros();
        let mut b = self.dev.stream().launch_builder(self.dev.function(kernel));
        b.arg(&mut *data)
            .arg(twiddles.0)
            .arg(twiddles.1)
            .arg(&self.moduli)
            .arg(limb_mod)
            .arg(&n)
            .arg(&groups)
            .arg(&log_t);
        // SAFETY: ntt_{fwd,inv}_global(u64*, const u64* ×3, const u32*, u32, u32, u32); `data`
        // holds `limbs` limbs of N and the twiddle tables every modulus index of `limb_mod`.
        unsafe { b.launch(config(self.geo.global_launch(limbs))) }.map_err(driver)?;
        Ok(())
    }

    /// The shared-memory NTT stages (`ntt_fwd_shared` or `ntt_inv_shared`), from the first
    /// group count the global stages leave.
    fn ntt_shared_stages(
        &self,
        kernel: Kernel,
        data: &mut CudaViewMut<'_, u64>,
        twiddles: (&CudaSlice<u64>, &CudaSlice<u64>),
        limb_mod: &CudaView<'_, u32>,
        limbs: usize,
    ) -> Result<(), CudaError> {
        let n = self.n as u32;
        let first = self.geo.first_shared_groups() as u32;
        let mut b = self.dev.stream().launch_builder(self.dev.function(kernel));
        b.arg(&mut *data)
            .arg(twiddles.0)
            .arg(twiddles.1)
            .arg(&self.moduli)
            .arg(limb_mod)
            .arg(&n)
            .arg(&first);
        // SAFETY: ntt_{fwd,inv}_shared(u64*, const u64* ×3, const u32*, u32, u32), 2T words of
        // dynamic shared memory per block of T threads (the launch shape).
        unsafe { b.launch(config(self.geo.shared_launch(limbs))) }.map_err(driver)?;
        Ok(())
    }

    /// out = op(a, b) over the first `limbs` limbs of Q (`ew_add`, `ew_sub`, `ew_mul`).
    pub(crate) fn binary(
        &self,
        kernel: Kernel,
        a: &CudaView<'_, u64>,
        b: &CudaView<'_, u64>,
        limbs: usize,
    ) -> Result<DevicePoly, CudaError> {
        let mut out = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let map = self.q_map(limbs);
        let n = self.n as u32;
        let mut l = self.dev.stream().launch_builder(self.dev.function(kernel));
        l.arg(&mut out.data)
            .arg(a)
            .arg(b)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: (u64* out, const u64* a, const u64* b, const u64* moduli, const u32*, u32 n);
        // a, b and out hold `limbs` limbs.
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(out)
    }

    /// out = −a (`ew_neg`).
    pub(crate) fn negate_poly(
        &self,
        a: &CudaView<'_, u64>,
        limbs: usize,
    ) -> Result<DevicePoly, CudaError> {
        let mut out = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let map = self.q_map(limbs);
        let n = self.n as u32;
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwNeg));
        l.arg(&mut out.data)
            .arg(a)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: ew_neg(u64*, const u64*, const u64*, const u32*, u32).
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(out)
    }

    /// out = op(a, c_limb) with per-limb constants (`ew_add_scalar`, `ew_mul_scalar`).
    pub(crate) fn with_scalars(
        &self,
        kernel: Kernel,
        a: &CudaView<'_, u64>,
        scalars: &[u64],
    ) -> Result<DevicePoly, CudaError> {
        let limbs = scalars.len();
        let consts = self.dev.stream().clone_htod(scalars).map_err(driver)?;
        let mut out = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let map = self.q_map(limbs);
        let n = self.n as u32;
        let mut l = self.dev.stream().launch_builder(self.dev.function(kernel));
        l.arg(&mut out.data)
            .arg(a)
            .arg(&consts)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: (u64*, const u64* a, const u64* scalars, const u64*, const u32*, u32); one
        // scalar per limb.
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(out)
    }

    /// out = (x − r)·c_limb (`ew_sub_mul_scalar`) with device constants `scalars` (≥ limbs).
    pub(crate) fn sub_mul_scalar(
        &self,
        x: &CudaView<'_, u64>,
        r: &CudaView<'_, u64>,
        scalars: &CudaView<'_, u64>,
        limbs: usize,
    ) -> Result<DevicePoly, CudaError> {
        let mut out = DevicePoly::uninit(&self.dev, self.n, limbs)?;
        let map = self.q_map(limbs);
        let n = self.n as u32;
        let mut l = self
            .dev
            .stream()
            .launch_builder(self.dev.function(Kernel::EwSubMulScalar));
        l.arg(&mut out.data)
            .arg(x)
            .arg(r)
            .arg(scalars)
            .arg(&self.moduli)
            .arg(&map)
            .arg(&n);
        // SAFETY: ew_sub_mul_scalar(u64*, const u64* x, const u64* r, const u64* scalars,
        // const u64*, const u32*, u32).
        unsafe { l.launch(config(per_coefficient(self.n, limbs))) }.map_err(driver)?;
        Ok(out)
    }

    /// Basis conversion of the coefficient-form `input` (`conv.sources` limbs) into `targets`
    /// target limbs of `out` at `conv.positions` (`conv_prepare` then `conv_apply`).
    pub(crate) fn convert(
        &self,
        conv: &DeviceConversion,
        input: &CudaView<'_, u64>,
        out: &mut CudaViewMut<'_, u64>,
        targets: usize,
    ) -> Result<(), CudaError> {
        let s = self.dev.stream();
        let nb = conv.sources as u32;
        let n = self.n as u32;
        // SAFETY: both scratch buffers are fully written by conv_prepare before conv_apply reads.
        let mut y = unsafe { s.alloc::<u64>(self.n * conv.sources) }.map_err(driver)?;
        let mut v = unsafe { s.alloc::<u64>(self.n) }.map_err(driver)?;
        let mut l = s.launch_builder(self.dev.function(Kernel::ConvPrepare));
        l.arg(&mut y)
            .arg(&mut v)
            .arg(input)
            .arg(&conv.from)
            .arg(&conv.hat_inv)
            .arg(&conv.hat_inv_shoup)
            .arg(&conv.inv_from)
            .arg(&self.moduli)
            .arg(&n)
            .arg(&nb);
        // SAFETY: conv_prepare(u64* y, u64* v, const u64* x, const u32*, const u64* ×2,
        // const double*, const u64*, u32 n, u32 nb), one thread per coefficient.
        unsafe { l.launch(config(per_coefficient(self.n, 1))) }.map_err(driver)?;
        let mut l = s.launch_builder(self.dev.function(Kernel::ConvApply));
        l.arg(&mut *out)
            .arg(&conv.positions)
            .arg(&y)
            .arg(&v)
            .arg(&conv.to)
            .arg(&conv.hat_mod_to)
            .arg(&conv.neg_b_mod_to)
            .arg(&self.moduli)
            .arg(&n)
            .arg(&nb);
        // SAFETY: conv_apply(u64* out, const u32* positions, const u64* y, const u64* v,
        // const u32* to, const u64* ×3, u32 n, u32 nb); grid.y = targets ≤ the table's targets,
        // and every position lies inside `out`.
        unsafe { l.launch(config(per_coefficient(self.n, targets))) }.map_err(driver)?;
        Ok(())
    }
}
