//! The latency cost model the compiler places bootstraps with and the report estimates latency
//! from: per instruction class, milliseconds as a linear function of the limbs (`level + 1`), and
//! bootstrap latency by slot count. `cachemir bench` writes one for a machine and backend; the
//! default ([`CostModel::default_cpu`]) is documented where it comes from.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `fixed_ms + per_limb_ms · (level + 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LinearCost {
    pub fixed_ms: f64,
    pub per_limb_ms: f64,
}

impl LinearCost {
    /// Milliseconds at `level` (`level + 1` limbs).
    pub fn at(&self, level: u32) -> f64 {
        self.fixed_ms + self.per_limb_ms * (f64::from(level) + 1.0)
    }
}

/// A cost model for one ring degree, machine and backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostModel {
    /// Where the figures come from (machine, backend, library, threads).
    pub source: String,
    /// log2 N the figures are for.
    pub log_n: u32,
    /// Per instruction mnemonic (`add`, `mul`, `mul.p`, `rot`, …). `rot.h` is the shared
    /// decomposition of a hoisted group and `rot.h/step` each of its rotations. `mul.p` includes
    /// encoding the weight plaintext at the level of use.
    pub instructions: BTreeMap<String, LinearCost>,
    /// Bootstrap latency per ciphertext (ms) by slot count, ascending; interpolated linearly in
    /// log2 slots and clamped at the ends.
    pub bootstrap_ms: Vec<(usize, f64)>,
}

/// A cost model that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum CostModelError {
    #[error("cost model {path}: {message}")]
    Read { path: String, message: String },
}

impl CostModel {
    /// The default CPU model: OpenFHE v1.5.1, one thread, N = 2^16 (23 limbs at the top, dnum 3),
    /// measured on this project's 2-core Zen 4 machine kind (`shared/anchors/measured/
    /// openfhe_n16_t1.json`), fitted linearly in limbs between the top level (23 limbs) and the
    /// post-bootstrap level (8 limbs) where both were measured, else proportional to limbs.
    /// Replaced by `cachemir bench` figures for our own backend where available.
    pub fn default_cpu() -> Self {
        let per_limb = |ms_at_top: f64| LinearCost {
            fixed_ms: 0.0,
            per_limb_ms: ms_at_top / 23.0,
        };
        // Two-point fits: (23 limbs, top) and (8 limbs, after bootstrapping).
        let fit = |top: f64, low: f64| {
            let per_limb_ms = (top - low) / 15.0;
            LinearCost {
                fixed_ms: (top - per_limb_ms * 23.0).max(0.0),
                per_limb_ms,
            }
        };
        let encode = 34.82;
        let instructions = [
            ("add", per_limb(25.33)),
            ("sub", per_limb(25.33)),
            ("neg", per_limb(12.7)),
            ("add.p", per_limb(25.33 + encode)),
            ("sub.p", per_limb(25.33 + encode)),
            ("add.s", per_limb(12.7)),
            ("mul.p", per_limb(31.39 + encode)),
            ("mul.s", per_limb(12.7)),
            ("mul", fit(385.25, 182.98)),
            // `mul` split in two: the tensor product without relinearization costs about one
            // ct-pt product (the encoding aside), the relinearization (a key switch) the rest,
            // so that `mul.nr` + `relin` = `mul` at both measured levels.
            ("mul.nr", per_limb(31.39)),
            ("relin", fit(385.25 - 31.39, 182.98 - 31.39 * 8.0 / 23.0)),
            // The two-point fit of `rot` has a negative intercept: proportional instead (128 ms
            // at 8 limbs against 110 measured).
            ("rot", per_limb(369.01)),
            // 16 hoisted rotations cost 3237 ms against 369 for one: ≈ 167 ms of shared
            // decomposition and ≈ 192 ms per rotation at the top level.
            ("rot.h", per_limb(167.0)),
            ("rot.h/step", per_limb(192.0)),
            ("rescale", per_limb(67.1)),
            ("level.down", per_limb(1.0)),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        Self {
            source: "default CPU model: OpenFHE v1.5.1, 1 thread, N = 2^16, 2-core Zen 4 \
                     (shared/anchors/measured/openfhe_n16_t1.json)"
                .into(),
            log_n: 16,
            instructions,
            bootstrap_ms: vec![(4096, 21674.51), (32768, 32382.95)],
        }
    }

    /// Milliseconds of one instruction `mnemonic` at `level` (0 for instructions without cost:
    /// `load`, `store`, `free`, `boot` — see [`CostModel::bootstrap`]). A model without figures
    /// for `relin` or `mul.nr` (written before they existed) costs a relinearization as a
    /// rotation (one key switch) and the product without it as a ct-pt product.
    pub fn instruction(&self, mnemonic: &str, level: u32) -> f64 {
        let fallback = match mnemonic {
            "relin" => "rot",
            "mul.nr" => "mul.p",
            _ => mnemonic,
        };
        self.instructions
            .get(mnemonic)
            .or_else(|| self.instructions.get(fallback))
            .map_or(0.0, |c| c.at(level))
    }

    /// Milliseconds of a hoisted group of `steps` rotations at `level`.
    pub fn hoisted(&self, steps: usize, level: u32) -> f64 {
        self.instruction("rot.h", level) + steps as f64 * self.instruction("rot.h/step", level)
    }

    /// Milliseconds of one bootstrap of a ciphertext using `slots` slots.
    pub fn bootstrap(&self, slots: usize) -> f64 {
        let table = &self.bootstrap_ms;
        let Some(&(first_slots, first_ms)) = table.first() else {
            return 0.0;
        };
        let x = (slots.max(1) as f64).log2();
        if x <= (first_slots as f64).log2() {
            return first_ms;
        }
        for pair in table.windows(2) {
            let ((s0, m0), (s1, m1)) = (pair[0], pair[1]);
            let (x0, x1) = ((s0 as f64).log2(), (s1 as f64).log2());
            if x <= x1 {
                return m0 + (m1 - m0) * (x - x0) / (x1 - x0);
            }
        }
        table.last().map_or(0.0, |&(_, ms)| ms)
    }

    /// Reads a model written by `cachemir bench` (JSON).
    pub fn from_file(path: &std::path::Path) -> Result<Self, CostModelError> {
        let error = |message: String| CostModelError::Read {
            path: path.display().to_string(),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        serde_json::from_str(&text).map_err(|e| error(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_model_reproduces_its_measurements() {
        let m = CostModel::default_cpu();
        assert!((m.instruction("mul", 22) - 385.25).abs() < 1e-9);
        assert!((m.instruction("mul", 7) - 182.98).abs() < 1e-9);
        assert!((m.instruction("rot", 22) - 369.01).abs() < 1e-9);
        assert!((m.instruction("add", 22) - 25.33).abs() < 1e-9);
        assert!((m.hoisted(16, 22) - (167.0 + 16.0 * 192.0)).abs() < 1e-9);
        assert_eq!(m.bootstrap(32768), 32382.95);
        assert_eq!(m.bootstrap(1024), 21674.51);
        let mid = m.bootstrap(8192);
        assert!(mid > 21674.51 && mid < 32382.95);
        assert_eq!(m.instruction("load", 5), 0.0);
        // The product without relinearization and the relinearization sum to `mul`.
        for level in [22, 7] {
            let split = m.instruction("mul.nr", level) + m.instruction("relin", level);
            assert!((split - m.instruction("mul", level)).abs() < 1e-9);
        }
        assert!((m.instruction("mul.nr", 22) - 31.39).abs() < 1e-9);
        // A model without the split: a key switch and a ct-pt product.
        let mut old = m.clone();
        old.instructions.remove("relin");
        old.instructions.remove("mul.nr");
        assert_eq!(old.instruction("relin", 22), m.instruction("rot", 22));
        assert_eq!(old.instruction("mul.nr", 22), m.instruction("mul.p", 22));
    }

    #[test]
    fn round_trips_through_json() {
        let m = CostModel::default_cpu();
        let text = serde_json::to_string(&m).unwrap();
        assert_eq!(serde_json::from_str::<CostModel>(&text).unwrap(), m);
    }
}
