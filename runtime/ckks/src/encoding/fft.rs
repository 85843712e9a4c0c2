//! Complex FFT tables for the canonical embedding: ζ^k, ζ = e^{iπ/N}, for k < 2N, from which
//! every slot count's roots (ω_n = ζ^{2N/n}, ξ = ζ^{N/(2n)}) are taken.

use num_complex::Complex64;

/// Roots of unity shared by all slot counts of one ring degree.
#[derive(Debug, Clone)]
pub struct EncoderTables {
    two_n: usize,
    /// ζ^k for k < 2N.
    roots: Vec<Complex64>,
}

impl EncoderTables {
    /// Tables for N = 2^log_n.
    pub fn new(log_n: u32) -> Self {
        let two_n = 2usize << log_n;
        let roots = (0..two_n)
            .map(|k| {
                let a = std::f64::consts::PI * 2.0 * k as f64 / two_n as f64;
                Complex64::new(a.cos(), a.sin())
            })
            .collect();
        EncoderTables { two_n, roots }
    }

    /// perm\[j\] = t_j with 5^j ≡ 1 + 4·t_j (mod 4n): slot j ↔ DFT index t_j.
    pub fn slot_permutation(&self, n: usize) -> Vec<usize> {
        let m = 4 * n as u64;
        let mut e = 1u64;
        (0..n)
            .map(|_| {
                let t = ((e - 1) / 4) as usize;
                e = e * 5 % m;
                t
            })
            .collect()
    }

    /// In-place DFT X[t] = Σ_k x_k ω^{±kt} of size n = a.len() (sign +1 forward, −1 inverse).
    fn fft(&self, a: &mut [Complex64], inverse: bool) {
        let n = a.len();
        if n <= 1 {
            return;
        }
        let bits = n.trailing_zeros();
        for i in 0..n {
            let j = i.reverse_bits() >> (usize::BITS - bits);
            if i < j {
                a.swap(i, j);
            }
        }
        let mut len = 2;
        while len <= n {
            let stride = self.two_n / len;
            for start in (0..n).step_by(len) {
                for j in 0..len / 2 {
                    let k = j * stride;
                    let w = if inverse {
                        self.roots[(self.two_n - k) % self.two_n]
                    } else {
                        self.roots[k]
                    };
                    let u = a[start + j];
                    let v = a[start + j + len / 2] * w;
                    a[start + j] = u + v;
                    a[start + j + len / 2] = u - v;
                }
            }
            len <<= 1;
        }
    }

    /// Forward DFT (ω^{+kt}).
    pub fn forward_fft(&self, a: &mut [Complex64]) {
        self.fft(a, false);
    }

    /// Inverse DFT (ω^{−kt}), divided by n.
    pub fn inverse_fft(&self, a: &mut [Complex64]) {
        self.fft(a, true);
        let inv = 1.0 / a.len() as f64;
        for x in a.iter_mut() {
            *x *= inv;
        }
    }

    /// w_k ← w_k · ξ^k with ξ = ζ^{N/(2n)}, n = w.len().
    pub fn twist(&self, w: &mut [Complex64]) {
        let step = self.two_n / (4 * w.len());
        for (k, x) in w.iter_mut().enumerate() {
            *x *= self.roots[k * step];
        }
    }

    /// w_k ← w_k · ξ^{−k}.
    pub fn untwist(&self, w: &mut [Complex64]) {
        let step = self.two_n / (4 * w.len());
        for (k, x) in w.iter_mut().enumerate() {
            *x *= self.roots[(self.two_n - k * step) % self.two_n];
        }
    }
}
