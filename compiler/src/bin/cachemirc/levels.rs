//! `--params` and its companions: the level pass's options, and its one-line summary.

use crate::args::{CompileArgs, PlacementArg};
use crate::error::input_error;
use anyhow::{Context, Result};

/// The level pass's options from `--params NAME|FILE.json` and its companions (see
/// [`CompileArgs::params`]); `None` without `--params`. Checked before any other work.
pub(crate) fn level_options(
    args: &CompileArgs,
) -> Result<Option<cachemir_compiler::levels::LevelOptions>> {
    use cachemir_compiler::levels::{LevelOptions, StatePolicy, Strategy, params};
    let Some(name) = &args.params else {
        return Ok(None);
    };
    let known = || {
        params::named()
            .iter()
            .map(|p| p.name.clone())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let parameters = match params::by_name(name) {
        Some(p) => p,
        None if name.ends_with(".json") => {
            let text = std::fs::read_to_string(name)
                .with_context(|| format!("reading --params {name}"))
                .map_err(input_error)?;
            let given: cachemir_ir::plan::Parameters = serde_json::from_str(&text)
                .with_context(|| format!("--params {name}"))
                .map_err(input_error)?;
            // Only sets whose primes the CKKS crate builds and checks are accepted.
            match params::by_name(&given.name) {
                Some(checked) if checked == given => checked,
                _ => {
                    return Err(input_error(anyhow::anyhow!(
                        "--params {name}: `{}` is not one of the checked parameter sets ({})",
                        given.name,
                        known()
                    )));
                }
            }
        }
        None => {
            return Err(input_error(anyhow::anyhow!(
                "--params {name}: unknown parameter set (known: {})",
                known()
            )));
        }
    };
    if parameters.toy && !args.insecure {
        return Err(input_error(anyhow::anyhow!(
            "--params {}: an insecure test set; pass --insecure to use it anyway",
            parameters.name
        )));
    }
    let mut options = LevelOptions::new(parameters);
    if let Some(path) = &args.cost_model {
        options.cost = cachemir_ir::plan::CostModel::from_file(path).map_err(input_error)?;
    }
    options.key_budget_bytes = Some((args.key_budget * 1e9) as u64);
    options.strategy = match args.placement {
        PlacementArg::KvAware => Strategy::Optimal(StatePolicy::Optimised),
        PlacementArg::Greedy => Strategy::Greedy,
    };
    Ok(Some(options))
}

/// One line on the level pass: parameters, bootstraps, estimated latency.
pub(crate) fn leveling_summary(l: &cachemir_compiler::levels::Leveled) -> String {
    let p = l
        .plan
        .parameters
        .as_ref()
        .expect("leveled plans have parameters");
    format!(
        "levels: {} (N = 2^{}, top level {}, bootstraps to {}), {} bootstrapped ciphertexts at \
         {} sites, estimated {:.1} s per run (placement {}); {} rotation keys ({:.1} GB), {} \
         rotations ({} before composing)",
        p.name,
        p.log_n,
        p.max_level,
        p.bootstrap_level.unwrap_or(0),
        l.bootstrapped_ciphertexts,
        l.placement.bootstraps(),
        l.placement.cost_ms / 1e3,
        if l.placement.greedy_fallback {
            "greedy waterline: the state-capped search found none"
        } else if l.placement.exact {
            "exact"
        } else {
            "state-capped"
        },
        l.keys.keys.len(),
        l.keys.bytes as f64 / 1e9,
        l.keys.rotations_after,
        l.keys.rotations_before
    )
}
