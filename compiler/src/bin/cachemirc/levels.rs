//! `--params` and its companions: the level pass's options, and its one-line summary.

use crate::args::{CompileArgs, PlacementArg};
use crate::error::input_error;
use anyhow::{Context, Result};

/// The level pass's options from `--params NAME|FILE.json|auto` and its companions (see
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
        // `--params auto`: the set is chosen after lowering (`select_parameters`); until then
        // the options carry the bootstrappable set, the one `auto` falls back to.
        None if is_auto(args) => params::by_name("N16BootFull").expect("a named set"),
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

/// Whether `--params auto` asks for the parameters to be chosen from the plan's needs.
pub(crate) fn is_auto(args: &CompileArgs) -> bool {
    args.params
        .as_deref()
        .is_some_and(|p| p.eq_ignore_ascii_case("auto"))
}

/// `--params auto`: replaces `options.parameters` by the set chosen for `plan`
/// ([`cachemir_compiler::levels::select::select`]: leveled sets are reported, not taken, since
/// the cpu backend runs only the named bootstrappable sets); returns the summary line.
pub(crate) fn select_parameters(
    plan: &cachemir_ir::plan::Plan,
    options: &mut cachemir_compiler::levels::LevelOptions,
) -> Result<String> {
    use cachemir_compiler::levels::select::select;
    let budget = options.key_budget_bytes.unwrap_or(u64::MAX);
    let selection = select(plan, &options.cost, budget, false)
        .map_err(|e| input_error(anyhow::anyhow!("--params auto: {e}")))?;
    options.parameters = selection.parameters.clone();
    let needs = &selection.needs;
    let depth = needs
        .depth
        .map_or_else(|| "no leveled chain".to_string(), |d| format!("depth {d}"));
    Ok(format!(
        "parameters: {} (--params auto; needs {} slots, {depth}, {} switching keys: {})",
        selection.parameters.name, needs.slots, needs.switching_keys, selection.reason
    ))
}
