// Batched negacyclic NTT over RNS limbs (grid.y = limb), bit-reversed output order as
// cachemir-ckks's: index i holds a(ψ^{2·bitrev(i)+1}). Forward: Cooley–Tukey with
// psi_rev[k] = ψ^{bitrev(k)}; inverse: Gentleman–Sande with ψ^{-bitrev(k)}, then N^{-1}.
// Stages with butterfly half-distance t > T run one launch each over global memory
// (ntt_*_global); the remaining ones run in one launch with 2T residues per block in shared
// memory (ntt_*_shared, T = blockDim.x). `geometry.rs` models this schedule on the host.
// Twiddle tables are [modulus][N] with Shoup constants alongside.

extern "C" __global__ void ntt_fwd_global(u64* a, const u64* psi, const u64* psi_shoup,
                                          const u64* moduli, const u32* limb_mod, u32 n,
                                          u32 groups, u32 log_t) {
    const u32 b = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 mi = limb_mod[blockIdx.y];
    const u64 q = moduli[3 * mi];
    u64* x = a + (u64)blockIdx.y * n;
    const u32 t = 1u << log_t;
    const u32 i = b >> log_t;
    const u32 j1 = 2 * i * t + (b & (t - 1));
    const u64 tk = (u64)mi * n + groups + i;
    u64 u = x[j1];
    u64 v = mul_shoup(x[j1 + t], psi[tk], psi_shoup[tk], q);
    x[j1] = add_mod(u, v, q);
    x[j1 + t] = sub_mod(u, v, q);
}

extern "C" __global__ void ntt_fwd_shared(u64* a, const u64* psi, const u64* psi_shoup,
                                          const u64* moduli, const u32* limb_mod, u32 n,
                                          u32 first_groups) {
    extern __shared__ u64 sh[];
    const u32 tt = blockDim.x;
    const u32 th = threadIdx.x;
    const u32 blk = blockIdx.x;
    const u32 mi = limb_mod[blockIdx.y];
    const u64 q = moduli[3 * mi];
    u64* x = a + (u64)blockIdx.y * n + (u64)blk * 2 * tt;
    const u64* tw = psi + (u64)mi * n;
    const u64* tws = psi_shoup + (u64)mi * n;
    sh[th] = x[th];
    sh[th + tt] = x[th + tt];
    __syncthreads();
    for (u32 groups = first_groups; groups < n; groups *= 2) {
        const u32 t = n / (2 * groups);
        const u32 li = th / t;
        const u32 j1 = 2 * li * t + th % t;
        const u32 k = groups + blk * (groups / first_groups) + li;
        u64 u = sh[j1];
        u64 v = mul_shoup(sh[j1 + t], tw[k], tws[k], q);
        sh[j1] = add_mod(u, v, q);
        sh[j1 + t] = sub_mod(u, v, q);
        __syncthreads();
    }
    x[th] = sh[th];
    x[th + tt] = sh[th + tt];
}

extern "C" __global__ void ntt_inv_shared(u64* a, const u64* ipsi, const u64* ipsi_shoup,
                                          const u64* moduli, const u32* limb_mod, u32 n,
                                          u32 first_groups) {
    extern __shared__ u64 sh[];
    const u32 tt = blockDim.x;
    const u32 th = threadIdx.x;
    const u32 blk = blockIdx.x;
    const u32 mi = limb_mod[blockIdx.y];
    const u64 q = moduli[3 * mi];
    u64* x = a + (u64)blockIdx.y * n + (u64)blk * 2 * tt;
    const u64* tw = ipsi + (u64)mi * n;
    const u64* tws = ipsi_shoup + (u64)mi * n;
    sh[th] = x[th];
    sh[th + tt] = x[th + tt];
    __syncthreads();
    for (u32 groups = n / 2; groups >= first_groups; groups /= 2) {
        const u32 t = n / (2 * groups);
        const u32 li = th / t;
        const u32 j1 = 2 * li * t + th % t;
        const u32 k = groups + blk * (groups / first_groups) + li;
        u64 u = sh[j1];
        u64 v = sh[j1 + t];
        sh[j1] = add_mod(u, v, q);
        sh[j1 + t] = mul_shoup(sub_mod(u, v, q), tw[k], tws[k], q);
        __syncthreads();
    }
    x[th] = sh[th];
    x[th + tt] = sh[th + tt];
}

extern "C" __global__ void ntt_inv_global(u64* a, const u64* ipsi, const u64* ipsi_shoup,
                                          const u64* moduli, const u32* limb_mod, u32 n,
                                          u32 groups, u32 log_t) {
    const u32 b = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 mi = limb_mod[blockIdx.y];
    const u64 q = moduli[3 * mi];
    u64* x = a + (u64)blockIdx.y * n;
    const u32 t = 1u << log_t;
    const u32 i = b >> log_t;
    const u32 j1 = 2 * i * t + (b & (t - 1));
    const u64 tk = (u64)mi * n + groups + i;
    u64 u = x[j1];
    u64 v = x[j1 + t];
    x[j1] = add_mod(u, v, q);
    x[j1 + t] = mul_shoup(sub_mod(u, v, q), ipsi[tk], ipsi_shoup[tk], q);
}

// a ← a·N^{-1} (the inverse NTT's normalisation), one thread per coefficient.
extern "C" __global__ void ntt_scale(u64* a, const u64* n_inv, const u64* n_inv_shoup,
                                     const u64* moduli, const u32* limb_mod, u32 n) {
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 mi = limb_mod[blockIdx.y];
    const u64 at = (u64)blockIdx.y * n + k;
    a[at] = mul_shoup(a[at], n_inv[mi], n_inv_shoup[mi], moduli[3 * mi]);
}
