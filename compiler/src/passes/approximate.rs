//! `approximate`: replaces every non-polynomial op on encrypted data by a Chebyshev polynomial
//! (Exp, Erf, Tanh, Sigmoid, Sqrt, GELU, SiLU) or Newton iterations from a polynomial start
//! (Reciprocal, Rsqrt) on the calibrated domain of its input, widened by a margin, to a target
//! absolute error of 2^−precision_bits. Each site is recorded with its domain, degree, depth and
//! predicted max error.

use super::{CompileError, Pass, computed_on_ciphertexts, emit, encrypted, scalar};
use crate::approx::chebyshev::{Chebyshev, least_degree};
use crate::approx::newton::{self, Inverse};
use crate::approx::{EvaluationPlan, Function, evaluation_depth};
use cachemir_ir::op::Polynomial;
use cachemir_ir::{BinaryOp, GeluApproximation, Graph, Op, UnaryOp, ValueRef};
use serde::Serialize;

/// How closely, and on how wide a domain, functions are approximated.
#[derive(Debug, Clone, Copy)]
pub struct ApproximationOptions {
    /// Target absolute error 2^−bits.
    pub precision_bits: u32,
    /// The calibrated range is widened by this fraction of its width on each side (for
    /// positive-only functions: multiplied by 1 ± margin).
    pub margin: f64,
    /// Highest polynomial degree allowed (depth ⌈log2(d + 1)⌉).
    pub max_degree: usize,
}

impl Default for ApproximationOptions {
    fn default() -> Self {
        Self {
            precision_bits: 12,
            margin: 0.1,
            max_degree: 255,
        }
    }
}

/// How one site is evaluated.
#[derive(Debug, Clone, Serialize)]
pub struct ApproximationSite {
    /// The node it replaced (its source location).
    pub node: String,
    pub function: String,
    pub method: String,
    pub domain: (f64, f64),
    pub degree: usize,
    pub depth: u32,
    pub max_error: f64,
}

/// The approximate pass; `sites` lists what it did after a run.
#[derive(Debug, Default)]
pub struct Approximate {
    pub options: ApproximationOptions,
    pub sites: Vec<ApproximationSite>,
}

const NAME: &str = "approximate";

enum Method {
    Polynomial(Function),
    Newton(Inverse),
}

impl Pass for Approximate {
    fn name(&self) -> &'static str {
        NAME
    }

    fn run(&mut self, graph: &mut Graph) -> Result<String, CompileError> {
        for node in graph.topological_order() {
            let value = ValueRef { node, output: 0 };
            if graph.value_type(value).is_none() || !computed_on_ciphertexts(graph, value) {
                continue;
            }
            let method = match &graph.node(node).op {
                Op::Unary(UnaryOp::Exp) => Method::Polynomial(Function::Exp),
                Op::Unary(UnaryOp::Erf) => Method::Polynomial(Function::Erf),
                Op::Unary(UnaryOp::Tanh) => Method::Polynomial(Function::Tanh),
                Op::Unary(UnaryOp::Sigmoid) => Method::Polynomial(Function::Sigmoid),
                Op::Unary(UnaryOp::Sqrt) => Method::Polynomial(Function::Sqrt),
                Op::Gelu {
                    approximation: GeluApproximation::Erf,
                } => Method::Polynomial(Function::GeluErf),
                Op::Gelu {
                    approximation: GeluApproximation::Tanh,
                } => Method::Polynomial(Function::GeluTanh),
                Op::Silu => Method::Polynomial(Function::Silu),
                Op::Unary(UnaryOp::Reciprocal) => Method::Newton(Inverse::Reciprocal),
                Op::Unary(UnaryOp::Rsqrt) => Method::Newton(Inverse::InverseSqrt),
                Op::Clip { min, max } => {
                    let (min, max) = (*min, *max);
                    let replacement = self.clip(graph, value, min, max)?;
                    graph
                        .replace_uses(value, replacement)
                        .map_err(|source| CompileError::Ir { pass: NAME, source })?;
                    continue;
                }
                op => {
                    if let Some(reason) = unsupported(graph, value, op) {
                        return Err(CompileError::at(graph, value, reason));
                    }
                    continue;
                }
            };
            let replacement = self.approximate(graph, value, method)?;
            // The approximation stands for the same values: later sites read its range.
            let range = graph.calibrated_range(value);
            graph.set_calibrated_range(replacement, range);
            graph
                .replace_uses(value, replacement)
                .map_err(|source| CompileError::Ir { pass: NAME, source })?;
        }
        graph.prune(false);
        let depth = self.sites.iter().map(|s| s.depth).max().unwrap_or(0);
        Ok(format!(
            "{} sites approximated, deepest {depth} levels",
            self.sites.len()
        ))
    }
}

/// Why an op on encrypted data has no CKKS evaluation (after decomposition), if it has none.
fn unsupported(graph: &Graph, value: ValueRef, op: &Op) -> Option<String> {
    let operands = graph.operands(value.node);
    match op {
        Op::Unary(
            u @ (UnaryOp::Log
            | UnaryOp::Abs
            | UnaryOp::Floor
            | UnaryOp::Ceil
            | UnaryOp::Not
            | UnaryOp::Sin
            | UnaryOp::Cos),
        ) => Some(format!("{u:?} of encrypted data has no approximation here")),
        Op::Binary(BinaryOp::Div) if encrypted(graph, operands[1]) => {
            Some("division by encrypted data: run `decompose` first".into())
        }
        Op::Binary(BinaryOp::Max | BinaryOp::Min | BinaryOp::Pow) => {
            Some("max/min and non-integer powers of encrypted data are not supported".into())
        }
        Op::Compare(_) => Some("comparisons of encrypted data are not supported".into()),
        Op::Where if encrypted(graph, operands[0]) => {
            Some("the condition of Where must be public".into())
        }
        Op::Reduce {
            op: cachemir_ir::ReduceOp::Max | cachemir_ir::ReduceOp::L2,
            ..
        } => Some("ReduceMax / ReduceL2 of encrypted data are not supported".into()),
        Op::Softmax { .. }
        | Op::LayerNormalization { .. }
        | Op::RmsNorm { .. }
        | Op::Attention { .. } => Some("run `decompose` before `approximate`".into()),
        Op::Cast { to } if !to.is_float() => {
            Some("casting encrypted data to integers is not supported".into())
        }
        Op::Gather { .. } if encrypted(graph, operands[1]) => {
            Some("encrypted indices are not supported".into())
        }
        _ => None,
    }
}

impl Approximate {
    /// A clip whose input's calibrated range, widened by the margin, lies inside its bounds is
    /// the identity there (e.g. the `max(norm, 1e-12)` guard of an L2 normalisation); any other
    /// clip of encrypted data has no polynomial form.
    fn clip(
        &self,
        graph: &Graph,
        value: ValueRef,
        min: Option<f64>,
        max: Option<f64>,
    ) -> Result<ValueRef, CompileError> {
        let x = graph.operands(value.node)[0];
        let Some(range) = input_range(graph, x) else {
            return Err(CompileError::at(
                graph,
                value,
                "its input has no calibrated range: run `calibrate` first",
            ));
        };
        let (low, high) = widen(range, self.options.margin, range.0 > 0.0);
        if min.is_none_or(|m| low >= m) && max.is_none_or(|m| high <= m) {
            Ok(x)
        } else {
            Err(CompileError::at(
                graph,
                value,
                format!(
                    "clipping encrypted values in [{low}, {high}] to [{min:?}, {max:?}] has no polynomial form"
                ),
            ))
        }
    }

    fn approximate(
        &mut self,
        graph: &mut Graph,
        value: ValueRef,
        method: Method,
    ) -> Result<ValueRef, CompileError> {
        let x = graph.operands(value.node)[0];
        let Some((low, high)) = input_range(graph, x) else {
            return Err(CompileError::at(
                graph,
                value,
                "its input has no calibrated range: run `calibrate` first",
            ));
        };
        let node = graph.node(value.node).clone();
        let positive = matches!(
            method,
            Method::Newton(_) | Method::Polynomial(Function::Sqrt)
        );
        let domain = widen((low, high), self.options.margin, positive);
        if positive && domain.0 <= 0.0 {
            return Err(CompileError::at(
                graph,
                value,
                format!("needs a positive input, calibrated [{low}, {high}]"),
            ));
        }
        let target = 2f64.powi(-(self.options.precision_bits as i32));
        let base = node.output_names[0].clone();
        let (site, result) = match method {
            Method::Polynomial(function) => {
                let f = move |t: f64| function.evaluate(t);
                let Some((p, error)) = least_degree(f, domain, target, self.options.max_degree)
                else {
                    return Err(CompileError::at(
                        graph,
                        value,
                        format!(
                            "no polynomial of degree ≤ {} reaches 2^-{} on [{}, {}]",
                            self.options.max_degree,
                            self.options.precision_bits,
                            domain.0,
                            domain.1
                        ),
                    ));
                };
                let function_name = format!("{function:?}");
                let result = polynomial(graph, x, &p, error, &function_name, base, &node.source)?;
                let site = ApproximationSite {
                    node: node.source.to_string(),
                    function: function_name,
                    method: format!(
                        "Chebyshev, BSGS {}×{}",
                        EvaluationPlan::for_degree(p.degree()).baby_steps,
                        1 << EvaluationPlan::for_degree(p.degree()).giant_steps
                    ),
                    domain,
                    degree: p.degree(),
                    depth: evaluation_depth(p.degree()),
                    max_error: error,
                };
                (site, result)
            }
            Method::Newton(inverse) => {
                let plan = newton::plan(inverse, domain, target)
                    .map_err(|m| CompileError::at(graph, value, m))?;
                let result = newton_steps(graph, x, &plan, base, &node.source)?;
                let site = ApproximationSite {
                    node: node.source.to_string(),
                    function: format!("{inverse:?}"),
                    method: format!(
                        "Newton ×{} from degree {}",
                        plan.iterations,
                        plan.initial.degree()
                    ),
                    domain,
                    degree: plan.initial.degree(),
                    depth: plan.depth(),
                    max_error: plan.max_error,
                };
                (site, result)
            }
        };
        self.sites.push(site);
        Ok(result)
    }
}

/// The range an approximation of a function of `x` must cover: the author's `@range` when the
/// model states one (what they know beats what 32 samples showed), else the calibrated range.
fn input_range(graph: &Graph, x: ValueRef) -> Option<(f64, f64)> {
    let hinted = graph.node(x.node).hints.range.filter(|_| x.output == 0);
    hinted.or_else(|| graph.calibrated_range(x))
}

/// `[low, high]` widened by `margin` of its width on each side. Positive ranges (variances,
/// denominators) are scaled instead, so they stay positive, and their low end five times as
/// much: small variances vary most from input to input, and a wider start costs Newton little.
fn widen((low, high): (f64, f64), margin: f64, positive: bool) -> (f64, f64) {
    if positive && low > 0.0 {
        return (low / (1.0 + 5.0 * margin), high * (1.0 + margin));
    }
    let pad = (margin * (high - low)).max(1e-6 * high.abs().max(low.abs()).max(1.0));
    (low - pad, high + pad)
}

fn polynomial(
    graph: &mut Graph,
    x: ValueRef,
    p: &Chebyshev,
    max_error: f64,
    function: &str,
    name: String,
    source: &cachemir_ir::SourceLocation,
) -> Result<ValueRef, CompileError> {
    let op = Op::Polynomial(Polynomial {
        function: function.to_string(),
        domain: p.domain,
        coefficients: p.coefficients.clone(),
        max_error,
    });
    emit(graph, NAME, op, &[x], name, source)
}

/// The Newton iterations as graph ops, from the plan's initial polynomial.
fn newton_steps(
    graph: &mut Graph,
    x: ValueRef,
    plan: &newton::NewtonPlan,
    base: String,
    source: &cachemir_ir::SourceLocation,
) -> Result<ValueRef, CompileError> {
    let dtype = graph.value_type(x).expect("exists").dtype;
    let initial_name = format!("{base}:newton0");
    let function = format!("{:?}Start", plan.inverse);
    let mut y = polynomial(
        graph,
        x,
        &plan.initial,
        plan.initial_relative_error,
        &function,
        initial_name,
        source,
    )?;
    for step in 1..=plan.iterations {
        let named = |what: &str| format!("{base}:newton{step}.{what}");
        let mul = |g: &mut Graph, a, b, what: &str| {
            emit(
                g,
                NAME,
                Op::Binary(BinaryOp::Mul),
                &[a, b],
                named(what),
                source,
            )
        };
        // Reciprocal: y ← y·(2 − x·y); inverse square root: y ← (y/2)·(3 − x·y·y).
        let xy = mul(graph, x, y, "xy")?;
        let (constant, subtrahend, factor) = match plan.inverse {
            Inverse::Reciprocal => (2.0, xy, y),
            Inverse::InverseSqrt => {
                let xyy = mul(graph, xy, y, "xyy")?;
                let half = scalar(graph, 0.5, dtype, named("half"), source);
                (3.0, xyy, mul(graph, y, half, "half_y")?)
            }
        };
        let constant = scalar(graph, constant, dtype, named("constant"), source);
        let correction = emit(
            graph,
            NAME,
            Op::Binary(BinaryOp::Sub),
            &[constant, subtrahend],
            named("correction"),
            source,
        )?;
        let last = if step == plan.iterations {
            base.clone()
        } else {
            named("y")
        };
        y = emit(
            graph,
            NAME,
            Op::Binary(BinaryOp::Mul),
            &[factor, correction],
            last,
            source,
        )?;
    }
    Ok(y)
}

/// The approximation table as aligned text.
pub fn table(sites: &[ApproximationSite]) -> String {
    let mut out = format!(
        "{:<12} {:<24} {:>24} {:>6} {:>5} {:>10}  {}\n",
        "function", "method", "domain", "degree", "depth", "max error", "site"
    );
    for s in sites {
        out.push_str(&format!(
            "{:<12} {:<24} {:>24} {:>6} {:>5} {:>10.2e}  {}\n",
            s.function,
            s.method,
            format!("[{:.4}, {:.4}]", s.domain.0, s.domain.1),
            s.degree,
            s.depth,
            s.max_error,
            s.node
        ));
    }
    out
}
