//! Shared by the GPU tests: the device probe that skips a test where there is none.

use std::sync::Arc;

use cachemir_cuda::CudaDevice;

/// GPU 0, or `None` after printing why the test is skipped (no driver, no NVRTC, no device).
pub fn device() -> Option<Arc<CudaDevice>> {
    match CudaDevice::new(0) {
        Ok(dev) => {
            eprintln!(
                "device: {} (sm_{}{})",
                dev.name(),
                dev.compute_capability().0,
                dev.compute_capability().1
            );
            Some(Arc::new(dev))
        }
        Err(e) => {
            eprintln!("no CUDA device: skipped ({e})");
            None
        }
    }
}
