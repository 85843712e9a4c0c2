//! The device: probing (never panicking where CUDA is absent), NVRTC compilation of the kernels,
//! one stream on which every launch and copy is ordered.
//!
//! `cudarc` loads `libcuda` and `libnvrtc` at run time and panics when a call reaches a library
//! that is not there, so [`CudaDevice::new`] checks both libraries first and reports
//! [`CudaError::Unavailable`] instead.

use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaStream, DriverError, LaunchConfig};
use cudarc::nvrtc::{CompileOptions, Ptx, compile_ptx_with_opts};

use crate::error::CudaError;
use crate::geometry::LaunchShape;
use crate::kernels::{Kernel, SOURCE};

/// One GPU with the compiled kernels and the stream they run on.
pub struct CudaDevice {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    functions: Vec<CudaFunction>,
    name: String,
    compute_capability: (i32, i32),
}

impl std::fmt::Debug for CudaDevice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CudaDevice")
            .field("name", &self.name)
            .field("ordinal", &self.ctx.ordinal())
            .field("compute_capability", &self.compute_capability)
            .finish()
    }
}

/// A driver error as [`CudaError::Driver`].
pub(crate) fn driver(e: DriverError) -> CudaError {
    CudaError::Driver(e.to_string())
}

/// A [`LaunchShape`] as the driver's launch configuration.
pub(crate) fn config(shape: LaunchShape) -> LaunchConfig {
    LaunchConfig {
        grid_dim: shape.grid,
        block_dim: shape.block,
        shared_mem_bytes: shape.shared_bytes,
    }
}

/// Whether the NVRTC library can be loaded here (no device needed).
pub fn nvrtc_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

/// Whether the CUDA driver library can be loaded here.
pub fn driver_present() -> bool {
    // SAFETY: only tries to open the library by its candidate names.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Compiles the kernel program to PTX for `arch` (e.g. `compute_90`; NVRTC's default when
/// `None`), with fused multiply-adds off so that floating-point steps round as on the CPU.
///
/// # Errors
/// [`CudaError::Unavailable`] without NVRTC or when the program does not compile (the log is in
/// the message).
pub fn compile_kernels(arch: Option<&str>) -> Result<Ptx, CudaError> {
    if !nvrtc_present() {
        return Err(CudaError::Unavailable(
            "the NVRTC library (libnvrtc) is not installed or not on the library path".into(),
        ));
    }
    let mut options = vec!["--std=c++14".to_string()];
    if let Some(arch) = arch {
        options.push(format!("--gpu-architecture={arch}"));
    }
    let opts = CompileOptions {
        fmad: Some(false),
        options,
        name: Some("cachemir_ckks.cu".into()),
        ..Default::default()
    };
    compile_ptx_with_opts(SOURCE, opts).map_err(|e| match e {
        cudarc::nvrtc::CompileError::CompileError { log, .. } => CudaError::Unavailable(format!(
            "the kernels do not compile with NVRTC: {}",
            log.to_string_lossy()
        )),
        other => CudaError::Unavailable(format!("NVRTC: {other}")),
    })
}

impl CudaDevice {
    /// Opens GPU `ordinal`, compiles the kernels for its architecture and loads them.
    ///
    /// # Errors
    /// [`CudaError::Unavailable`] when the driver or NVRTC library is missing, there is no such
    /// device, or the kernels do not compile or load (e.g. a PTX newer than the driver).
    pub fn new(ordinal: usize) -> Result<Self, CudaError> {
        if !driver_present() {
            return Err(CudaError::Unavailable(
                "the CUDA driver library (libcuda) is not installed".into(),
            ));
        }
        let unavailable =
            |what: &str, e: DriverError| CudaError::Unavailable(format!("{what}: {e}"));
        let count = CudaContext::device_count().map_err(|e| unavailable("no CUDA device", e))?;
        if count <= ordinal as i32 {
            return Err(CudaError::Unavailable(format!(
                "no CUDA device {ordinal} ({count} present)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| unavailable("CUDA context", e))?;
        // One stream orders everything, so the per-buffer events cudarc records are not needed.
        // SAFETY: called before any allocation; this crate uses a single stream per device.
        unsafe { ctx.disable_event_tracking() };
        let compute_capability = ctx.compute_capability().map_err(driver)?;
        let name = ctx.name().map_err(driver)?;
        let arch = format!("compute_{}{}", compute_capability.0, compute_capability.1);
        let ptx = compile_kernels(Some(&arch))?;
        let module = ctx
            .load_module(ptx)
            .map_err(|e| unavailable("loading the kernels (driver older than NVRTC?)", e))?;
        let functions = Kernel::ALL
            .iter()
            .map(|k| module.load_function(k.name()).map_err(driver))
            .collect::<Result<Vec<_>, _>>()?;
        let stream = ctx.default_stream();
        Ok(CudaDevice {
            ctx,
            stream,
            functions,
            name,
            compute_capability,
        })
    }

    /// The device's name (e.g. "NVIDIA H100 80GB HBM3").
    pub fn name(&self) -> &str {
        &self.name
    }

    /// (major, minor) compute capability.
    pub fn compute_capability(&self) -> (i32, i32) {
        self.compute_capability
    }

    /// (free, total) device memory, bytes.
    ///
    /// # Errors
    /// [`CudaError::Driver`].
    pub fn memory(&self) -> Result<(usize, usize), CudaError> {
        self.ctx.mem_get_info().map_err(driver)
    }

    /// Waits for all queued work (for timings; copies to the host wait by themselves).
    ///
    /// # Errors
    /// [`CudaError::Driver`], e.g. a kernel that failed asynchronously.
    pub fn synchronize(&self) -> Result<(), CudaError> {
        self.stream.synchronize().map_err(driver)
    }

    pub(crate) fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    pub(crate) fn function(&self, k: Kernel) -> &CudaFunction {
        &self.functions[k as usize]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Where NVRTC is installed (even without a GPU or driver), the kernel program compiles
    /// and defines every kernel the device loads.
    #[test]
    fn kernels_compile_with_nvrtc_where_present() {
        if !nvrtc_present() {
            eprintln!("no NVRTC library: skipped");
            return;
        }
        let ptx = compile_kernels(Some("compute_90")).unwrap_or_else(|e| panic!("{e}"));
        let text = ptx.to_src();
        for k in Kernel::ALL {
            assert!(
                text.contains(&format!(".entry {}(", k.name())),
                "{} missing from the PTX",
                k.name()
            );
        }
    }

    #[test]
    fn probing_never_panics() {
        match CudaDevice::new(0) {
            Ok(dev) => eprintln!("device: {dev:?}"),
            Err(e) => {
                assert!(matches!(e, CudaError::Unavailable(_)), "{e}");
                eprintln!("no CUDA device: skipped ({e})");
            }
        }
    }
}
