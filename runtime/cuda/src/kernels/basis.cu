// Fast basis conversion B → C in coefficient form (ModUp and ModDown of hybrid key switching),
// the arithmetic of cachemir-ckks's `BasisConverter` (runtime/ckks/src/ring/basis.rs):
//   y_i = [x_i · (B/b_i)^{-1}]_{b_i},
//   v   = round(Σ_i y_i · (1/b_i))     (f64, in limb order from 0.0, no fused multiply-add),
//   out = (Σ_i y_i · [B/b_i]_c + v · [−B]_c) mod c.
// The explicit _rn intrinsics keep the products and sums unfused whatever --fmad says, so v is
// the CPU's bit for bit.

// One thread per coefficient: y (|B| limbs) and v.
extern "C" __global__ void conv_prepare(u64* y, u64* v, const u64* x, const u32* from_mod,
                                        const u64* hat_inv, const u64* hat_inv_shoup,
                                        const double* inv_from, const u64* moduli, u32 n,
                                        u32 nb) {
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;
    double f = 0.0;
    for (u32 i = 0; i < nb; i++) {
        const u64 q = moduli[3 * from_mod[i]];
        const u64 yi = mul_shoup(x[(u64)i * n + k], hat_inv[i], hat_inv_shoup[i], q);
        y[(u64)i * n + k] = yi;
        f = __dadd_rn(f, __dmul_rn(__ull2double_rn(yi), inv_from[i]));
    }
    v[k] = (u64)round(f);
}

// grid.y = target j: writes limb positions[j] of `out` (N residues each).
extern "C" __global__ void conv_apply(u64* out, const u32* positions, const u64* y, const u64* v,
                                      const u32* to_mod, const u64* hat_mod_to,
                                      const u64* neg_b_mod_to, const u64* moduli, u32 n,
                                      u32 nb) {
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 j = blockIdx.y;
    const Mod m = load_mod(moduli, to_mod[j]);
    const u64* w = hat_mod_to + (u64)j * nb;
    Acc128 acc = {0ull, 0ull};
    for (u32 i = 0; i < nb; i++) {
        acc_mul_add(acc, y[(u64)i * n + k], w[i]);
        if ((i + 1) % ACC_FOLD == 0) acc_fold(acc, m);
    }
    acc_mul_add(acc, v[k], neg_b_mod_to[j]);
    out[(u64)positions[j] * n + k] = reduce128(acc.hi, acc.lo, m);
}
