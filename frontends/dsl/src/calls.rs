//! The DSL's functions: every IR op by its snake_case name, `linear` (MatMul plus bias),
//! `weight(…)` and `constant(…)`. Keyword arguments are the op's attributes.

use crate::ast::{Expr, Span};
use crate::diagnostic::{DslError, ErrorKind};
use crate::elaborate::{Elaborator, Val, as_f64, parse_dtype};
use cachemir_ir::{
    BinaryOp, CompareOp, DType, GeluApproximation, Op, ReduceOp, Tensor, UnaryOp, ValueRef,
};
use ndarray::{ArrayD, IxDyn};

/// The evaluated arguments of one call, checked off as the op reads them.
struct Arguments<'a, 'e, 's> {
    el: &'e mut Elaborator<'s>,
    call: &'a str,
    span: Span,
    positional: Vec<(Val, Span)>,
    keywords: Vec<(String, Val, Span, bool)>,
}

impl Arguments<'_, '_, '_> {
    fn error(&self, kind: ErrorKind, message: String, span: Span) -> DslError {
        self.el.error(kind, message, span)
    }

    fn count(&self) -> usize {
        self.positional.len()
    }

    /// Positional argument `i` as a tensor.
    fn tensor(&mut self, i: usize) -> Result<ValueRef, DslError> {
        let Some((v, span)) = self.positional.get(i).cloned() else {
            return Err(self.error(
                ErrorKind::Type,
                format!(
                    "`{}` needs at least {} tensor argument(s), got {}",
                    self.call,
                    i + 1,
                    self.count()
                ),
                self.span,
            ));
        };
        match v {
            Val::Tensor(t) => Ok(t),
            Val::Word(w) => Err(self.error(ErrorKind::Name, format!("undefined name `{w}`"), span)),
            Val::Int(_) | Val::Float(_) => {
                let dtype = self
                    .positional
                    .iter()
                    .find_map(|(v, _)| match v {
                        Val::Tensor(t) => Some(self.el.graph.value_type(*t).expect("exists").dtype),
                        _ => None,
                    })
                    .filter(|d| *d != DType::Bool)
                    .unwrap_or(DType::F32);
                self.el.as_tensor(v, dtype, span)
            }
            other => Err(self.error(
                ErrorKind::Type,
                format!(
                    "argument {} of `{}` must be a tensor, found {}",
                    i + 1,
                    self.call,
                    other.kind()
                ),
                span,
            )),
        }
    }

    fn tensors(&mut self, min: usize, max: usize) -> Result<Vec<ValueRef>, DslError> {
        if self.count() < min || self.count() > max {
            let expected = if min == max {
                min.to_string()
            } else if max == usize::MAX {
                format!("at least {min}")
            } else {
                format!("{min} to {max}")
            };
            return Err(self.error(
                ErrorKind::Type,
                format!(
                    "`{}` takes {expected} tensor argument(s), got {}",
                    self.call,
                    self.count()
                ),
                self.span,
            ));
        }
        (0..self.count()).map(|i| self.tensor(i)).collect()
    }

    fn keyword(&mut self, key: &str) -> Option<(Val, Span)> {
        self.keywords
            .iter_mut()
            .find(|(k, ..)| k == key)
            .map(|(_, v, s, used)| {
                *used = true;
                (v.clone(), *s)
            })
    }

    fn int(&mut self, key: &str, default: Option<i64>) -> Result<i64, DslError> {
        match self.keyword(key) {
            Some((Val::Int(v), _)) => Ok(v),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be an integer, found {}", v.kind()),
                span,
            )),
            None => default.ok_or_else(|| {
                self.error(
                    ErrorKind::Type,
                    format!("`{}` needs `{key}=…`", self.call),
                    self.span,
                )
            }),
        }
    }

    fn float(&mut self, key: &str, default: Option<f64>) -> Result<f64, DslError> {
        match self.keyword(key) {
            Some((v @ (Val::Int(_) | Val::Float(_)), _)) => Ok(as_f64(&v)),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be a number, found {}", v.kind()),
                span,
            )),
            None => default.ok_or_else(|| {
                self.error(
                    ErrorKind::Type,
                    format!("`{}` needs `{key}=…`", self.call),
                    self.span,
                )
            }),
        }
    }

    fn optional_float(&mut self, key: &str) -> Result<Option<f64>, DslError> {
        if self.keywords.iter().any(|(k, ..)| k == key) {
            self.float(key, None).map(Some)
        } else {
            Ok(None)
        }
    }

    fn flag(&mut self, key: &str) -> Result<bool, DslError> {
        match self.keyword(key) {
            None => Ok(false),
            Some((Val::Word(w), _)) if w == "true" => Ok(true),
            Some((Val::Word(w), _)) if w == "false" => Ok(false),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be true or false, found {}", v.kind()),
                span,
            )),
        }
    }

    fn ints(&mut self, key: &str) -> Result<Option<Vec<i64>>, DslError> {
        match self.keyword(key) {
            None => Ok(None),
            Some((Val::List(items), span)) => items
                .iter()
                .map(|v| match v {
                    Val::Int(i) => Ok(*i),
                    other => Err(self.error(
                        ErrorKind::Type,
                        format!("`{key}` must list integers, found {}", other.kind()),
                        span,
                    )),
                })
                .collect::<Result<_, _>>()
                .map(Some),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be a list like [0, 1], found {}", v.kind()),
                span,
            )),
        }
    }

    fn string(&mut self, key: &str) -> Result<String, DslError> {
        match self.keyword(key) {
            Some((Val::Str(s), _)) => Ok(s),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be a string, found {}", v.kind()),
                span,
            )),
            None => Err(self.error(
                ErrorKind::Type,
                format!("`{}` needs `{key}=\"…\"`", self.call),
                self.span,
            )),
        }
    }

    fn floats(&mut self, key: &str) -> Result<Vec<f64>, DslError> {
        match self.keyword(key) {
            Some((Val::List(items), span)) => items
                .iter()
                .map(|v| match v {
                    Val::Int(_) | Val::Float(_) => Ok(as_f64(v)),
                    other => Err(self.error(
                        ErrorKind::Type,
                        format!("`{key}` must list numbers, found {}", other.kind()),
                        span,
                    )),
                })
                .collect(),
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!("`{key}` must be a list of numbers, found {}", v.kind()),
                span,
            )),
            None => Err(self.error(
                ErrorKind::Type,
                format!("`{}` needs `{key}=[…]`", self.call),
                self.span,
            )),
        }
    }

    fn required_ints(&mut self, key: &str) -> Result<Vec<i64>, DslError> {
        self.ints(key)?.ok_or_else(|| {
            self.error(
                ErrorKind::Type,
                format!("`{}` needs `{key}=[…]`", self.call),
                self.span,
            )
        })
    }

    fn sizes(&mut self, key: &str) -> Result<Vec<usize>, DslError> {
        let span = self.span;
        self.required_ints(key)?
            .into_iter()
            .map(|v| {
                usize::try_from(v).map_err(|_| {
                    self.error(
                        ErrorKind::Type,
                        format!("`{key}` has a negative size {v}"),
                        span,
                    )
                })
            })
            .collect()
    }

    fn word(&mut self, key: &str, allowed: &[&str], default: &str) -> Result<String, DslError> {
        match self.keyword(key) {
            None => Ok(default.to_string()),
            Some((Val::Word(w), span)) => {
                if allowed.contains(&w.as_str()) {
                    Ok(w)
                } else {
                    Err(self.error(
                        ErrorKind::Type,
                        format!("`{key}` must be one of {}, found `{w}`", allowed.join(", ")),
                        span,
                    ))
                }
            }
            Some((v, span)) => Err(self.error(
                ErrorKind::Type,
                format!(
                    "`{key}` must be one of {}, found {}",
                    allowed.join(", "),
                    v.kind()
                ),
                span,
            )),
        }
    }

    fn dtype(&mut self, key: &str, default: DType) -> Result<DType, DslError> {
        let word = self.word(key, &["f32", "f64", "i64", "bool"], default.name())?;
        Ok(parse_dtype(&word).expect("allowed words are dtypes"))
    }

    /// Reports an unknown keyword.
    fn finish(&self) -> Result<(), DslError> {
        if let Some((key, _, span, _)) = self.keywords.iter().find(|(.., used)| !used) {
            return Err(self.el.error(
                ErrorKind::Type,
                format!("`{}` has no argument `{key}`", self.call),
                *span,
            ));
        }
        Ok(())
    }

    fn shape_of(&self, v: ValueRef) -> Vec<usize> {
        self.el.graph.value_type(v).expect("exists").shape.clone()
    }
}

fn unary(name: &str) -> Option<UnaryOp> {
    Some(match name {
        "neg" => UnaryOp::Neg,
        "abs" => UnaryOp::Abs,
        "sqrt" => UnaryOp::Sqrt,
        "reciprocal" => UnaryOp::Reciprocal,
        "rsqrt" => UnaryOp::Rsqrt,
        "exp" => UnaryOp::Exp,
        "log" => UnaryOp::Log,
        "erf" => UnaryOp::Erf,
        "tanh" => UnaryOp::Tanh,
        "sigmoid" => UnaryOp::Sigmoid,
        "sin" => UnaryOp::Sin,
        "cos" => UnaryOp::Cos,
        "floor" => UnaryOp::Floor,
        "ceil" => UnaryOp::Ceil,
        "not" => UnaryOp::Not,
        _ => return None,
    })
}

fn binary(name: &str) -> Option<BinaryOp> {
    Some(match name {
        "add" => BinaryOp::Add,
        "sub" => BinaryOp::Sub,
        "mul" => BinaryOp::Mul,
        "div" => BinaryOp::Div,
        "pow" => BinaryOp::Pow,
        "max" => BinaryOp::Max,
        "min" => BinaryOp::Min,
        "and" => BinaryOp::And,
        "or" => BinaryOp::Or,
        _ => return None,
    })
}

fn compare(name: &str) -> Option<CompareOp> {
    Some(match name {
        "equal" => CompareOp::Equal,
        "less" => CompareOp::Less,
        "less_or_equal" => CompareOp::LessOrEqual,
        "greater" => CompareOp::Greater,
        "greater_or_equal" => CompareOp::GreaterOrEqual,
        _ => return None,
    })
}

fn reduce(name: &str) -> Option<ReduceOp> {
    Some(match name {
        "reduce_sum" => ReduceOp::Sum,
        "reduce_mean" => ReduceOp::Mean,
        "reduce_max" => ReduceOp::Max,
        "reduce_l2" => ReduceOp::L2,
        _ => return None,
    })
}

/// How many tensor arguments a function takes (`None`: no such function).
fn arity(name: &str) -> Option<(usize, usize)> {
    if unary(name).is_some() || reduce(name).is_some() {
        return Some((1, 1));
    }
    if binary(name).is_some() || compare(name).is_some() {
        return Some((2, 2));
    }
    Some(match name {
        "cast" | "clip" | "softmax" | "transpose" | "reshape" | "expand" | "split" | "slice"
        | "squeeze" | "unsqueeze" | "flatten" | "gelu" | "silu" | "polynomial" => (1, 1),
        "matmul" | "rms_norm" | "gather" => (2, 2),
        "linear" | "gemm" | "layer_norm" => (2, 3),
        "where" | "rope" => (3, 3),
        "attention" => (3, 4),
        "concat" => (1, usize::MAX),
        _ => return None,
    })
}

/// Bare words an attribute may take; as a keyword value they mean the word even where a value
/// of that name exists.
const ATTRIBUTE_WORDS: [&str; 8] = ["erf", "tanh", "f32", "f64", "i64", "bool", "true", "false"];

fn keyword_value(el: &mut Elaborator, e: &Expr) -> Result<Val, DslError> {
    match &e.kind {
        crate::ast::ExprKind::Ident(name) if ATTRIBUTE_WORDS.contains(&name.as_str()) => {
            Ok(Val::Word(name.clone()))
        }
        _ => el.expr(e),
    }
}

/// Evaluates `name(args…, keywords…)`.
pub(crate) fn call(
    el: &mut Elaborator,
    name: &str,
    args: &[Expr],
    keywords: &[(String, Expr)],
    span: Span,
) -> Result<Val, DslError> {
    let positional = args
        .iter()
        .map(|a| Ok((el.expr(a)?, a.span)))
        .collect::<Result<_, DslError>>()?;
    let keywords = keywords
        .iter()
        .map(|(k, e)| Ok((k.clone(), keyword_value(el, e)?, e.span, false)))
        .collect::<Result<_, DslError>>()?;
    let mut a = Arguments {
        el,
        call: name,
        span,
        positional,
        keywords,
    };
    match name {
        "weight" => return weight(a),
        "constant" => return constant(a),
        "arange" => return arange(a),
        _ => {}
    }
    let Some((min, max)) = arity(name) else {
        return Err(a.error(
            ErrorKind::Name,
            format!("unknown function `{name}` (docs/dsl.md lists them; the annotations are @range and @precision)"),
            span,
        ));
    };
    let operands = a.tensors(min, max)?;
    let op = match name {
        "linear" => {
            a.finish()?;
            let product = a.el.node(Op::MatMul, &operands[..2], span)?[0];
            return match operands.get(2) {
                Some(&bias) => Ok(Val::Tensor(
                    a.el.node(Op::Binary(BinaryOp::Add), &[product, bias], span)?[0],
                )),
                None => Ok(Val::Tensor(product)),
            };
        }
        _ if unary(name).is_some() => Op::Unary(unary(name).expect("checked")),
        _ if binary(name).is_some() => Op::Binary(binary(name).expect("checked")),
        _ if compare(name).is_some() => Op::Compare(compare(name).expect("checked")),
        _ if reduce(name).is_some() => Op::Reduce {
            op: reduce(name).expect("checked"),
            axes: a.ints("axes")?.unwrap_or_default(),
            keep_dims: !a.keywords.iter().any(|(k, ..)| k == "keep_dims") || a.flag("keep_dims")?,
        },
        "where" => Op::Where,
        "cast" => Op::Cast {
            to: a.dtype("to", DType::F32)?,
        },
        "clip" => Op::Clip {
            min: a.optional_float("min")?,
            max: a.optional_float("max")?,
        },
        "matmul" => Op::MatMul,
        "gemm" => Op::Gemm {
            alpha: a.float("alpha", Some(1.0))?,
            beta: a.float("beta", Some(1.0))?,
            trans_a: a.flag("trans_a")?,
            trans_b: a.flag("trans_b")?,
        },
        "softmax" => Op::Softmax {
            axis: a.int("axis", Some(-1))?,
        },
        "layer_norm" => Op::LayerNormalization {
            axis: a.int("axis", Some(-1))?,
            epsilon: a.float("eps", Some(1e-5))?,
        },
        "rms_norm" => Op::RmsNorm {
            epsilon: a.float("eps", Some(1e-5))?,
        },
        "transpose" => {
            let rank = a.shape_of(operands[0]).len();
            let perm = match a.ints("perm")? {
                Some(p) => p.into_iter().map(|v| v.max(0) as usize).collect(),
                None => (0..rank).rev().collect(),
            };
            Op::Transpose { perm }
        }
        "reshape" => {
            let count: usize = a.shape_of(operands[0]).iter().product();
            let target = a.required_ints("shape")?;
            let shape =
                resolve_shape(&target, count).map_err(|m| a.error(ErrorKind::Shape, m, span))?;
            Op::Reshape { shape }
        }
        "expand" => Op::Expand {
            shape: a.sizes("shape")?,
        },
        "concat" => Op::Concat {
            axis: a.int("axis", None)?,
        },
        "split" => Op::Split {
            axis: a.int("axis", Some(0))?,
            sizes: a.sizes("sizes")?,
        },
        "slice" => {
            let starts = a.required_ints("starts")?;
            let ends = a.required_ints("ends")?;
            let axes = a
                .ints("axes")?
                .unwrap_or_else(|| (0..starts.len() as i64).collect());
            let steps = a.ints("steps")?.unwrap_or_else(|| vec![1; starts.len()]);
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            }
        }
        "gather" => Op::Gather {
            axis: a.int("axis", Some(0))?,
        },
        "squeeze" => Op::Squeeze {
            axes: a.ints("axes")?.unwrap_or_default(),
        },
        "unsqueeze" => Op::Unsqueeze {
            axes: a.required_ints("axes")?,
        },
        "flatten" => Op::Flatten {
            axis: a.int("axis", Some(1))?,
        },
        "gelu" => Op::Gelu {
            approximation: match a.word("approximation", &["erf", "tanh"], "erf")?.as_str() {
                "tanh" => GeluApproximation::Tanh,
                _ => GeluApproximation::Erf,
            },
        },
        "silu" => Op::Silu,
        "polynomial" => Op::Polynomial(cachemir_ir::op::Polynomial {
            function: a.string("function")?,
            domain: match a.floats("domain")?.as_slice() {
                [low, high] if low < high => (*low, *high),
                _ => {
                    let message = "`domain` is [low, high] with low < high".to_string();
                    return Err(a.error(ErrorKind::Type, message, span));
                }
            },
            coefficients: a.floats("coefficients")?,
            max_error: a.float("max_error", Some(0.0))?,
        }),
        "rope" => Op::Rope,
        "attention" => {
            let head_dim = *a.shape_of(operands[0]).last().unwrap_or(&1);
            Op::Attention {
                scale: a.float("scale", Some(1.0 / (head_dim as f64).sqrt()))?,
            }
        }
        other => unreachable!("`{other}` has an arity but no op"),
    };
    a.finish()?;
    let outputs = a.el.node(op, &operands, span)?;
    Ok(if outputs.len() == 1 {
        Val::Tensor(outputs[0])
    } else {
        Val::List(outputs.into_iter().map(Val::Tensor).collect())
    })
}

/// `weight("name", [d0, d1, …], dtype=f32)`.
fn weight(mut a: Arguments) -> Result<Val, DslError> {
    let (name, shape) = match (a.positional.first().cloned(), a.positional.get(1).cloned()) {
        (Some((Val::Str(name), _)), Some((Val::List(dims), dims_span))) if a.count() == 2 => {
            let shape = dims
                .iter()
                .map(|d| match d {
                    Val::Int(v) if *v >= 0 => Ok(*v as usize),
                    other => Err(a.error(
                        ErrorKind::Type,
                        format!(
                            "a weight dimension must be a non-negative integer, found {}",
                            other.kind()
                        ),
                        dims_span,
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?;
            (name, shape)
        }
        _ => {
            return Err(a.error(
                ErrorKind::Type,
                "usage: weight(\"name\", [d0, d1, …], dtype=f32)".into(),
                a.span,
            ));
        }
    };
    let dtype = a.dtype("dtype", DType::F32)?;
    let span = a.span;
    a.finish()?;
    Ok(Val::Tensor(a.el.weight(&name, dtype, shape, span)?))
}

/// `constant(value or nested list, dtype=f32)`: a small literal tensor.
fn constant(mut a: Arguments) -> Result<Val, DslError> {
    let Some((value, value_span)) = a.positional.first().cloned().filter(|_| a.count() == 1) else {
        return Err(a.error(
            ErrorKind::Type,
            "usage: constant(number or [list…], dtype=f32)".into(),
            a.span,
        ));
    };
    let dtype = a.dtype("dtype", DType::F32)?;
    let tensor = dense(&value, dtype).map_err(|m| a.error(ErrorKind::Type, m, value_span))?;
    a.finish()?;
    Ok(Val::Tensor(literal_constant(&mut a, tensor)))
}

/// `arange(start, end, step=1, dtype=f32)`: the 1-D constant `start, start + step, … < end`.
fn arange(mut a: Arguments) -> Result<Val, DslError> {
    let bounds: Vec<f64> = match a.positional.as_slice() {
        [
            (s @ (Val::Int(_) | Val::Float(_)), _),
            (e @ (Val::Int(_) | Val::Float(_)), _),
        ] => vec![as_f64(s), as_f64(e)],
        _ => {
            return Err(a.error(
                ErrorKind::Type,
                "usage: arange(start, end, step=1, dtype=f32)".into(),
                a.span,
            ));
        }
    };
    let step = a.float("step", Some(1.0))?;
    let dtype = a.dtype("dtype", DType::F32)?;
    if step == 0.0 {
        return Err(a.error(ErrorKind::Type, "`step` is 0".into(), a.span));
    }
    let count = ((bounds[1] - bounds[0]) / step).ceil().max(0.0) as usize;
    let values: Vec<Val> = (0..count)
        .map(|i| Val::Float(bounds[0] + step * i as f64))
        .collect();
    let span = a.span;
    a.finish()?;
    let tensor = dense(&Val::List(values), dtype).map_err(|m| a.error(ErrorKind::Type, m, span))?;
    Ok(Val::Tensor(literal_constant(&mut a, tensor)))
}

/// Adds a literal tensor written in the model text.
fn literal_constant(a: &mut Arguments, tensor: Tensor) -> ValueRef {
    let name = format!("%constant@{}", a.span.start);
    let location = cachemir_ir::SourceLocation::Synthetic(name.clone());
    a.el.graph.add_constant(name, tensor, location)
}

/// A dense tensor of `dtype` from a number or nested lists of numbers.
fn dense(value: &Val, dtype: DType) -> Result<Tensor, String> {
    let (mut shape, mut flat) = (Vec::new(), Vec::new());
    flatten(value, 0, &mut shape, &mut flat)?;
    // A number beside a list (`[1, [2, 3]]`) passes the per-level checks; the count does not.
    if flat.len() != shape.iter().product::<usize>() {
        return Err("the nested lists are not rectangular".into());
    }
    let dim = IxDyn(&shape);
    Ok(match dtype {
        DType::F32 => Tensor::F32(
            ArrayD::from_shape_vec(dim, flat.iter().map(|&v| v as f32).collect()).expect("counted"),
        ),
        DType::F64 => Tensor::F64(ArrayD::from_shape_vec(dim, flat).expect("counted")),
        DType::I64 => Tensor::I64(
            ArrayD::from_shape_vec(dim, flat.iter().map(|&v| v as i64).collect()).expect("counted"),
        ),
        DType::Bool => Tensor::Bool(
            ArrayD::from_shape_vec(dim, flat.iter().map(|&v| v != 0.0).collect()).expect("counted"),
        ),
    })
}

/// Flattens nested lists of numbers, checking they are rectangular.
fn flatten(
    v: &Val,
    depth: usize,
    shape: &mut Vec<usize>,
    flat: &mut Vec<f64>,
) -> Result<(), String> {
    match v {
        Val::Int(_) | Val::Float(_) => {
            if depth < shape.len() {
                return Err("the nested lists are not rectangular".into());
            }
            flat.push(as_f64(v));
            Ok(())
        }
        Val::List(items) => {
            if depth == shape.len() {
                shape.push(items.len());
            } else if shape[depth] != items.len() {
                return Err("the nested lists are not rectangular".into());
            }
            items
                .iter()
                .try_for_each(|i| flatten(i, depth + 1, shape, flat))
        }
        other => Err(format!("a constant holds numbers, found {}", other.kind())),
    }
}

/// Resolves one `-1` in a reshape target against the element count.
fn resolve_shape(target: &[i64], count: usize) -> Result<Vec<usize>, String> {
    let known: i64 = target.iter().filter(|&&d| d != -1).product();
    let inferred = target.iter().filter(|&&d| d == -1).count();
    if inferred > 1 || target.iter().any(|&d| d < -1) {
        return Err(format!(
            "reshape target {target:?}: at most one -1 and no other negative size"
        ));
    }
    target
        .iter()
        .map(|&d| {
            if d == -1 {
                if known <= 0 || count as i64 % known != 0 {
                    Err(format!("cannot reshape {count} elements to {target:?}"))
                } else {
                    Ok((count as i64 / known) as usize)
                }
            } else {
                Ok(d as usize)
            }
        })
        .collect()
}
