// Modular arithmetic on word-size primes q < 2^62, mirroring cachemir-ckks's `Modulus`
// (runtime/ckks/src/ring/modulus.rs) so that every residue is the CPU's.
//
// The moduli table holds three words per modulus, in the context's order (q_0 … q_L,
// p_0 … p_{K-1}): q, then floor(2^128 / q) as (high, low). Kernels over a batch of RNS limbs take
// `limb_mod[limb]`, the modulus index of each limb.

typedef unsigned long long u64;
typedef unsigned int u32;

struct Mod {
    u64 q;
    u64 rhi;
    u64 rlo;
};

__device__ __forceinline__ Mod load_mod(const u64* moduli, u32 index) {
    Mod m;
    m.q = moduli[3 * index];
    m.rhi = moduli[3 * index + 1];
    m.rlo = moduli[3 * index + 2];
    return m;
}

// Barrett reduction of x1·2^64 + x0 into [0, q): the estimate of floor(x·r / 2^128) from the
// partial products (the lowest one only through its carry) is at most 2 below the quotient.
__device__ __forceinline__ u64 reduce128(u64 x1, u64 x0, const Mod m) {
    u64 c0 = __umul64hi(x0, m.rlo);
    u64 p01_lo = x0 * m.rhi;
    u64 p01_hi = __umul64hi(x0, m.rhi);
    u64 p10_lo = x1 * m.rlo;
    u64 p10_hi = __umul64hi(x1, m.rlo);
    u64 mid = c0 + p01_lo;
    u64 carry = mid < c0 ? 1ull : 0ull;
    u64 mid2 = mid + p10_lo;
    carry += mid2 < mid ? 1ull : 0ull;
    u64 est = p01_hi + p10_hi + carry + x1 * m.rhi;
    u64 r = x0 - est * m.q;
    if (r >= m.q) r -= m.q;
    if (r >= m.q) r -= m.q;
    return r;
}

__device__ __forceinline__ u64 reduce64(u64 x, const Mod m) {
    return x < m.q ? x : reduce128(0ull, x, m);
}

__device__ __forceinline__ u64 mul_mod(u64 a, u64 b, const Mod m) {
    return reduce128(__umul64hi(a, b), a * b, m);
}

__device__ __forceinline__ u64 add_mod(u64 a, u64 b, u64 q) {
    u64 s = a + b;
    return s >= q ? s - q : s;
}

__device__ __forceinline__ u64 sub_mod(u64 a, u64 b, u64 q) {
    return a >= b ? a - b : a + q - b;
}

// a·w mod q with w's Shoup constant floor(w·2^64 / q) (reduced a, w).
__device__ __forceinline__ u64 mul_shoup(u64 a, u64 w, u64 w_shoup, u64 q) {
    u64 qt = __umul64hi(a, w_shoup);
    u64 r = a * w - qt * q;
    return r >= q ? r - q : r;
}

// A 128-bit accumulator of products (lazy reduction: < 2^124 per product of reduced operands
// below 2^62, so up to 15 products fit; callers fold every ACC_FOLD terms).
#define ACC_FOLD 8

struct Acc128 {
    u64 hi;
    u64 lo;
};

__device__ __forceinline__ void acc_mul_add(Acc128& acc, u64 a, u64 b) {
    u64 lo = a * b;
    u64 hi = __umul64hi(a, b);
    acc.lo += lo;
    acc.hi += hi + (acc.lo < lo ? 1ull : 0ull);
}

__device__ __forceinline__ void acc_fold(Acc128& acc, const Mod m) {
    acc.lo = reduce128(acc.hi, acc.lo, m);
    acc.hi = 0ull;
}
