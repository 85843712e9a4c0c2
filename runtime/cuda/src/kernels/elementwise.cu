// Element-wise kernels over a batch of RNS limbs: grid.y = limb, grid.x·block.x = coefficient.
// Outputs never alias inputs except where a kernel says so.

#define COEFF_INDEX                                                  \
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;             \
    const u32 limb = blockIdx.y;                                     \
    const u64 at = (u64)limb * n + k;                                \
    const Mod m = load_mod(moduli, limb_mod[limb]);

extern "C" __global__ void ew_add(u64* out, const u64* a, const u64* b, const u64* moduli,
                                  const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = add_mod(a[at], b[at], m.q);
}

extern "C" __global__ void ew_sub(u64* out, const u64* a, const u64* b, const u64* moduli,
                                  const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = sub_mod(a[at], b[at], m.q);
}

extern "C" __global__ void ew_neg(u64* out, const u64* a, const u64* moduli, const u32* limb_mod,
                                  u32 n) {
    COEFF_INDEX
    u64 x = a[at];
    out[at] = x == 0 ? 0 : m.q - x;
}

extern "C" __global__ void ew_mul(u64* out, const u64* a, const u64* b, const u64* moduli,
                                  const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = mul_mod(a[at], b[at], m);
}

// Tensor product of two degree-1 ciphertexts: (a0·b0, a0·b1 + a1·b0, a1·b1).
extern "C" __global__ void ew_tensor(u64* d0, u64* d1, u64* d2, const u64* a0, const u64* a1,
                                     const u64* b0, const u64* b1, const u64* moduli,
                                     const u32* limb_mod, u32 n) {
    COEFF_INDEX
    u64 x0 = a0[at], x1 = a1[at], y0 = b0[at], y1 = b1[at];
    d0[at] = mul_mod(x0, y0, m);
    d1[at] = add_mod(mul_mod(x0, y1, m), mul_mod(x1, y0, m), m.q);
    d2[at] = mul_mod(x1, y1, m);
}

// out = a + c_limb (a constant polynomial in NTT form: the same residue everywhere).
extern "C" __global__ void ew_add_scalar(u64* out, const u64* a, const u64* scalars,
                                         const u64* moduli, const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = add_mod(a[at], scalars[limb], m.q);
}

// out = a · c_limb.
extern "C" __global__ void ew_mul_scalar(u64* out, const u64* a, const u64* scalars,
                                         const u64* moduli, const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = mul_mod(a[at], scalars[limb], m);
}

// out = (x − r) · c_limb: the last step of ModDown (c = P^{-1}) and of rescale (c = q_l^{-1}).
extern "C" __global__ void ew_sub_mul_scalar(u64* out, const u64* x, const u64* r,
                                             const u64* scalars, const u64* moduli,
                                             const u32* limb_mod, u32 n) {
    COEFF_INDEX
    out[at] = mul_mod(sub_mod(x[at], r[at], m.q), scalars[limb], m);
}

// Centered lift of one coefficient-form limb modulo q_src into each target limb: the residue of
// the representative in (−q_src/2, q_src/2] (rescale's rounding division).
extern "C" __global__ void ew_lift_centered(u64* out, const u64* top, u32 src_mod,
                                            const u64* moduli, const u32* limb_mod, u32 n) {
    COEFF_INDEX
    const u64 qs = moduli[3 * src_mod];
    u64 v = top[k];
    if (v > qs / 2) {
        u64 r = reduce64(qs - v, m);
        out[at] = r == 0 ? 0 : m.q - r;
    } else {
        out[at] = reduce64(v, m);
    }
}

// Galois automorphism in the NTT domain (an index permutation): out[i] = in[perm[i]].
extern "C" __global__ void ew_permute(u64* out, const u64* in, const u32* perm, u32 n) {
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;
    const u64 base = (u64)blockIdx.y * n;
    out[base + k] = in[base + perm[k]];
}

// out[i] = in[perm[i]] + add[perm[i]]: a rotation's first part, σ_g(u_0 + c_0).
extern "C" __global__ void ew_permute_add(u64* out, const u64* in, const u64* add,
                                          const u32* perm, const u64* moduli,
                                          const u32* limb_mod, u32 n) {
    COEFF_INDEX
    const u64 src = (u64)limb * n + perm[k];
    out[at] = add_mod(in[src], add[src], m.q);
}
