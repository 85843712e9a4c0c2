//! The text form of a [`PlanReport`]: a header, the per-layer table with totals, instructions by
//! mnemonic, the level profile, the bootstraps, the key set, weights, peak memory and the decode
//! cost. `docs/report.md` explains how to read it.

use super::{CacheScaling, LayerReport, PlanReport};
use std::fmt::Write;

impl PlanReport {
    /// The human-readable report.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.header(&mut out);
        self.table(&mut out);
        self.mnemonics(&mut out);
        self.levels(&mut out);
        self.bootstrap_list(&mut out);
        self.key_summary(&mut out);
        self.rest(&mut out);
        out
    }

    fn header(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "plan {}: {} slots, {} instructions over {} registers",
            self.plan, self.slots, self.instructions, self.registers
        );
        match &self.parameters {
            Some(p) => {
                let boot = p.bootstrap_level.map_or_else(
                    || "no bootstrapping".into(),
                    |l| format!("bootstrap to {l}"),
                );
                let _ = writeln!(
                    out,
                    "parameters {}: N = 2^{}, scale 2^{}, levels 0..={}, {boot}, dnum {}, {} \
                     special primes{}",
                    p.name,
                    p.log_n,
                    p.log_scale,
                    p.max_level,
                    p.dnum,
                    p.special_primes,
                    if p.toy { " (toy, insecure)" } else { "" }
                );
            }
            None => {
                let _ = writeln!(out, "parameters: none (unleveled plan)");
            }
        }
        let _ = writeln!(out, "cost model: {}", self.latency.cost_model);
        for warning in &self.warnings {
            let _ = writeln!(out, "warning: {warning}");
        }
    }

    fn table(&self, out: &mut String) {
        let _ = writeln!(
            out,
            "\n{:<6} {:>8} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>4} {:>5} {:>5} {:>12}",
            "layer",
            "ops",
            "rot",
            "rot.h",
            "key-sw",
            "ct-ct",
            "ct-pt",
            "scalar",
            "rescale",
            "boot",
            "depth",
            "cumul",
            "latency ms"
        );
        for layer in self.layers.iter().chain([&self.total]) {
            let name = if std::ptr::eq(layer, &self.total) {
                "total".to_string()
            } else {
                layer_name(layer)
            };
            let t = &layer.tally;
            let _ = writeln!(
                out,
                "{name:<6} {:>8} {:>6} {:>6} {:>7} {:>6} {:>6} {:>6} {:>7} {:>4} {:>5} {:>5} {:>12.1}",
                t.operations(),
                t.rotations,
                t.hoisted_groups,
                t.key_switches,
                t.ct_ct_mults,
                t.ct_pt_mults,
                t.scalar_mults,
                t.rescales,
                t.bootstraps,
                layer.depth,
                layer.cumulative_depth,
                t.latency_ms
            );
        }
        let _ = writeln!(
            out,
            "(ops: instructions with each hoisted rotation step counted; rot: rotations, hoisted \
             steps included; rot.h: hoisted groups; depth: within the layer; cumul: since a load \
             or bootstrap)"
        );
    }

    fn mnemonics(&self, out: &mut String) {
        let _ = writeln!(out, "\ninstructions by mnemonic");
        for layer in self.layers.iter().chain([&self.total]) {
            let name = if std::ptr::eq(layer, &self.total) {
                "total".to_string()
            } else {
                layer_name(layer)
            };
            let list: Vec<String> = layer
                .tally
                .counts
                .iter()
                .map(|(m, n)| format!("{m} {n}"))
                .collect();
            let _ = writeln!(out, "  {name:<6} {}", list.join(", "));
        }
    }

    fn levels(&self, out: &mut String) {
        let Some(profile) = &self.total.level_profile else {
            let latency = match self.latency.assumed_level {
                Some(level) => format!("every instruction costed at level {level}"),
                None => String::new(),
            };
            let _ = writeln!(out, "\nlevel profile: none (unleveled plan; {latency})");
            return;
        };
        let _ = writeln!(
            out,
            "\nlevel profile (operating level: instructions, latency)"
        );
        for c in profile {
            let _ = writeln!(
                out,
                "  level {:>3}: {:>8} instructions {:>12.1} ms",
                c.level, c.instructions, c.latency_ms
            );
        }
    }

    fn bootstrap_list(&self, out: &mut String) {
        let total = self
            .bootstraps
            .iter()
            .fold(0.0, |sum, b| sum + b.latency_ms);
        let _ = writeln!(
            out,
            "\nbootstraps: {} ({:.1} ms)",
            self.bootstraps.len(),
            total
        );
        if self.bootstraps.is_empty() {
            return;
        }
        let _ = writeln!(
            out,
            "  {:>7} {:>5} {:>6} {:>7} {:>8} {:>21} {:>10}  site",
            "instr", "layer", "slots", "level", "restored", "input range", "ms"
        );
        for b in &self.bootstraps {
            let layer = b.layer.map_or_else(|| "-".into(), |l| l.to_string());
            let level = match b.input_level {
                Some(l) => format!("{l}→{}", b.output_level),
                None => format!("→{}", b.output_level),
            };
            let restored = b
                .levels_restored
                .map_or_else(|| "-".into(), |r| r.to_string());
            let range = b.input_range.map_or_else(
                || "-".into(),
                |[low, high]| format!("[{low:.4}, {high:.4}]"),
            );
            let _ = writeln!(
                out,
                "  {:>7} {layer:>5} {:>6} {level:>7} {restored:>8} {range:>21} {:>10.1}  {}",
                b.instruction, b.slots, b.latency_ms, b.site
            );
        }
    }

    fn key_summary(&self, out: &mut String) {
        let keys = &self.keys;
        let used = keys.rotations.iter().filter(|k| k.uses > 0).count();
        let _ = writeln!(
            out,
            "\nkeys: {} rotation steps ({} used), {}",
            keys.rotation_steps,
            used,
            match &keys.relinearization {
                Some(r) => format!("relinearization key ({} mul)", r.uses),
                None => "no relinearization key".into(),
            }
        );
        let Some(total) = keys.total_bytes else {
            let _ = writeln!(out, "  (unleveled plan: key sizes depend on the levels)");
            return;
        };
        // Rotation keys grouped by the level they are sized at, highest first.
        let mut by_level: std::collections::BTreeMap<u32, (Vec<i32>, u64)> = Default::default();
        for k in &self.keys.rotations {
            if let (Some(level), Some(bytes)) = (k.level, k.bytes) {
                let entry = by_level.entry(level).or_default();
                entry.0.push(k.step);
                entry.1 += bytes;
            }
        }
        for (level, (steps, bytes)) in by_level.iter().rev() {
            let shown: Vec<String> = steps.iter().take(16).map(i32::to_string).collect();
            let more = if steps.len() > 16 {
                format!(", … {} more", steps.len() - 16)
            } else {
                String::new()
            };
            let _ = writeln!(
                out,
                "  level {level:>3}: {:>4} rotation keys {:>16}  steps {}{more}",
                steps.len(),
                bytes_text(*bytes),
                shown.join(", ")
            );
        }
        if let Some(r) = &keys.relinearization
            && let (Some(level), Some(bytes)) = (r.level, r.bytes)
        {
            let _ = writeln!(
                out,
                "  level {level:>3}: relinearization key {:>16}",
                bytes_text(bytes)
            );
        }
        let _ = writeln!(out, "  total key bytes {}", bytes_text(total));
    }

    fn rest(&self, out: &mut String) {
        let w = &self.weights;
        let _ = writeln!(
            out,
            "\nweights: {} tensors, {} elements, {} (f32); {} plaintexts",
            w.tensors,
            w.elements,
            bytes_text(w.bytes),
            w.plaintexts
        );
        let m = &self.memory;
        let bytes = m
            .peak_bytes
            .map_or_else(String::new, |b| format!(", {}", bytes_text(b)));
        let _ = writeln!(
            out,
            "peak memory: {} live ciphertexts{bytes} at instruction {} ({})",
            m.peak_ciphertexts, m.peak_instruction, m.peak_site
        );
        let _ = writeln!(
            out,
            "latency: {:.1} ms ({:.2} s){}",
            self.total.tally.latency_ms,
            self.total.tally.latency_ms / 1000.0,
            match self.latency.assumed_level {
                Some(level) => format!(", every instruction at assumed level {level}"),
                None => String::new(),
            }
        );
        if let Some(d) = &self.decode {
            let bytes = d
                .state_bytes
                .map_or_else(String::new, |b| format!(", {}", bytes_text(b)));
            let _ = writeln!(
                out,
                "decode step: {} KV-cache states in {} ciphertexts{bytes}; cache length {}: \
                 {:.1} ms per token",
                d.states, d.state_ciphertexts, d.cache_length, d.latency_ms_per_token
            );
            match &d.cache_scaling {
                Some(scaling) => cache_table(out, scaling),
                None => {
                    let _ = writeln!(
                        out,
                        "  (the states are not in the token-interleaved KV-cache layout: no \
                         extrapolation to other cache lengths)"
                    );
                }
            }
        }
    }
}

/// The decode latency split and its extrapolation to other cache lengths.
fn cache_table(out: &mut String, s: &CacheScaling) {
    let _ = writeln!(
        out,
        "  per token: {:.1} ms fixed + {:.1} ms attention over {} cache ciphertext{} per state \
         ({} tokens each)",
        s.fixed_ms,
        s.attention_ms,
        s.cache_ciphertexts,
        if s.cache_ciphertexts == 1 { "" } else { "s" },
        s.tokens_per_ciphertext
    );
    let layers: Vec<String> = s
        .attention_by_layer
        .iter()
        .map(|l| {
            let name = l.layer.map_or_else(|| "other".into(), |l| l.to_string());
            format!("{name} {:.1}", l.attention_ms)
        })
        .collect();
    let _ = writeln!(out, "  attention ms by layer: {}", layers.join(", "));
    let _ = writeln!(
        out,
        "  {:>12} {:>12} {:>14}",
        "cache length", "ciphertexts", "ms per token"
    );
    for p in &s.table {
        let _ = writeln!(
            out,
            "  {:>12} {:>12} {:>14.1}{}",
            p.cache_length,
            p.cache_ciphertexts,
            p.latency_ms,
            if p.compiled { "  (this plan)" } else { "" }
        );
    }
    let _ = writeln!(
        out,
        "  (extrapolated from this plan's cache length: the attention part — instructions on \
         values of one cache ciphertext, found by following the KV-cache loads through the \
         stream — times the ratio of cache ciphertexts, plus the fixed part; a plan compiled \
         for another length places its bootstraps anew)"
    );
}

fn layer_name(layer: &LayerReport) -> String {
    layer
        .layer
        .map_or_else(|| "other".into(), |l| l.to_string())
}

/// `1234567 bytes (1.18 MiB)`.
fn bytes_text(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = None;
    for u in UNITS {
        if value < 1024.0 {
            break;
        }
        value /= 1024.0;
        unit = Some(u);
    }
    match unit {
        Some(u) => format!("{bytes} bytes ({value:.2} {u})"),
        None => format!("{bytes} bytes"),
    }
}
