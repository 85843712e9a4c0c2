// The key-switching inner product over Q_l·P (Han–Ki, CT-RSA 2020, §3), as cachemir-ckks's
// `dot_limb` (runtime/ckks/src/ops/keyswitch.rs): for extended limb t,
//   acc0_t = Σ_j D_j[t]·b_j[kt],  acc1_t = Σ_j D_j[t]·a_j[kt],
// kt = t for t ≤ l (a q limb) and key_level + 1 + (t − l − 1) for the special limbs (the key
// holds key_level + 1 + K limbs per digit). Digits are stored [digit][ext limb][N], the key's
// halves [digit][key limb][N]. grid.y = t.
extern "C" __global__ void ks_inner(u64* acc0, u64* acc1, const u64* digits, const u64* key_b,
                                    const u64* key_a, const u64* moduli, const u32* limb_mod,
                                    u32 n, u32 ext, u32 key_ext, u32 level, u32 key_level,
                                    u32 num_digits) {
    const u32 k = blockIdx.x * blockDim.x + threadIdx.x;
    const u32 t = blockIdx.y;
    const Mod m = load_mod(moduli, limb_mod[t]);
    const u32 kt = t <= level ? t : t + key_level - level;
    Acc128 s0 = {0ull, 0ull};
    Acc128 s1 = {0ull, 0ull};
    for (u32 j = 0; j < num_digits; j++) {
        const u64 d = digits[((u64)j * ext + t) * n + k];
        const u64 kat = ((u64)j * key_ext + kt) * n + k;
        acc_mul_add(s0, d, key_b[kat]);
        acc_mul_add(s1, d, key_a[kat]);
        if ((j + 1) % ACC_FOLD == 0) {
            acc_fold(s0, m);
            acc_fold(s1, m);
        }
    }
    acc0[(u64)t * n + k] = reduce128(s0.hi, s0.lo, m);
    acc1[(u64)t * n + k] = reduce128(s1.hi, s1.lo, m);
}
