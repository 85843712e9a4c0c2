//! Launch geometry of the kernels, and a host model of the NTT kernels' exact schedule.
//!
//! Every kernel works on a batch of RNS limbs: `grid.y` indexes the limb, `grid.x × block.x`
//! covers the N coefficients (or N/2 butterflies). The NTT runs its first stages (butterfly
//! half-distance t > T) one launch per stage over global memory, then one launch for all the
//! stages with t ≤ T, a block of T threads holding 2T contiguous residues in shared memory
//! (T = min(1024, N/2)); the inverse runs the same stages in reverse order. The host model below
//! runs exactly the kernels' index arithmetic so that a unit test, without a GPU, pins the
//! twiddle indexing and the output order to `cachemir-ckks`'s NTT.

use cachemir_ckks::ring::modulus::Modulus;

use crate::twiddles::Twiddles;

/// Threads per block of the element-wise kernels.
pub const THREADS: u32 = 256;

/// Most butterflies per shared-memory NTT block (threads per block; 2·T residues, 16 KiB).
pub const MAX_SHARED_BUTTERFLIES: usize = 1024;

/// A kernel launch's shape, independent of the driver API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LaunchShape {
    /// Blocks (x, y, z).
    pub grid: (u32, u32, u32),
    /// Threads per block (x, y, z).
    pub block: (u32, u32, u32),
    /// Dynamic shared memory per block, bytes.
    pub shared_bytes: u32,
}

/// One thread per coefficient of each of `limbs` limbs of N = `n` coefficients.
///
/// `n` must be a power of two; blocks hold min(N, [`THREADS`]) threads.
pub fn per_coefficient(n: usize, limbs: usize) -> LaunchShape {
    let block = (n as u32).min(THREADS);
    LaunchShape {
        grid: (n as u32 / block, limbs as u32, 1),
        block: (block, 1, 1),
        shared_bytes: 0,
    }
}

/// The stage split of a negacyclic NTT of degree N = 2^`log_n` (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NttGeometry {
    pub log_n: u32,
    /// T: butterflies (threads) per shared-memory block.
    pub shared_butterflies: usize,
}

impl NttGeometry {
    /// The split for N = 2^`log_n` (1 ≤ log_n ≤ 17).
    pub fn new(log_n: u32) -> Self {
        let n = 1usize << log_n;
        NttGeometry {
            log_n,
            shared_butterflies: (n / 2).min(MAX_SHARED_BUTTERFLIES),
        }
    }

    /// Ring degree N.
    pub fn n(&self) -> usize {
        1 << self.log_n
    }

    /// m (number of butterfly groups, t = N/(2m)) of each forward stage run over global memory, in
    /// order: 1, 2, 4, … while t > T. The inverse runs them in reverse order after the shared part.
    pub fn global_stages(&self) -> Vec<u32> {
        let n = self.n();
        let first_shared = self.first_shared_groups();
        (0..self.log_n)
            .map(|s| 1u32 << s)
            .take_while(|&m| (m as usize) < first_shared && m as usize <= n / 2)
            .collect()
    }

    /// m of the first stage run in shared memory: N/(2T) (one group per block).
    pub fn first_shared_groups(&self) -> usize {
        self.n() / (2 * self.shared_butterflies)
    }

    /// Launch of one global stage over `limbs` limbs: one thread per butterfly.
    pub fn global_launch(&self, limbs: usize) -> LaunchShape {
        let half = (self.n() / 2) as u32;
        let block = half.min(THREADS);
        LaunchShape {
            grid: (half / block, limbs as u32, 1),
            block: (block, 1, 1),
            shared_bytes: 0,
        }
    }

    /// Launch of the shared-memory stages over `limbs` limbs.
    pub fn shared_launch(&self, limbs: usize) -> LaunchShape {
        let t = self.shared_butterflies as u32;
        LaunchShape {
            grid: (self.first_shared_groups() as u32, limbs as u32, 1),
            block: (t, 1, 1),
            shared_bytes: 2 * t * 8,
        }
    }
}

/// One Cooley–Tukey butterfly of stage m on `a` (the kernels' `ct_butterfly`): thread `b` of
/// N/2, group i = b / t, offset j = b mod t, pair (2·i·t + j, 2·i·t + j + t), twiddle
/// psi_rev\[m + i\].
fn ct_butterfly(a: &mut [u64], tw: &Twiddles, m: &Modulus, groups: usize, t: usize, b: usize) {
    let (i, j) = (b / t, b % t);
    let j1 = 2 * i * t + j;
    let k = groups + i;
    let u = a[j1];
    let v = m.mul_shoup(a[j1 + t], tw.psi_rev[k], tw.psi_rev_shoup[k]);
    a[j1] = m.add(u, v);
    a[j1 + t] = m.sub(u, v);
}

/// One Gentleman–Sande butterfly of stage m (the kernels' `gs_butterfly`): same pairing, twiddle
/// ipsi_rev\[m + i\] applied to the difference.
fn gs_butterfly(a: &mut [u64], tw: &Twiddles, m: &Modulus, groups: usize, t: usize, b: usize) {
    let (i, j) = (b / t, b % t);
    let j1 = 2 * i * t + j;
    let k = groups + i;
    let (u, v) = (a[j1], a[j1 + t]);
    a[j1] = m.add(u, v);
    a[j1 + t] = m.mul_shoup(m.sub(u, v), tw.ipsi_rev[k], tw.ipsi_rev_shoup[k]);
}

/// The forward kernels' schedule on the host: global stages, then per shared block the stages
/// with t ≤ T on its 2T residues (block-local group indices offset by the block's first group).
pub fn forward_model(a: &mut [u64], tw: &Twiddles, geo: &NttGeometry) {
    let n = geo.n();
    let m = Modulus::new(tw.q);
    for groups in geo.global_stages() {
        let t = n / (2 * groups as usize);
        for b in 0..n / 2 {
            ct_butterfly(a, tw, &m, groups as usize, t, b);
        }
    }
    let tt = geo.shared_butterflies;
    let m0 = geo.first_shared_groups();
    for blk in 0..m0 {
        let local = &mut a[blk * 2 * tt..(blk + 1) * 2 * tt];
        let mut groups = m0;
        while groups < n {
            let t = n / (2 * groups);
            let per_block = groups / m0;
            for th in 0..tt {
                // Block-local group li = th / t; its global twiddle index is groups + blk·per_block + li.
                let (li, j) = (th / t, th % t);
                let j1 = 2 * li * t + j;
                let k = groups + blk * per_block + li;
                let u = local[j1];
                let v = m.mul_shoup(local[j1 + t], tw.psi_rev[k], tw.psi_rev_shoup[k]);
                local[j1] = m.add(u, v);
                local[j1 + t] = m.sub(u, v);
            }
            groups *= 2;
        }
    }
}

/// The inverse kernels' schedule on the host: shared stages (t = 1 … T), global stages (t > T)
/// in reverse order, then the multiplication by N^{-1}.
pub fn inverse_model(a: &mut [u64], tw: &Twiddles, geo: &NttGeometry) {
    let n = geo.n();
    let m = Modulus::new(tw.q);
    let tt = geo.shared_butterflies;
    let m0 = geo.first_shared_groups();
    for blk in 0..m0 {
        let local = &mut a[blk * 2 * tt..(blk + 1) * 2 * tt];
        let mut groups = n / 2;
        while groups >= m0 {
            let t = n / (2 * groups);
            let per_block = groups / m0;
            for th in 0..tt {
                let (li, j) = (th / t, th % t);
                let j1 = 2 * li * t + j;
                let k = groups + blk * per_block + li;
                let (u, v) = (local[j1], local[j1 + t]);
                local[j1] = m.add(u, v);
                local[j1 + t] = m.mul_shoup(m.sub(u, v), tw.ipsi_rev[k], tw.ipsi_rev_shoup[k]);
            }
            groups /= 2;
        }
    }
    for groups in geo.global_stages().into_iter().rev() {
        let t = n / (2 * groups as usize);
        for b in 0..n / 2 {
            gs_butterfly(a, tw, &m, groups as usize, t, b);
        }
    }
    for x in a.iter_mut() {
        *x = m.mul_shoup(*x, tw.n_inv, tw.n_inv_shoup);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cachemir_ckks::params::primes::{Search, ntt_primes};
    use cachemir_ckks::ring::ntt::NttTable;

    fn random(n: usize, q: u64, seed: u64) -> Vec<u64> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                s % q
            })
            .collect()
    }

    /// The kernels' schedule reproduces `cachemir-ckks`'s NTT bit for bit, both ways, with and
    /// without global stages (N ≤ 2T has none), for 36- to 61-bit primes.
    #[test]
    fn model_schedule_matches_the_cpu_ntt() {
        for (log_n, bits) in [(4, 36), (10, 45), (11, 50), (12, 61), (13, 55), (14, 45)] {
            let n = 1usize << log_n;
            let q = ntt_primes(bits, log_n, 1, Search::Below, &[])[0];
            let geo = NttGeometry::new(log_n);
            let tw = Twiddles::new(n, q).unwrap();
            let table = NttTable::new(n, q).unwrap();
            let a = random(n, q, 0x5eed + u64::from(log_n));
            let mut cpu = a.clone();
            table.forward(&mut cpu);
            let mut model = a.clone();
            forward_model(&mut model, &tw, &geo);
            assert_eq!(model, cpu, "forward, log N = {log_n}, {bits}-bit prime");
            inverse_model(&mut model, &tw, &geo);
            assert_eq!(model, a, "inverse, log N = {log_n}, {bits}-bit prime");
        }
    }

    #[test]
    fn stage_split_covers_every_stage_once() {
        for log_n in 1..=17 {
            let geo = NttGeometry::new(log_n);
            let n = geo.n();
            let global = geo.global_stages();
            // Global stages are m = 1 … N/(4T), then shared ones m = N/(2T) … N/2.
            let shared = (geo.first_shared_groups()..n).filter(|m| m.is_power_of_two());
            assert_eq!(
                global.len() + shared.count(),
                log_n as usize,
                "log N = {log_n}"
            );
            assert!(geo.shared_butterflies <= MAX_SHARED_BUTTERFLIES);
            let s = geo.shared_launch(3);
            assert_eq!(s.grid.0 as usize * s.block.0 as usize * 2, n);
            assert_eq!(s.grid.1, 3);
            let g = geo.global_launch(5);
            assert_eq!(g.grid.0 as usize * g.block.0 as usize, n / 2);
        }
        assert_eq!(NttGeometry::new(16).global_stages(), vec![1, 2, 4, 8, 16]);
        assert!(NttGeometry::new(11).global_stages().is_empty());
    }

    #[test]
    fn per_coefficient_covers_all_residues() {
        for log_n in [4, 8, 12, 16] {
            let s = per_coefficient(1 << log_n, 7);
            assert_eq!(s.grid.0 * s.block.0, 1 << log_n);
            assert_eq!(s.grid.1, 7);
            assert!(s.block.0 <= THREADS);
        }
    }
}
