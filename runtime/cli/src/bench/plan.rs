//! `cachemir bench --plan PLAN [--params NAME] [--insecure] [--threads N] [--runs R] -o COST.json`:
//! times, with the CKKS crate directly, every instruction class the plan uses — at a few levels
//! spanning the operating levels the plan uses it at ([`levels::trace`]) — and every slot count
//! it bootstraps, fits each class to the cost model's form `fixed_ms + per_limb_ms · limbs`
//! (least squares over the measured levels, `limbs = level + 1`), and writes the [`CostModel`]
//! JSON that `cachemirc report --cost-model` and `cachemirc compile --cost-model` read.
//!
//! What each class times (medians of `--runs` runs after one warm-up, ms): `add`, `sub`, `neg`;
//! `mul` = product and relinearization; `mul.p`, `add.p`, `sub.p` = encoding a plaintext at the
//! level (and the plan's slot count) plus the operation, as the VM encodes weights just in time;
//! `add.s`, `mul.s` = a constant; `rot` = one rotation (one key switch); `rot.h` = the shared
//! decomposition of a hoisted group and `rot.h/step` = each rotation of the group (the group is
//! the plan's largest, at most 8 steps); `rescale`; `level.down` by one level; `boot` = one
//! bootstrap per slot count (`BootstrapConfig::new(slots)`, keys and pre-encoded transforms
//! built first and not timed), half as many runs.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::{Context, Result, bail};
use cachemir_ckks::bootstrap::{BootParamSet, BootstrapConfig, Bootstrapper};
use cachemir_ckks::{
    Ciphertext, CkksContext, CkksParameters, Csprng, Encoder, Encryptor, Evaluator, GaloisKeys,
    KeyGenerator, ParamSet, RelinKey, SecretKey, Security,
};
use cachemir_ir::plan::{CostModel, Instruction, LinearCost, Plan, levels};

use super::{BenchArgs, thread_pool, time};

/// The largest hoisted group timed (the cost per step does not depend on the group's size; a
/// Galois key per step is generated).
const MAX_HOISTED_STEPS: usize = 8;

/// What a plan asks of the machine.
#[derive(Debug, Default)]
struct Usage {
    /// Operating levels by instruction class (`rot.h` and `rot.h/step` for hoisted groups).
    levels: BTreeMap<&'static str, BTreeSet<u32>>,
    /// Slot counts it bootstraps.
    bootstrap_slots: BTreeSet<usize>,
    /// Rotations in its largest hoisted group.
    hoisted_steps: usize,
}

/// The classes `plan` uses, at the levels of its level trace; an unleveled plan's classes at
/// levels 1, `top / 2` and `top`.
fn usage(plan: &Plan, top: u32) -> Result<Usage> {
    let trace = levels::trace(plan).context("the plan breaks its level rules")?;
    let mut usage = Usage::default();
    for (k, instruction) in plan.instructions.iter().enumerate() {
        let classes: &[&'static str] = match instruction {
            Instruction::Load { .. } | Instruction::Store { .. } | Instruction::Free { .. } => {
                continue;
            }
            Instruction::Bootstrap { slots, .. } => {
                usage.bootstrap_slots.insert(slots.0 as usize);
                continue;
            }
            Instruction::RotateHoisted { steps, .. } => {
                usage.hoisted_steps = usage.hoisted_steps.max(steps.0.len());
                &["rot.h", "rot.h/step"]
            }
            other => &[other.mnemonic()],
        };
        let levels: Vec<u32> = match &trace {
            Some(t) => t.operating[k].into_iter().collect(),
            None => vec![1.min(top), top / 2, top],
        };
        for class in classes {
            usage.levels.entry(class).or_default().extend(&levels);
        }
    }
    Ok(usage)
}

/// Up to three levels spanning `used` (lowest, middle, highest); a class used at one level only
/// is also timed one level up (or down at the top) so that a slope can be fitted.
fn spanning(used: &BTreeSet<u32>, lowest: u32, top: u32) -> Vec<u32> {
    let (Some(&lo), Some(&hi)) = (used.first(), used.last()) else {
        return Vec::new();
    };
    let middle = (lo + hi) / 2;
    let mid = used
        .iter()
        .copied()
        .min_by_key(|&l| l.abs_diff(middle))
        .unwrap_or(lo);
    let mut levels: BTreeSet<u32> = [lo, mid, hi].into();
    if levels.len() == 1 {
        if hi < top {
            levels.insert(hi + 1);
        } else if lo > lowest {
            levels.insert(lo - 1);
        }
    }
    levels.into_iter().collect()
}

/// Least-squares fit of `ms ≈ fixed + per_limb · (level + 1)`; a negative intercept refits
/// through the origin and a negative slope (no measurable growth, timing noise) gives the mean.
fn fit(points: &[(u32, f64)]) -> LinearCost {
    let n = points.len() as f64;
    let limbs = |l: u32| f64::from(l) + 1.0;
    let through_origin = || LinearCost {
        fixed_ms: 0.0,
        per_limb_ms: points.iter().map(|&(l, y)| limbs(l) * y).sum::<f64>()
            / points.iter().map(|&(l, _)| limbs(l).powi(2)).sum::<f64>(),
    };
    if points.len() < 2 {
        return through_origin();
    }
    let mean_x = points.iter().map(|&(l, _)| limbs(l)).sum::<f64>() / n;
    let mean_y = points.iter().map(|&(_, y)| y).sum::<f64>() / n;
    let sxx: f64 = points
        .iter()
        .map(|&(l, _)| (limbs(l) - mean_x).powi(2))
        .sum();
    let sxy: f64 = points
        .iter()
        .map(|&(l, y)| (limbs(l) - mean_x) * (y - mean_y))
        .sum();
    let slope = sxy / sxx;
    if slope < 0.0 {
        return LinearCost {
            fixed_ms: mean_y,
            per_limb_ms: 0.0,
        };
    }
    let fixed = mean_y - slope * mean_x;
    if fixed < 0.0 {
        return through_origin();
    }
    LinearCost {
        fixed_ms: fixed,
        per_limb_ms: slope,
    }
}

/// A named set: bootstrappable ([`BootParamSet`]) or not ([`ParamSet`]).
fn parameter_set(name: &str) -> Result<(CkksParameters, bool, bool)> {
    if let Some(set) = BootParamSet::from_name(name) {
        return Ok((set.params()?, set.is_toy(), true));
    }
    if let Some(set) = ParamSet::from_name(name) {
        return Ok((set.params(), set.is_toy(), false));
    }
    let known: Vec<&str> = BootParamSet::ALL
        .iter()
        .map(|s| s.name())
        .chain(ParamSet::ALL.iter().map(|s| s.name()))
        .collect();
    bail!(
        "unknown parameter set `{name}` (known: {})",
        known.join(", ")
    )
}

/// Keys and helpers to time one class at one level.
struct Timer {
    ctx: CkksContext,
    sk: SecretKey,
    rlk: Option<RelinKey>,
    gks: GaloisKeys,
    steps: Vec<i64>,
    slots: usize,
    runs: usize,
    values: Vec<f64>,
}

impl Timer {
    /// A fresh encryption of the timer's values at `level` and the default scale.
    fn ciphertext(&self, level: u32) -> Result<Ciphertext> {
        let scale = self.ctx.params().default_scale();
        let pt =
            Encoder::new(&self.ctx).encode_real(&self.values, self.slots, level as usize, scale)?;
        Ok(Encryptor::new(&self.ctx)?.encrypt_sk(&self.sk, &pt)?)
    }

    /// Median milliseconds of `class` at `level`.
    fn class(&self, class: &str, level: u32) -> Result<f64> {
        let eval = Evaluator::new(&self.ctx);
        let enc = Encoder::new(&self.ctx);
        let (a, b) = (self.ciphertext(level)?, self.ciphertext(level)?);
        let scale = self.ctx.params().default_scale();
        let l = level as usize;
        let runs = self.runs;
        let rlk = || self.rlk.as_ref().context("no relinearization key");
        let encode = |scale| enc.encode_real(&self.values, self.slots, l, scale);
        let ms = match class {
            "add" => time(runs, || Ok(eval.add(&a, &b)?))?.0,
            "sub" => time(runs, || Ok(eval.sub(&a, &b)?))?.0,
            "neg" => time(runs, || Ok(eval.negate(&a)?))?.0,
            "mul" => {
                let rlk = rlk()?;
                time(runs, || Ok(eval.mul_relin(&a, &b, rlk)?))?.0
            }
            "mul.nr" => time(runs, || Ok(eval.mul_no_relin(&a, &b)?))?.0,
            "relin" => {
                let (rlk, product) = (rlk()?, eval.mul_no_relin(&a, &b)?);
                time(runs, || Ok(eval.relinearize(&product, rlk)?))?.0
            }
            "mul.p" => time(runs, || Ok(eval.mul_plain(&a, &encode(scale)?)?))?.0,
            "add.p" => time(runs, || Ok(eval.add_plain(&a, &encode(a.scale())?)?))?.0,
            "sub.p" => time(runs, || Ok(eval.sub_plain(&a, &encode(a.scale())?)?))?.0,
            "add.s" => time(runs, || Ok(eval.add_const(&a, 0.5)?))?.0,
            "mul.s" => time(runs, || Ok(eval.mul_const(&a, 0.5, scale)?))?.0,
            "rot" => time(runs, || Ok(eval.rotate(&a, 1, &self.gks)?))?.0,
            "rot.h" => time(runs, || Ok(eval.hoist(&a)?))?.0,
            "rot.h/step" => {
                let hoisted = eval.hoist(&a)?;
                let group = time(runs, || {
                    Ok(eval.rotate_hoisted(&hoisted, &self.steps, &self.gks)?)
                })?;
                group.0 / self.steps.len() as f64
            }
            "rescale" => {
                let product = eval.mul_const(&a, 0.5, scale)?;
                time(runs, || Ok(eval.rescale(&product)?))?.0
            }
            "level.down" => time(runs, || Ok(eval.level_down(&a, l.saturating_sub(1))?))?.0,
            other => bail!("no benchmark for instruction class `{other}`"),
        };
        Ok(ms)
    }
}

/// The CPU's model name (Linux), for the cost model's `source`.
fn cpu_model() -> Option<String> {
    let info = std::fs::read_to_string("/proc/cpuinfo").ok()?;
    info.lines()
        .find(|l| l.starts_with("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, v)| v.trim().to_string())
}

pub fn run(args: &BenchArgs, plan_path: &Path, output: &Path) -> Result<()> {
    thread_pool(args)?;
    let bytes =
        std::fs::read(plan_path).with_context(|| format!("reading {}", plan_path.display()))?;
    let plan = Plan::from_bytes(&bytes).with_context(|| format!("plan {}", plan_path.display()))?;
    let plan_set = plan.parameters.as_ref().map(|p| p.name.as_str());
    let name = match (args.params.as_deref(), plan_set) {
        (Some(name), _) | (None, Some(name)) => name,
        (None, None) => bail!("the plan has no parameters (unleveled): choose a set with --params"),
    };
    let (params, toy, bootstrappable) = parameter_set(name)?;
    if toy && !args.insecure {
        bail!("parameter set {name} is insecure (toy); pass --insecure to use it");
    }
    let security = if toy {
        Security::InsecureForTesting
    } else {
        Security::Bits128
    };
    let ctx = CkksContext::new(params, security)?;
    let top = ctx.max_level() as u32;
    let usage = usage(&plan, top)?;
    if let Some((class, level)) = usage
        .levels
        .iter()
        .flat_map(|(c, ls)| ls.iter().map(move |l| (c, *l)))
        .find(|&(_, l)| l > top)
    {
        bail!("the plan runs `{class}` at level {level}; {name} tops out at level {top}");
    }
    if !usage.bootstrap_slots.is_empty() && !bootstrappable {
        bail!("the plan bootstraps; {name} is not a bootstrappable set (N16BootFull, ToyBootN12)");
    }
    let slots = plan.slots.min(ctx.n() / 2);
    if let Some(&s) = usage
        .bootstrap_slots
        .iter()
        .find(|&&s| !s.is_power_of_two() || s > ctx.n() / 2)
    {
        bail!(
            "the plan bootstraps {s} slots; {name} has at most {} (powers of two)",
            ctx.n() / 2
        );
    }
    eprintln!(
        "cachemir bench --plan {} ({} instructions{}): {name} (N = 2^{}, top level {top}), {} thread(s), {} runs",
        plan.name,
        plan.instructions.len(),
        plan_set.map_or(String::new(), |p| format!(", compiled for {p}")),
        ctx.params().log_n,
        args.threads,
        args.runs
    );

    // Keys up to the highest level a key switch is timed at.
    let mut plan_levels: BTreeMap<&'static str, Vec<u32>> = BTreeMap::new();
    for (&class, used) in &usage.levels {
        let lowest = u32::from(class == "rescale" || class == "level.down");
        plan_levels.insert(class, spanning(used, lowest, top));
    }
    let key_level = |classes: &[&str]| {
        classes
            .iter()
            .filter_map(|c| plan_levels.get(c).and_then(|l| l.last()))
            .max()
            .copied()
    };
    let mut kg = KeyGenerator::new(&ctx)?;
    let sk = kg.secret_key();
    let rlk = key_level(&["mul", "relin"])
        .map(|l| kg.relin_key(&sk, l as usize))
        .transpose()?;
    let steps: Vec<i64> = (1..=usage.hoisted_steps.clamp(1, MAX_HOISTED_STEPS) as i64).collect();
    let gks = match key_level(&["rot", "rot.h", "rot.h/step"]) {
        Some(l) => kg.galois_keys(&sk, &steps, false, l as usize)?,
        None => GaloisKeys::default(),
    };
    let mut rng = Csprng::from_os()?;
    let values: Vec<f64> = (0..slots)
        .map(|_| (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let timer = Timer {
        ctx,
        sk,
        rlk,
        gks,
        steps,
        slots,
        runs: args.runs,
        values,
    };

    let mut instructions = BTreeMap::new();
    eprintln!(
        "{:<11} {:<28} {:>10} {:>13}",
        "class", "ms at levels", "fixed ms", "ms per limb"
    );
    for (class, levels) in &plan_levels {
        let mut points = Vec::with_capacity(levels.len());
        for &level in levels {
            points.push((level, timer.class(class, level)?));
        }
        let cost = fit(&points);
        let shown: Vec<String> = points
            .iter()
            .map(|(l, ms)| format!("{l}:{ms:.3}"))
            .collect();
        eprintln!(
            "{class:<11} {:<28} {:>10.4} {:>13.4}",
            shown.join(" "),
            cost.fixed_ms,
            cost.per_limb_ms
        );
        instructions.insert(class.to_string(), cost);
    }
    let mut bootstrap_ms = Vec::new();
    let boot_runs = args.runs.div_ceil(2);
    for &boot_slots in &usage.bootstrap_slots {
        let ctx = &timer.ctx;
        let bs = Bootstrapper::new(ctx, &BootstrapConfig::new(boot_slots), &timer.sk)?;
        let scale = ctx.params().default_scale();
        let input: Vec<f64> = timer
            .values
            .iter()
            .copied()
            .cycle()
            .take(boot_slots)
            .collect();
        let pt = Encoder::new(ctx).encode_real(&input, boot_slots, 0, scale)?;
        let ct = Encryptor::new(ctx)?.encrypt_sk(&timer.sk, &pt)?;
        let (ms, _) = time(boot_runs, || Ok(bs.bootstrap(&ct)?))?;
        eprintln!("boot        {boot_slots} slots: {ms:.1} ms ({boot_runs} runs)");
        bootstrap_ms.push((boot_slots, ms));
    }

    let model = CostModel {
        source: format!(
            "cachemir bench --plan {}: cachemir-ckks on the CPU ({}), {name}, {} thread(s), medians of {} runs ({boot_runs} for boot), fitted over the plan's levels",
            plan.name,
            cpu_model().unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            args.threads,
            args.runs
        ),
        log_n: timer.ctx.params().log_n as u32,
        instructions,
        bootstrap_ms,
    };
    let text = serde_json::to_string_pretty(&model)?;
    std::fs::write(output, text + "\n").with_context(|| format!("writing {}", output.display()))?;
    CostModel::from_file(output)?;
    eprintln!("wrote {}", output.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spanning_levels_cover_the_range_and_give_a_slope() {
        let used = |l: &[u32]| l.iter().copied().collect::<BTreeSet<u32>>();
        assert_eq!(spanning(&used(&[0, 2, 3, 7, 9]), 0, 25), [0, 3, 9]);
        assert_eq!(spanning(&used(&[4]), 0, 25), [4, 5]);
        assert_eq!(spanning(&used(&[25]), 1, 25), [24, 25]);
        assert_eq!(spanning(&used(&[1]), 1, 1), [1]);
        assert!(spanning(&used(&[]), 0, 25).is_empty());
    }

    #[test]
    fn fit_recovers_a_line_and_stays_non_negative() {
        let line = fit(&[(0, 3.0), (4, 7.0), (9, 12.0)]);
        assert!((line.fixed_ms - 2.0).abs() < 1e-12 && (line.per_limb_ms - 1.0).abs() < 1e-12);
        // A negative intercept: through the origin instead.
        let origin = fit(&[(0, 0.5), (9, 20.0)]);
        assert_eq!(origin.fixed_ms, 0.0);
        assert!((origin.per_limb_ms - (0.5 + 200.0) / 101.0).abs() < 1e-12);
        // Noise that decreases with the level: the mean.
        let flat = fit(&[(1, 2.0), (5, 1.0)]);
        assert_eq!((flat.fixed_ms, flat.per_limb_ms), (1.5, 0.0));
        // One point: proportional to the limbs.
        let one = fit(&[(3, 8.0)]);
        assert_eq!((one.fixed_ms, one.per_limb_ms), (0.0, 2.0));
    }
}
