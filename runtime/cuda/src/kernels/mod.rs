//! The CUDA C sources, compiled together at run time with NVRTC (one program: the modular
//! arithmetic header first, then the kernels that use it).

/// The whole program: `modarith.cuh` then every kernel file.
pub const SOURCE: &str = concat!(
    include_str!("modarith.cuh"),
    "\n",
    include_str!("elementwise.cu"),
    "\n",
    include_str!("ntt.cu"),
    "\n",
    include_str!("basis.cu"),
    "\n",
    include_str!("keyswitch.cu"),
);

/// The kernels of [`SOURCE`] (`extern "C"` names by [`Kernel::name`]), loaded once per device and
/// indexed by discriminant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kernel {
    EwAdd,
    EwSub,
    EwNeg,
    EwMul,
    EwTensor,
    EwAddScalar,
    EwMulScalar,
    EwSubMulScalar,
    EwLiftCentered,
    EwPermute,
    EwPermuteAdd,
    NttFwdGlobal,
    NttFwdShared,
    NttInvShared,
    NttInvGlobal,
    NttScale,
    ConvPrepare,
    ConvApply,
    KsInner,
}

impl Kernel {
    /// Every kernel, in discriminant order.
    pub const ALL: [Kernel; 19] = [
        Kernel::EwAdd,
        Kernel::EwSub,
        Kernel::EwNeg,
        Kernel::EwMul,
        Kernel::EwTensor,
        Kernel::EwAddScalar,
        Kernel::EwMulScalar,
        Kernel::EwSubMulScalar,
        Kernel::EwLiftCentered,
        Kernel::EwPermute,
        Kernel::EwPermuteAdd,
        Kernel::NttFwdGlobal,
        Kernel::NttFwdShared,
        Kernel::NttInvShared,
        Kernel::NttInvGlobal,
        Kernel::NttScale,
        Kernel::ConvPrepare,
        Kernel::ConvApply,
        Kernel::KsInner,
    ];

    /// The kernel's `extern "C"` name in [`SOURCE`].
    pub fn name(self) -> &'static str {
        match self {
            Kernel::EwAdd => "ew_add",
            Kernel::EwSub => "ew_sub",
            Kernel::EwNeg => "ew_neg",
            Kernel::EwMul => "ew_mul",
            Kernel::EwTensor => "ew_tensor",
            Kernel::EwAddScalar => "ew_add_scalar",
            Kernel::EwMulScalar => "ew_mul_scalar",
            Kernel::EwSubMulScalar => "ew_sub_mul_scalar",
            Kernel::EwLiftCentered => "ew_lift_centered",
            Kernel::EwPermute => "ew_permute",
            Kernel::EwPermuteAdd => "ew_permute_add",
            Kernel::NttFwdGlobal => "ntt_fwd_global",
            Kernel::NttFwdShared => "ntt_fwd_shared",
            Kernel::NttInvShared => "ntt_inv_shared",
            Kernel::NttInvGlobal => "ntt_inv_global",
            Kernel::NttScale => "ntt_scale",
            Kernel::ConvPrepare => "conv_prepare",
            Kernel::ConvApply => "conv_apply",
            Kernel::KsInner => "ks_inner",
        }
    }
}
