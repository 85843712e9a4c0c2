//! The plan summary `cachemirc compile` prints, and the scheduler's line.

/// The plan summary `compile` prints: slots, period, instruction counts by mnemonic, rotation
/// steps, weights, and per layer the rotations and multiplications (with `verbose`, every
/// kernel). No timings or paths, so it is stable for a given model and compiler.
pub(crate) fn plan_summary(lowered: &cachemir_compiler::lower::Lowered, verbose: bool) -> String {
    use std::collections::BTreeMap;
    use std::fmt::Write;

    let plan = &lowered.plan;
    let counts = plan.counts();
    let weight_elements: usize = plan
        .weight_shapes
        .values()
        .map(|s| s.iter().product::<usize>())
        .sum();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "plan {}: {} slots, period {}",
        plan.name, plan.slots, lowered.period
    );
    let _ = writeln!(
        out,
        "ciphertexts: {} in, {} out ({} KV-cache states)",
        plan.inputs.len(),
        plan.outputs.len(),
        plan.states.len()
    );
    let _ = writeln!(
        out,
        "instructions: {} over {} registers, {} plaintexts, {} range checks",
        plan.instructions.len(),
        plan.registers,
        plan.plaintexts.len(),
        plan.checks.len()
    );
    let by_mnemonic: Vec<String> = counts.iter().map(|(m, n)| format!("{m} {n}")).collect();
    let _ = writeln!(out, "  {}", by_mnemonic.join(", "));
    let _ = writeln!(out, "rotation steps: {} distinct", plan.rotations.len());
    let _ = writeln!(
        out,
        "weights: {} tensors, {} bytes (f32)",
        plan.weight_shapes.len(),
        weight_elements * 4
    );

    // Per layer: the nodes' rotations, ct-pt and ct-ct multiplications; what the outputs add
    // (gathers into the KV-cache layout, masks) is the rest of the plan's totals.
    type Row = (usize, usize, usize);
    let mut layers: BTreeMap<Option<u32>, Row> = BTreeMap::new();
    for (_, layer, c) in &lowered.site_counts {
        let row = layers.entry(*layer).or_default();
        row.0 += c.rotations;
        row.1 += c.plaintext_multiplications;
        row.2 += c.ciphertext_multiplications;
    }
    let sum = layers
        .values()
        .fold((0, 0, 0), |a, r| (a.0 + r.0, a.1 + r.1, a.2 + r.2));
    let get = |m: &str| counts.get(m).copied().unwrap_or(0);
    let total = (get("rot") + get("rot.h"), get("mul.p"), get("mul"));
    let line = |out: &mut String, name: &str, (r, p, c): Row| {
        let _ = writeln!(out, "{name:<8} {r:>10} {p:>12} {c:>12}");
    };
    let _ = writeln!(
        out,
        "{:<8} {:>10} {:>12} {:>12}",
        "layer", "rotations", "ct-pt mults", "ct-ct mults"
    );
    for (layer, row) in &layers {
        if let Some(layer) = layer {
            line(&mut out, &layer.to_string(), *row);
        }
    }
    if let Some(row) = layers.get(&None) {
        line(&mut out, "other", *row);
    }
    line(
        &mut out,
        "outputs",
        (
            total.0.saturating_sub(sum.0),
            total.1.saturating_sub(sum.1),
            total.2.saturating_sub(sum.2),
        ),
    );
    line(&mut out, "total", total);
    if verbose {
        let width = lowered
            .kernels
            .iter()
            .map(|k| k.kernel.chars().count())
            .max()
            .unwrap_or(0);
        let _ = writeln!(
            out,
            "kernels ({})\n{:>9} {:>11} {:>11}  {:<width$}  site",
            lowered.kernels.len(),
            "rotations",
            "ct-pt mults",
            "ct-ct mults",
            "kernel"
        );
        for k in &lowered.kernels {
            let pad = width - k.kernel.chars().count();
            let _ = writeln!(
                out,
                "{:>9} {:>11} {:>11}  {}{:pad$}  {}",
                k.counts.rotations,
                k.counts.plaintext_multiplications,
                k.counts.ciphertext_multiplications,
                k.kernel,
                "",
                k.site
            );
        }
    }
    out
}

/// `schedule: peak … → … live ciphertexts (bytes), N registers`.
pub(crate) fn schedule_summary(
    before: &cachemir_compiler::report::memory::Memory,
    after: &cachemir_compiler::report::memory::Memory,
    registers: u32,
) -> String {
    let bytes = match (before.peak_bytes, after.peak_bytes) {
        (Some(b), Some(a)) => format!(
            " ({:.2} → {:.2} GiB)",
            b as f64 / f64::from(1u32 << 30),
            a as f64 / f64::from(1u32 << 30)
        ),
        _ => String::new(),
    };
    format!(
        "schedule: peak {} → {} live ciphertexts{bytes}, {registers} registers",
        before.peak_ciphertexts, after.peak_ciphertexts
    )
}
