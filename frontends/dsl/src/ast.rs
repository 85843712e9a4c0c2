//! The syntax tree of a Cachemir model file, with byte spans for diagnostics.

/// A byte range in the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

/// A whole `model NAME { … }` file.
#[derive(Debug, Clone)]
pub struct Program {
    pub name: String,
    pub statements: Vec<Statement>,
}

/// One statement.
#[derive(Debug, Clone)]
pub enum Statement {
    /// `param NAME = EXPR;` — a compile-time number.
    Param {
        name: String,
        value: Expr,
        span: Span,
    },
    /// `weights "file.safetensors";` or `weights none;` (shape-only).
    Weights { file: Option<String>, span: Span },
    /// `input NAME [as ALIAS]: TYPE [encrypted|public];` — NAME may interpolate `{i}`; the
    /// input is referred to as ALIAS, or by NAME's identifier form.
    Input {
        name: String,
        alias: Option<String>,
        ty: TypeExpr,
        secrecy: Option<bool>,
        span: Span,
    },
    /// `state NAME [as ALIAS]: TYPE [encrypted|public] -> OUTPUT;` — KV-cache state replaced
    /// by `OUTPUT` after each step.
    State {
        name: String,
        alias: Option<String>,
        ty: TypeExpr,
        secrecy: Option<bool>,
        output: String,
        span: Span,
    },
    /// `let A[, B…] = EXPR @annotation(…)…;`
    Let {
        targets: Vec<(String, Span)>,
        value: Expr,
        annotations: Vec<Annotation>,
        span: Span,
    },
    /// `output NAME = EXPR;`
    Output {
        name: String,
        value: Expr,
        span: Span,
    },
    /// `for VAR in START..END { … }` — unrolled at elaboration.
    For {
        var: String,
        start: Expr,
        end: Expr,
        body: Vec<Statement>,
        span: Span,
    },
}

/// `f32[d0, d1, …]` with dimension expressions.
#[derive(Debug, Clone)]
pub struct TypeExpr {
    pub dtype: String,
    pub dims: Vec<Expr>,
    pub span: Span,
}

/// `@name(args…)` after a `let`.
#[derive(Debug, Clone)]
pub struct Annotation {
    pub name: String,
    pub args: Vec<Expr>,
    pub span: Span,
}

/// An expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

/// Infix operators, by the IR op they build (`@` is MatMul).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Infix {
    Add,
    Sub,
    Mul,
    Div,
    MatMul,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// An integer literal, kept exact (i128, so that `-9223372036854775808` negates into range).
    Int(i128),
    /// A literal with a fraction or an exponent.
    Float(f64),
    Str(String),
    Ident(String),
    List(Vec<Expr>),
    Call {
        name: String,
        args: Vec<Expr>,
        keywords: Vec<(String, Expr)>,
    },
    Infix(Infix, Box<Expr>, Box<Expr>),
    Neg(Box<Expr>),
}
