//! The Tensor IR op set: the ONNX ops found in exported transformers after constant folding, with
//! every shape-like operand resolved into a static attribute, plus the composite ops (RMSNorm,
//! GELU, SiLU, RoPE, attention) that later passes recognise and lower as a whole.
//!
//! Semantics follow the ONNX operator specification (opset 13–20) unless stated otherwise; axes
//! are stored as given (negative counts from the end) and normalised by [`crate::infer`].

use crate::dtype::DType;
use crate::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// Element-wise ops of one operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum UnaryOp {
    Neg,
    Abs,
    Sqrt,
    Reciprocal,
    /// `1/√x` (what a norm divides by; approximated as one function, by Newton iterations).
    Rsqrt,
    Exp,
    Log,
    Erf,
    Tanh,
    Sigmoid,
    Sin,
    Cos,
    Floor,
    Ceil,
    /// Logical not (bool).
    Not,
}

/// Element-wise arithmetic of two operands with numpy broadcasting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    Max,
    Min,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
}

/// Element-wise comparisons with numpy broadcasting; the result is bool.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CompareOp {
    Equal,
    Less,
    LessOrEqual,
    Greater,
    GreaterOrEqual,
}

/// Reductions over a set of axes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    /// Euclidean norm, `sqrt(sum(x^2))`.
    L2,
}

/// Which formula a GELU uses (Hendrycks & Gimpel, 2016).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum GeluApproximation {
    /// `x/2 * (1 + erf(x/√2))` (BERT, MiniLM).
    Erf,
    /// `x/2 * (1 + tanh(√(2/π) (x + 0.044715 x³)))` (GPT-2's `gelu_new`).
    Tanh,
}

/// A polynomial that replaces a non-linear function on a calibrated domain, in the Chebyshev
/// basis: `p(x) = Σ c_k T_k(t)`, `t = (2x − a − b)/(b − a)`. Evaluating it on a value outside
/// `domain` is an error, not an extrapolation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Polynomial {
    /// The function it approximates (`Exp`, `GeluErf`, …), for reports and errors.
    pub function: String,
    /// `[a, b]`: where the approximation holds.
    pub domain: (f64, f64),
    /// Chebyshev coefficients `c_0 … c_d`.
    pub coefficients: Vec<f64>,
    /// Predicted `max |f − p|` on the domain.
    pub max_error: f64,
}

impl Polynomial {
    pub fn degree(&self) -> usize {
        self.coefficients.len().saturating_sub(1)
    }
}

/// A Tensor IR operation. Operands are the node's incoming values in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Op {
    /// A graph input (no operands). Its type is the node's output type.
    Input,
    /// A constant: a weight or a folded value (no operands).
    Constant(Tensor),
    /// A weight known only by its type (shape-only compilation of a model whose weights we do
    /// not have, e.g. Llama-3-8B): no data is stored; the interpreter generates deterministic
    /// pseudo-random values from `seed` when it needs them (see
    /// [`crate::interp::synthetic_values`]). No operands.
    SyntheticWeight {
        dtype: DType,
        shape: Vec<usize>,
        seed: u64,
    },
    /// One operand.
    Unary(UnaryOp),
    /// Two operands, broadcast.
    Binary(BinaryOp),
    /// Two operands, broadcast; bool result.
    Compare(CompareOp),
    /// `(condition, x, y)`, broadcast: `x` where `condition`, else `y`.
    Where,
    /// Element type conversion (ONNX `Cast`; floats to integers truncate toward zero).
    Cast { to: DType },
    /// Clamp into `[min, max]`; a missing bound is open.
    Clip { min: Option<f64>, max: Option<f64> },
    /// numpy `matmul` of `(a, b)`: batched over leading dims with broadcasting.
    MatMul,
    /// `alpha * op(a) @ op(b) + beta * c` with `op` an optional transpose; `c` optional.
    Gemm {
        alpha: f64,
        beta: f64,
        trans_a: bool,
        trans_b: bool,
    },
    /// Softmax along one axis (ONNX opset ≥ 13 semantics).
    Softmax { axis: i64 },
    /// `(x, scale, bias?)`: normalise over the axes from `axis` to the end:
    /// `(x - mean) / sqrt(var + epsilon) * scale + bias`.
    LayerNormalization { axis: i64, epsilon: f64 },
    /// `(x, scale)`: `x / sqrt(mean(x^2) + epsilon) * scale` over the last axis (Zhang & Sennrich, 2019).
    RmsNorm { epsilon: f64 },
    /// Reduce over `axes` (all axes when empty).
    Reduce {
        op: ReduceOp,
        axes: Vec<i64>,
        keep_dims: bool,
    },
    /// Permute the axes.
    Transpose { perm: Vec<usize> },
    /// Reinterpret with a new static shape (same element count).
    Reshape { shape: Vec<usize> },
    /// Broadcast to a static shape.
    Expand { shape: Vec<usize> },
    /// Concatenate all operands along `axis`.
    Concat { axis: i64 },
    /// Split along `axis` into pieces of the given sizes (one output each).
    Split { axis: i64, sizes: Vec<usize> },
    /// Strided slice: per listed axis, `start..end` by `step` (ONNX clamping rules; negative
    /// indices count from the end).
    Slice {
        starts: Vec<i64>,
        ends: Vec<i64>,
        axes: Vec<i64>,
        steps: Vec<i64>,
    },
    /// `(data, indices)`: pick along `axis` (ONNX `Gather`; negative indices wrap).
    Gather { axis: i64 },
    /// Remove the listed size-1 axes.
    Squeeze { axes: Vec<i64> },
    /// Insert size-1 axes at the listed output positions.
    Unsqueeze { axes: Vec<i64> },
    /// Flatten to 2-D: dims before `axis` and from `axis` on.
    Flatten { axis: i64 },
    /// An element-wise polynomial (see [`Polynomial`]).
    Polynomial(Polynomial),
    /// GELU of one operand.
    Gelu { approximation: GeluApproximation },
    /// `x * sigmoid(x)` (SiLU / swish).
    Silu,
    /// Rotary position embedding, rotate-half form (Su et al., RoFormer, 2021):
    /// `(x, cos, sin)` with `x` of shape `[.., seq, head_dim]` and `cos`, `sin` broadcastable to it:
    /// `x * cos + rotate_half(x) * sin`, `rotate_half([a, b]) = [-b, a]` on the last axis.
    Rope,
    /// Scaled dot-product attention with grouped KV heads (GQA):
    /// `(q [B,H,S,D], k [B,Hkv,T,D], v [B,Hkv,T,Dv], mask?)` with `H` a multiple of `Hkv`;
    /// `softmax(q kᵀ * scale + mask) v`, mask additive and broadcastable to `[B,H,S,T]`.
    /// Output `[B,H,S,Dv]`. The KV cache is appended by a `Concat` before this op.
    Attention { scale: f64 },
}

impl Op {
    /// The op's name as printed (ONNX op type where one exists).
    pub fn name(&self) -> String {
        match self {
            Op::Input => "Input".into(),
            Op::Constant(_) => "Constant".into(),
            Op::SyntheticWeight { .. } => "SyntheticWeight".into(),
            Op::Unary(u) => format!("{u:?}"),
            Op::Binary(b) => format!("{b:?}"),
            Op::Compare(c) => format!("{c:?}"),
            Op::Where => "Where".into(),
            Op::Cast { .. } => "Cast".into(),
            Op::Clip { .. } => "Clip".into(),
            Op::MatMul => "MatMul".into(),
            Op::Gemm { .. } => "Gemm".into(),
            Op::Softmax { .. } => "Softmax".into(),
            Op::LayerNormalization { .. } => "LayerNormalization".into(),
            Op::RmsNorm { .. } => "RmsNorm".into(),
            Op::Reduce { op, .. } => format!("Reduce{op:?}"),
            Op::Transpose { .. } => "Transpose".into(),
            Op::Reshape { .. } => "Reshape".into(),
            Op::Expand { .. } => "Expand".into(),
            Op::Concat { .. } => "Concat".into(),
            Op::Split { .. } => "Split".into(),
            Op::Slice { .. } => "Slice".into(),
            Op::Gather { .. } => "Gather".into(),
            Op::Squeeze { .. } => "Squeeze".into(),
            Op::Unsqueeze { .. } => "Unsqueeze".into(),
            Op::Flatten { .. } => "Flatten".into(),
            Op::Gelu { .. } => "Gelu".into(),
            Op::Polynomial(_) => "Polynomial".into(),
            Op::Silu => "Silu".into(),
            Op::Rope => "Rope".into(),
            Op::Attention { .. } => "Attention".into(),
        }
    }

    /// The attributes as `key=value` text, in a fixed order (for the printer).
    pub fn attributes(&self) -> Vec<String> {
        match self {
            Op::Cast { to } => vec![format!("to={to}")],
            Op::Clip { min, max } => vec![format!("min={min:?}"), format!("max={max:?}")],
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => vec![
                format!("alpha={alpha}"),
                format!("beta={beta}"),
                format!("trans_a={trans_a}"),
                format!("trans_b={trans_b}"),
            ],
            Op::Softmax { axis } | Op::Concat { axis } | Op::Gather { axis } => {
                vec![format!("axis={axis}")]
            }
            Op::Flatten { axis } => vec![format!("axis={axis}")],
            Op::LayerNormalization { axis, epsilon } => {
                vec![format!("axis={axis}"), format!("epsilon={epsilon:e}")]
            }
            Op::RmsNorm { epsilon } => vec![format!("epsilon={epsilon:e}")],
            Op::Reduce {
                axes, keep_dims, ..
            } => {
                vec![format!("axes={axes:?}"), format!("keep_dims={keep_dims}")]
            }
            Op::Transpose { perm } => vec![format!("perm={perm:?}")],
            Op::Reshape { shape } | Op::Expand { shape } => vec![format!("shape={shape:?}")],
            Op::Split { axis, sizes } => vec![format!("axis={axis}"), format!("sizes={sizes:?}")],
            Op::Slice {
                starts,
                ends,
                axes,
                steps,
            } => vec![
                format!("starts={starts:?}"),
                format!("ends={ends:?}"),
                format!("axes={axes:?}"),
                format!("steps={steps:?}"),
            ],
            Op::Squeeze { axes } | Op::Unsqueeze { axes } => vec![format!("axes={axes:?}")],
            Op::Gelu { approximation } => vec![format!("approximation={approximation:?}")],
            Op::Attention { scale } => vec![format!("scale={scale}")],
            Op::Polynomial(p) => vec![
                format!("function={}", p.function),
                format!("domain=[{}, {}]", p.domain.0, p.domain.1),
                format!("degree={}", p.degree()),
                format!("max_error={:.2e}", p.max_error),
            ],
            Op::SyntheticWeight { seed, .. } => vec![format!("seed={seed}")],
            Op::Input
            | Op::Constant(_)
            | Op::Unary(_)
            | Op::Binary(_)
            | Op::Compare(_)
            | Op::Where
            | Op::MatMul
            | Op::Silu
            | Op::Rope => vec![],
        }
    }

    /// Whether the op has no operands and a value fixed at compile time (the server's weights).
    pub fn is_constant(&self) -> bool {
        matches!(self, Op::Constant(_) | Op::SyntheticWeight { .. })
    }

    /// Number of outputs the op produces.
    pub fn output_count(&self) -> usize {
        match self {
            Op::Split { sizes, .. } => sizes.len(),
            _ => 1,
        }
    }
}
