//! Syntax tree → Tensor IR: parameters are evaluated, `for` loops unrolled, weights bound (from
//! a safetensors file, or synthetic for `weights none`), and every op built through the IR's
//! shape inference, so a mistake is reported at its `file:line:col`.

use crate::ast::{Expr, ExprKind, Infix, Program, Span, Statement, TypeExpr};
use crate::calls;
use crate::diagnostic::{DslError, ErrorKind};
use crate::parse::parse;
use crate::weights::WeightsFile;
use cachemir_ir::graph::{Hints, SourceLocation};
use cachemir_ir::{
    BinaryOp, DType, Graph, InputRole, IrError, Op, OutputRole, Secrecy, Tensor, TensorType,
    UnaryOp, ValueRef,
};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

/// How to load a model file.
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// Use this weights file instead of the one the model names.
    pub weights: Option<PathBuf>,
}

/// Reads, parses and elaborates a model file.
///
/// # Errors
/// The first [`DslError`] (syntax, name, shape, type or weights), located in the file.
pub fn load_file(path: &Path, options: &LoadOptions) -> Result<Graph, DslError> {
    let file = path.display().to_string();
    let source = std::fs::read_to_string(path)
        .map_err(|e| DslError::file(ErrorKind::Io, e.to_string(), &file))?;
    let dir = path.parent().unwrap_or(Path::new("."));
    load_source(&source, &file, dir, options)
}

/// Parses and elaborates model text; `file` names it in diagnostics and `dir` resolves a
/// relative weights path.
pub fn load_source(
    source: &str,
    file: &str,
    dir: &Path,
    options: &LoadOptions,
) -> Result<Graph, DslError> {
    let program = parse(source, file)?;
    Elaborator::new(source, file, dir, options).program(&program)
}

/// A value during elaboration.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    Tensor(ValueRef),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Val>),
    /// A bare word that names no value (`erf`, `f32`, `true`): an attribute value.
    Word(String),
}

impl Val {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Val::Tensor(_) => "a tensor",
            Val::Int(_) => "an integer",
            Val::Float(_) => "a number",
            Val::Str(_) => "a string",
            Val::List(_) => "a list",
            Val::Word(_) => "a word",
        }
    }
}

enum WeightSource {
    Undeclared,
    Synthetic,
    File(WeightsFile),
}

pub(crate) struct Elaborator<'s> {
    source: &'s str,
    file: &'s str,
    dir: PathBuf,
    override_weights: Option<PathBuf>,
    pub(crate) graph: Graph,
    /// Every name in scope. Loop bodies share it (a `let` in a loop updates the variable the
    /// next iteration reads, as a residual stream needs); only the loop variable is local.
    values: HashMap<String, Val>,
    /// Names that are declared (inputs, states, params): declaring one twice is an error.
    declared: HashSet<String>,
    weights: WeightSource,
    weight_values: HashMap<String, ValueRef>,
    /// Prefix of value names inside loop iterations (`i3.`), so names stay unique.
    prefix: String,
    temporaries: usize,
    /// State input → the output that replaces it.
    states: HashMap<String, (String, Span)>,
    outputs: HashSet<String>,
    /// Outputs in the order written, added to the graph when the program is complete.
    pending_outputs: Vec<(String, ValueRef)>,
}

impl<'s> Elaborator<'s> {
    fn new(source: &'s str, file: &'s str, dir: &Path, options: &LoadOptions) -> Self {
        Self {
            source,
            file,
            dir: dir.to_path_buf(),
            override_weights: options.weights.clone(),
            graph: Graph::new("model"),
            values: HashMap::new(),
            declared: HashSet::new(),
            weights: WeightSource::Undeclared,
            weight_values: HashMap::new(),
            prefix: String::new(),
            temporaries: 0,
            states: HashMap::new(),
            outputs: HashSet::new(),
            pending_outputs: Vec::new(),
        }
    }

    pub(crate) fn error(
        &self,
        kind: ErrorKind,
        message: impl Into<String>,
        span: Span,
    ) -> DslError {
        DslError::at(kind, message, self.file, self.source, span)
    }

    fn location(&self, span: Span) -> SourceLocation {
        let e = DslError::at(ErrorKind::Syntax, "", self.file, self.source, span);
        SourceLocation::Dsl {
            file: self.file.to_string(),
            line: e.line,
            column: e.column,
        }
    }

    fn program(mut self, program: &Program) -> Result<Graph, DslError> {
        self.graph.name = program.name.clone();
        for statement in &program.statements {
            self.statement(statement)?;
        }
        for (name, value) in std::mem::take(&mut self.pending_outputs) {
            let state = self
                .states
                .iter()
                .find(|(_, (o, _))| *o == name)
                .map(|(i, _)| i.clone());
            let role = match state {
                Some(input) => OutputRole::State { input },
                None => OutputRole::Output,
            };
            self.graph.add_output(name, value, role);
        }
        for (input, (output, span)) in &self.states {
            if !self.outputs.contains(output) {
                return Err(self.error(
                    ErrorKind::Name,
                    format!("state `{input}` is replaced by `{output}`, but no `output {output} = …;` exists"),
                    *span,
                ));
            }
        }
        self.graph.prune(false);
        self.graph
            .verify()
            .map_err(|e| DslError::file(ErrorKind::Shape, e.to_string(), self.file))?;
        Ok(self.graph)
    }

    /// Binds a `let` name (rebinding is allowed, like shadowing).
    fn bind(&mut self, name: &str, value: Val) {
        self.values.insert(name.to_string(), value);
    }

    /// Binds a declared name (input, state, param), which must be new.
    fn declare(&mut self, name: &str, value: Val, span: Span) -> Result<(), DslError> {
        if !self.declared.insert(name.to_string()) {
            return Err(self.error(
                ErrorKind::Name,
                format!("`{name}` is already declared"),
                span,
            ));
        }
        self.bind(name, value);
        Ok(())
    }

    fn lookup(&self, name: &str) -> Option<&Val> {
        self.values.get(name)
    }

    fn statement(&mut self, statement: &Statement) -> Result<(), DslError> {
        match statement {
            Statement::Param { name, value, span } => {
                let v = self.expr(value)?;
                if !matches!(v, Val::Int(_) | Val::Float(_)) {
                    return Err(self.error(
                        ErrorKind::Type,
                        format!("a param is a number, not {}", v.kind()),
                        value.span,
                    ));
                }
                self.declare(name, v, *span)
            }
            Statement::Weights { file, span } => {
                if !matches!(self.weights, WeightSource::Undeclared) {
                    return Err(self.error(ErrorKind::Name, "weights are declared twice", *span));
                }
                self.weights = match file {
                    None => WeightSource::Synthetic,
                    Some(f) => {
                        let path = self
                            .override_weights
                            .clone()
                            .unwrap_or_else(|| self.dir.join(f));
                        WeightSource::File(
                            WeightsFile::open(&path)
                                .map_err(|m| self.error(ErrorKind::Weights, m, *span))?,
                        )
                    }
                };
                Ok(())
            }
            Statement::Input {
                name,
                alias,
                ty,
                secrecy,
                span,
            } => {
                let name = self.interpolate(name, *span)?;
                let role = InputRole::Input;
                self.declare_input(&name, alias.as_deref(), ty, *secrecy, role, *span)
            }
            Statement::State {
                name,
                alias,
                ty,
                secrecy,
                output,
                span,
            } => {
                let name = self.interpolate(name, *span)?;
                let output = self.interpolate(output, *span)?;
                self.states.insert(name.clone(), (output.clone(), *span));
                let role = InputRole::State { output };
                self.declare_input(&name, alias.as_deref(), ty, *secrecy, role, *span)
            }
            Statement::Let {
                targets,
                value,
                annotations,
                span,
            } => {
                let v = self.expr(value)?;
                let values = match (targets.len(), v) {
                    (1, v) => vec![v],
                    (n, Val::List(items)) if items.len() == n => items,
                    (n, v) => {
                        return Err(self.error(
                            ErrorKind::Type,
                            format!(
                                "{n} names for {}",
                                match v {
                                    Val::List(l) => format!("{} values", l.len()),
                                    v => v.kind().to_string(),
                                }
                            ),
                            *span,
                        ));
                    }
                };
                for ((target, _), v) in targets.iter().zip(values) {
                    if let Val::Tensor(t) = v {
                        self.name_value(t, target);
                    }
                    self.bind(target, v);
                }
                if !annotations.is_empty() {
                    let Some(Val::Tensor(t)) = self.lookup(&targets[0].0).cloned() else {
                        return Err(self.error(
                            ErrorKind::Type,
                            "annotations apply to tensors",
                            annotations[0].span,
                        ));
                    };
                    let hints = self.hints(annotations)?;
                    self.graph.node_mut(t.node).hints = hints;
                }
                Ok(())
            }
            Statement::Output { name, value, span } => {
                let name = &self.interpolate(name, *span)?;
                let v = self.tensor(value)?;
                if !self.outputs.insert(name.clone()) {
                    return Err(self.error(
                        ErrorKind::Name,
                        format!("output `{name}` is defined twice"),
                        *span,
                    ));
                }
                // Roles are given once every `state` is known (a state may be declared later).
                self.pending_outputs.push((name.clone(), v));
                Ok(())
            }
            Statement::For {
                var,
                start,
                end,
                body,
                ..
            } => {
                let (from, to) = (self.int(start)?, self.int(end)?);
                let outer_prefix = self.prefix.clone();
                let shadowed = self.values.remove(var);
                let mut result = Ok(());
                for i in from..to {
                    self.bind(var, Val::Int(i));
                    self.prefix = format!("{outer_prefix}{var}{i}.");
                    result = body.iter().try_for_each(|s| self.statement(s));
                    if result.is_err() {
                        break;
                    }
                }
                self.values.remove(var);
                if let Some(v) = shadowed {
                    self.bind(var, v);
                }
                self.prefix = outer_prefix;
                result
            }
        }
    }

    fn hints(&self, annotations: &[crate::ast::Annotation]) -> Result<Hints, DslError> {
        let mut hints = Hints::default();
        for a in annotations {
            let args: Vec<f64> = a
                .args
                .iter()
                .map(|e| self.number(e))
                .collect::<Result<_, _>>()?;
            match (a.name.as_str(), args.as_slice()) {
                ("range", [lo, hi]) if lo < hi => hints.range = Some((*lo, *hi)),
                ("precision", [bits]) if *bits > 0.0 => hints.precision_bits = Some(*bits as u32),
                ("range", _) => {
                    return Err(self.error(
                        ErrorKind::Type,
                        "@range takes two numbers, low < high",
                        a.span,
                    ));
                }
                ("precision", _) => {
                    return Err(self.error(
                        ErrorKind::Type,
                        "@precision takes a positive number of bits",
                        a.span,
                    ));
                }
                (other, _) => {
                    return Err(self.error(
                        ErrorKind::Name,
                        format!("unknown annotation `@{other}` (known: @range, @precision)"),
                        a.span,
                    ));
                }
            }
        }
        Ok(hints)
    }

    /// Gives a value its `let` name when it was computed by the `let` (not an alias).
    fn name_value(&mut self, value: ValueRef, target: &str) {
        let node = self.graph.node_mut(value.node);
        if node.output_names[value.output].starts_with('%') {
            node.output_names[value.output] = format!("{}{target}", self.prefix);
        }
    }

    fn declare_input(
        &mut self,
        name: &str,
        alias: Option<&str>,
        ty: &TypeExpr,
        secrecy: Option<bool>,
        role: InputRole,
        span: Span,
    ) -> Result<(), DslError> {
        if self
            .graph
            .inputs()
            .iter()
            .any(|i| self.graph.input_name(i) == name)
        {
            return Err(self.error(
                ErrorKind::Name,
                format!("input `{name}` is declared twice"),
                span,
            ));
        }
        let tensor_type = self.tensor_type(ty)?;
        let encrypted = secrecy.unwrap_or(tensor_type.dtype.is_float());
        let tensor_type = TensorType {
            secrecy: if encrypted {
                Secrecy::Encrypted
            } else {
                Secrecy::Public
            },
            ..tensor_type
        };
        let value = self
            .graph
            .add_input(name, tensor_type, role, self.location(span));
        // An alias (`as past_k`) is rebound in each loop iteration; a plain name is declared once.
        match alias {
            Some(local) => {
                self.bind(local, Val::Tensor(value));
                Ok(())
            }
            None => self.declare(
                &crate::print::identifier_for(name),
                Val::Tensor(value),
                span,
            ),
        }
    }

    fn tensor_type(&self, ty: &TypeExpr) -> Result<TensorType, DslError> {
        let dtype = parse_dtype(&ty.dtype).expect("grammar allows only known dtypes");
        let shape = ty
            .dims
            .iter()
            .map(|d| {
                let v = self.int(d)?;
                usize::try_from(v).map_err(|_| {
                    self.error(
                        ErrorKind::Type,
                        format!("dimension {v} is negative"),
                        d.span,
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(TensorType::new(dtype, shape, Secrecy::Public))
    }

    pub(crate) fn int(&self, e: &Expr) -> Result<i64, DslError> {
        match self.constant_expr(e)? {
            Val::Int(v) => Ok(v),
            v => Err(self.error(
                ErrorKind::Type,
                format!("expected an integer, found {}", v.kind()),
                e.span,
            )),
        }
    }

    fn number(&self, e: &Expr) -> Result<f64, DslError> {
        match self.constant_expr(e)? {
            Val::Int(v) => Ok(v as f64),
            Val::Float(v) => Ok(v),
            v => Err(self.error(
                ErrorKind::Type,
                format!("expected a number, found {}", v.kind()),
                e.span,
            )),
        }
    }

    /// Evaluates a compile-time expression (numbers, params, loop variables, arithmetic).
    fn constant_expr(&self, e: &Expr) -> Result<Val, DslError> {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) => self.literal(e),
            ExprKind::Ident(name) => match self.lookup(name) {
                Some(v @ (Val::Int(_) | Val::Float(_))) => Ok(v.clone()),
                Some(v) => Err(self.error(
                    ErrorKind::Type,
                    format!("`{name}` is {}, not a number", v.kind()),
                    e.span,
                )),
                None => {
                    Err(self.error(ErrorKind::Name, format!("undefined name `{name}`"), e.span))
                }
            },
            ExprKind::Neg(inner) if matches!(inner.kind, ExprKind::Int(_)) => self.literal(e),
            ExprKind::Neg(inner) => match self.constant_expr(inner)? {
                Val::Int(v) => v.checked_neg().map(Val::Int).ok_or_else(|| {
                    self.error(
                        ErrorKind::Type,
                        "the integer result does not fit in 64 bits",
                        e.span,
                    )
                }),
                Val::Float(v) => Ok(Val::Float(-v)),
                v => Err(self.error(
                    ErrorKind::Type,
                    format!("cannot negate {}", v.kind()),
                    e.span,
                )),
            },
            ExprKind::Infix(op, l, r) => {
                let (l, r) = (self.constant_expr(l)?, self.constant_expr(r)?);
                self.arithmetic(*op, &l, &r, e.span)
            }
            _ => Err(self.error(ErrorKind::Type, "expected a compile-time number", e.span)),
        }
    }

    /// A number literal, or a negated integer literal (negated before the range check so that
    /// `-9223372036854775808` is `i64::MIN`).
    fn literal(&self, e: &Expr) -> Result<Val, DslError> {
        let integer = match &e.kind {
            ExprKind::Float(v) => return Ok(Val::Float(*v)),
            ExprKind::Int(v) => *v,
            ExprKind::Neg(inner) => match inner.kind {
                ExprKind::Int(v) => -v,
                _ => unreachable!("only negated integer literals"),
            },
            _ => unreachable!("only literals"),
        };
        i64::try_from(integer).map(Val::Int).map_err(|_| {
            self.error(
                ErrorKind::Type,
                format!("{integer} does not fit in 64 bits"),
                e.span,
            )
        })
    }

    fn arithmetic(&self, op: Infix, l: &Val, r: &Val, span: Span) -> Result<Val, DslError> {
        Ok(match (l, r) {
            (Val::Int(a), Val::Int(b)) => {
                let result = match op {
                    Infix::Add => a.checked_add(*b),
                    Infix::Sub => a.checked_sub(*b),
                    Infix::Mul => a.checked_mul(*b),
                    Infix::Div if *b == 0 => {
                        return Err(self.error(ErrorKind::Type, "division by zero", span));
                    }
                    Infix::Div => a.checked_div(*b),
                    Infix::MatMul => {
                        return Err(self.error(ErrorKind::Type, "`@` multiplies tensors", span));
                    }
                };
                Val::Int(result.ok_or_else(|| {
                    self.error(
                        ErrorKind::Type,
                        "the integer result does not fit in 64 bits",
                        span,
                    )
                })?)
            }
            (a, b) => {
                let (a, b) = (as_f64(a), as_f64(b));
                Val::Float(match op {
                    Infix::Add => a + b,
                    Infix::Sub => a - b,
                    Infix::Mul => a * b,
                    Infix::Div => a / b,
                    Infix::MatMul => {
                        return Err(self.error(ErrorKind::Type, "`@` multiplies tensors", span));
                    }
                })
            }
        })
    }

    /// Evaluates an expression that must be a tensor.
    pub(crate) fn tensor(&mut self, e: &Expr) -> Result<ValueRef, DslError> {
        match self.expr(e)? {
            Val::Tensor(t) => Ok(t),
            Val::Word(w) => {
                Err(self.error(ErrorKind::Name, format!("undefined name `{w}`"), e.span))
            }
            v => Err(self.error(
                ErrorKind::Type,
                format!("expected a tensor, found {}", v.kind()),
                e.span,
            )),
        }
    }

    /// Evaluates any expression. A bare name that is not defined is a [`Val::Word`] (an
    /// attribute value such as `erf`); it is an error wherever a value is needed.
    pub(crate) fn expr(&mut self, e: &Expr) -> Result<Val, DslError> {
        match &e.kind {
            ExprKind::Int(_) | ExprKind::Float(_) => self.literal(e),
            ExprKind::Neg(inner) if matches!(inner.kind, ExprKind::Int(_)) => self.literal(e),
            ExprKind::Str(s) => Ok(Val::Str(self.interpolate(s, e.span)?)),
            ExprKind::Ident(name) => Ok(self
                .lookup(name)
                .cloned()
                .unwrap_or(Val::Word(name.clone()))),
            ExprKind::List(items) => Ok(Val::List(
                items
                    .iter()
                    .map(|i| self.expr(i))
                    .collect::<Result<_, _>>()?,
            )),
            ExprKind::Neg(inner) => match self.expr(inner)? {
                Val::Int(v) => v.checked_neg().map(Val::Int).ok_or_else(|| {
                    self.error(
                        ErrorKind::Type,
                        "the integer result does not fit in 64 bits",
                        e.span,
                    )
                }),
                Val::Float(v) => Ok(Val::Float(-v)),
                Val::Tensor(t) => Ok(Val::Tensor(
                    self.node(Op::Unary(UnaryOp::Neg), &[t], e.span)?[0],
                )),
                Val::Word(w) => {
                    Err(self.error(ErrorKind::Name, format!("undefined name `{w}`"), inner.span))
                }
                v => Err(self.error(
                    ErrorKind::Type,
                    format!("cannot negate {}", v.kind()),
                    e.span,
                )),
            },
            ExprKind::Infix(op, l, r) => {
                let (lv, rv) = (self.expr(l)?, self.expr(r)?);
                for (v, side) in [(&lv, l), (&rv, r)] {
                    if let Val::Word(w) = v {
                        return Err(self.error(
                            ErrorKind::Name,
                            format!("undefined name `{w}`"),
                            side.span,
                        ));
                    }
                }
                match (&lv, &rv) {
                    (Val::Tensor(_), _) | (_, Val::Tensor(_)) => {
                        let a = self.as_tensor(lv, rv_dtype(self, &rv), l.span)?;
                        let b = self.as_tensor(
                            rv,
                            self.graph.value_type(a).expect("exists").dtype,
                            r.span,
                        )?;
                        let op = match op {
                            Infix::Add => Op::Binary(BinaryOp::Add),
                            Infix::Sub => Op::Binary(BinaryOp::Sub),
                            Infix::Mul => Op::Binary(BinaryOp::Mul),
                            Infix::Div => Op::Binary(BinaryOp::Div),
                            Infix::MatMul => Op::MatMul,
                        };
                        Ok(Val::Tensor(self.node(op, &[a, b], e.span)?[0]))
                    }
                    _ => self.arithmetic(*op, &lv, &rv, e.span),
                }
            }
            ExprKind::Call {
                name,
                args,
                keywords,
            } => calls::call(self, name, args, keywords, e.span),
        }
    }

    /// A tensor for `v`: tensors as they are, numbers as scalar constants of `dtype`.
    pub(crate) fn as_tensor(
        &mut self,
        v: Val,
        dtype: DType,
        span: Span,
    ) -> Result<ValueRef, DslError> {
        match v {
            Val::Tensor(t) => Ok(t),
            Val::Int(_) | Val::Float(_) => {
                let value = as_f64(&v);
                let tensor = scalar(dtype, value);
                let name = self.temporary();
                Ok(self.graph.add_constant(name, tensor, self.location(span)))
            }
            v => Err(self.error(
                ErrorKind::Type,
                format!("expected a tensor or a number, found {}", v.kind()),
                span,
            )),
        }
    }

    fn temporary(&mut self) -> String {
        self.temporaries += 1;
        format!("%{}t{}", self.prefix, self.temporaries)
    }

    /// Adds an op node; a shape error is reported at `span`.
    pub(crate) fn node(
        &mut self,
        op: Op,
        operands: &[ValueRef],
        span: Span,
    ) -> Result<Vec<ValueRef>, DslError> {
        let count = op.output_count();
        let names = (0..count).map(|_| self.temporary()).collect();
        let name = op.name();
        let location = self.location(span);
        self.graph
            .add_node(op, operands, names, location)
            .map_err(|e| match e {
                IrError::Shape { source, .. } => {
                    self.error(ErrorKind::Shape, format!("{name}: {source}"), span)
                }
                other => self.error(ErrorKind::Shape, other.to_string(), span),
            })
    }

    /// The weight called `name` of the declared type: from the weights file, or synthetic for
    /// `weights none`. A weight used twice is one graph value.
    pub(crate) fn weight(
        &mut self,
        name: &str,
        dtype: DType,
        shape: Vec<usize>,
        span: Span,
    ) -> Result<ValueRef, DslError> {
        if let Some(v) = self.weight_values.get(name) {
            let ty = self.graph.value_type(*v).expect("exists");
            if ty.shape != shape || ty.dtype != dtype {
                return Err(self.error(
                    ErrorKind::Weights,
                    format!(
                        "weight `{name}` was used as {}{:?} before",
                        ty.dtype, ty.shape
                    ),
                    span,
                ));
            }
            return Ok(*v);
        }
        let location = self.location(span);
        let value = match &self.weights {
            WeightSource::Undeclared => {
                return Err(self.error(ErrorKind::Weights, "no weights are declared: add `weights \"file.safetensors\";` or `weights none;`", span));
            }
            WeightSource::Synthetic => {
                let seed = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
                    (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
                });
                self.graph
                    .add_synthetic_weight(name, dtype, shape, seed, location)
            }
            WeightSource::File(file) => {
                let tensor = file
                    .get(name)
                    .map_err(|m| self.error(ErrorKind::Weights, m, span))?
                    .ok_or_else(|| {
                        self.error(
                            ErrorKind::Weights,
                            format!("the weights file has no tensor `{name}`"),
                            span,
                        )
                    })?;
                if tensor.shape() != shape.as_slice() || tensor.dtype() != dtype {
                    return Err(self.error(
                        ErrorKind::Weights,
                        format!(
                            "weight `{name}` is {}{:?} in the file, declared {dtype}{shape:?}",
                            tensor.dtype(),
                            tensor.shape()
                        ),
                        span,
                    ));
                }
                self.graph.add_constant(name, tensor, location)
            }
        };
        self.weight_values.insert(name.to_string(), value);
        Ok(value)
    }

    /// Replaces `{name}` in a string by the value of a param or loop variable.
    fn interpolate(&self, text: &str, span: Span) -> Result<String, DslError> {
        let mut out = String::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let close = rest[open..]
                .find('}')
                .ok_or_else(|| self.error(ErrorKind::Syntax, "unclosed `{` in a string", span))?;
            let name = &rest[open + 1..open + close];
            match self.lookup(name) {
                Some(Val::Int(v)) => out.push_str(&v.to_string()),
                Some(Val::Float(v)) => out.push_str(&v.to_string()),
                Some(Val::Str(s)) => out.push_str(s),
                _ => {
                    return Err(self.error(
                        ErrorKind::Name,
                        format!("`{{{name}}}` in a string names no param or loop variable"),
                        span,
                    ));
                }
            }
            rest = &rest[open + close + 1..];
        }
        out.push_str(rest);
        Ok(out)
    }
}

fn rv_dtype(el: &Elaborator, v: &Val) -> DType {
    match v {
        Val::Tensor(t) => el.graph.value_type(*t).expect("exists").dtype,
        _ => DType::F32,
    }
}

pub(crate) fn as_f64(v: &Val) -> f64 {
    match v {
        Val::Int(i) => *i as f64,
        Val::Float(f) => *f,
        _ => f64::NAN,
    }
}

pub(crate) fn parse_dtype(name: &str) -> Option<DType> {
    Some(match name {
        "f32" => DType::F32,
        "f64" => DType::F64,
        "i64" => DType::I64,
        "bool" => DType::Bool,
        _ => return None,
    })
}

/// A rank-0 tensor of `dtype` holding `value`.
pub(crate) fn scalar(dtype: DType, value: f64) -> Tensor {
    match dtype {
        DType::F32 => Tensor::F32(ndarray::arr0(value as f32).into_dyn()),
        DType::F64 => Tensor::F64(ndarray::arr0(value).into_dyn()),
        DType::I64 => Tensor::I64(ndarray::arr0(value as i64).into_dyn()),
        DType::Bool => Tensor::Bool(ndarray::arr0(value != 0.0).into_dyn()),
    }
}
