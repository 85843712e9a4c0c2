//! Device-resident RNS polynomials: `limbs × N` residues, limb-major, in one device buffer (the
//! layout of [`RnsPoly`]), with upload and download.

use cachemir_ckks::ring::poly::RnsPoly;
use cudarc::driver::{CudaSlice, CudaView, CudaViewMut};

use crate::device::{CudaDevice, driver};
use crate::error::CudaError;

/// An RNS polynomial in device memory. Which prime each limb belongs to is fixed by the caller,
/// as for [`RnsPoly`].
pub struct DevicePoly {
    pub(crate) data: CudaSlice<u64>,
    n: usize,
    limbs: usize,
}

impl std::fmt::Debug for DevicePoly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DevicePoly(N = {}, {} limbs)", self.n, self.limbs)
    }
}

impl DevicePoly {
    /// Copies `p` to the device.
    ///
    /// # Errors
    /// [`CudaError::Driver`] (out of device memory).
    pub fn upload(dev: &CudaDevice, p: &RnsPoly) -> Result<Self, CudaError> {
        let data = dev.stream().clone_htod(p.data()).map_err(driver)?;
        Ok(DevicePoly {
            data,
            n: p.n(),
            limbs: p.num_limbs(),
        })
    }

    /// Copies the polynomial back to the host.
    ///
    /// # Errors
    /// [`CudaError::Driver`], including failures of queued kernels.
    pub fn download(&self, dev: &CudaDevice) -> Result<RnsPoly, CudaError> {
        let data = dev.stream().clone_dtoh(&self.data).map_err(driver)?;
        dev.synchronize()?;
        Ok(RnsPoly::from_data(self.n, data))
    }

    /// A polynomial whose residues the caller's kernels will all write.
    pub(crate) fn uninit(dev: &CudaDevice, n: usize, limbs: usize) -> Result<Self, CudaError> {
        // SAFETY: every caller launches kernels that write all `limbs × n` residues before any read.
        let data = unsafe { dev.stream().alloc::<u64>(n * limbs) }.map_err(driver)?;
        Ok(DevicePoly { data, n, limbs })
    }

    /// A copy of limbs `range` (e.g. the first ℓ + 1: level-down).
    pub(crate) fn copy_limbs(
        &self,
        dev: &CudaDevice,
        range: std::ops::Range<usize>,
    ) -> Result<Self, CudaError> {
        let mut out = Self::uninit(dev, self.n, range.len())?;
        dev.stream()
            .memcpy_dtod(&self.limbs_view(range), &mut out.data)
            .map_err(driver)?;
        Ok(out)
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Number of limbs.
    pub fn limbs(&self) -> usize {
        self.limbs
    }

    /// Limbs `range` as a device view.
    pub(crate) fn limbs_view(&self, range: std::ops::Range<usize>) -> CudaView<'_, u64> {
        self.data.slice(range.start * self.n..range.end * self.n)
    }

    /// Limbs `range` as a mutable device view.
    pub(crate) fn limbs_view_mut(&mut self, range: std::ops::Range<usize>) -> CudaViewMut<'_, u64> {
        let n = self.n;
        self.data.slice_mut(range.start * n..range.end * n)
    }
}
