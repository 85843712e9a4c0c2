//! What an execution observed: instruction counts, depth per output, range-check violations.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A calibrated range a value left (see `cachemir_ir::plan::RangeCheck`).
#[derive(Debug, Clone, PartialEq)]
pub struct RangeViolation {
    /// The check's site name (`plan.sites[check.site].name`).
    pub site: String,
    /// The instruction after which the value was checked.
    pub instruction: usize,
    pub register: u32,
    /// Observed minimum and maximum over the occupied slots (NaN when a slot is NaN).
    pub min: f64,
    pub max: f64,
    /// The calibrated range `[low, high]`.
    pub low: f64,
    pub high: f64,
}

impl fmt::Display for RangeViolation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (after instruction {}, r{}): observed [{}, {}] outside [{}, {}]",
            self.site,
            self.instruction,
            self.register,
            number(self.min),
            number(self.max),
            number(self.low),
            number(self.high)
        )
    }
}

/// Rounded to four decimals; scientific notation (four digits) outside [1e-3, 1e6).
fn number(x: f64) -> String {
    if x == 0.0 || !x.is_finite() || (1e-3..1e6).contains(&x.abs()) {
        format!("{}", (x * 1e4).round() / 1e4)
    } else {
        format!("{x:.4e}")
    }
}

/// Bookkeeping of one encrypted output (over its ciphertexts: the deepest / lowest).
#[derive(Debug, Clone, PartialEq)]
pub struct OutputInfo {
    pub name: String,
    /// Largest multiplicative depth consumed since encryption or the last bootstrap.
    pub depth: Option<u32>,
    /// Lowest level, where the backend tracks levels.
    pub level: Option<u32>,
    /// Largest scale, in bits.
    pub scale_bits: f64,
}

/// What one execution of a plan observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// The backend's name.
    pub backend: &'static str,
    /// Instructions executed, by mnemonic (a hoisted group counts once under `rot.h`).
    pub counts: BTreeMap<&'static str, usize>,
    /// Rotations (key switches): `rot` plus every step of every `rot.h`.
    pub rotations: usize,
    /// Plaintext slot vectors built from tensors (cache misses).
    pub plaintexts_built: usize,
    /// Most registers holding a value at once.
    pub peak_live_registers: usize,
    /// Range checks evaluated (the backend could read the values) and skipped.
    pub checks_evaluated: usize,
    pub checks_skipped: usize,
    pub violations: Vec<RangeViolation>,
    /// One entry per encrypted output, in plan order.
    pub outputs: Vec<OutputInfo>,
    pub wall_time: Duration,
}

impl Report {
    /// The largest depth over every output, where tracked.
    pub fn max_depth(&self) -> Option<u32> {
        self.outputs.iter().filter_map(|o| o.depth).max()
    }

    /// Instructions executed, all mnemonics together.
    pub fn instructions(&self) -> usize {
        self.counts.values().sum()
    }
}

impl fmt::Display for Report {
    /// A short human summary (a few lines, at most ten violations listed).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts: Vec<String> = self
            .counts
            .iter()
            .map(|(m, n)| format!("{m} {n}"))
            .collect();
        writeln!(
            f,
            "backend {}: {} instructions in {:.3} s ({})",
            self.backend,
            self.instructions(),
            self.wall_time.as_secs_f64(),
            counts.join(", ")
        )?;
        writeln!(
            f,
            "rotations {}, plaintexts built {}, peak live registers {}",
            self.rotations, self.plaintexts_built, self.peak_live_registers
        )?;
        for o in &self.outputs {
            let depth = o.depth.map_or("?".to_string(), |d| d.to_string());
            let level = o.level.map_or(String::new(), |l| format!(", level {l}"));
            writeln!(
                f,
                "output {}: depth {depth}{level}, scale 2^{}",
                o.name, o.scale_bits
            )?;
        }
        if let Some(depth) = self.max_depth() {
            writeln!(f, "max depth {depth}")?;
        }
        write!(
            f,
            "range checks: {} evaluated, {} skipped, {} violations",
            self.checks_evaluated,
            self.checks_skipped,
            self.violations.len()
        )?;
        for v in self.violations.iter().take(10) {
            write!(f, "\n  {v}")?;
        }
        if self.violations.len() > 10 {
            write!(f, "\n  … {} more", self.violations.len() - 10)?;
        }
        Ok(())
    }
}
