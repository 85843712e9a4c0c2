//! The reference interpreter: executes any Tensor IR graph on `ndarray`, in f64 or in f32.
//!
//! Floats are computed in f64; in [`Precision::F32`] every float result whose declared type is
//! f32 is rounded to f32 after each op, which reproduces an f32 runtime to within the rounding of
//! accumulations. This is the ground truth for the importers' tests and the engine of range
//! calibration.

mod elementwise;
mod layout;
mod linalg;
mod normalize;

use crate::dtype::DType;
use crate::error::IrError;
use crate::graph::{Graph, ValueRef};
use crate::op::Op;
use crate::tensor::Tensor;
use ndarray::ArrayD;
use std::collections::HashMap;

/// Arithmetic precision of float values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Compute and keep f64.
    #[default]
    F64,
    /// Round f32-typed results to f32 after each op.
    F32,
}

/// A value during interpretation.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Float(ArrayD<f64>),
    Int(ArrayD<i64>),
    Bool(ArrayD<bool>),
}

impl Value {
    pub fn shape(&self) -> &[usize] {
        match self {
            Value::Float(a) => a.shape(),
            Value::Int(a) => a.shape(),
            Value::Bool(a) => a.shape(),
        }
    }

    /// `[min, max]` of the finite elements of a float value (`None` for other kinds, or when
    /// no element is finite).
    pub fn finite_range(&self) -> Option<(f64, f64)> {
        let Value::Float(a) = self else { return None };
        let (low, high) = a
            .iter()
            .filter(|x| x.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), &x| {
                (lo.min(x), hi.max(x))
            });
        (low <= high).then_some((low, high))
    }

    fn kind(&self) -> &'static str {
        match self {
            Value::Float(_) => "float",
            Value::Int(_) => "integer",
            Value::Bool(_) => "bool",
        }
    }

    /// Converts a tensor (any precision) into an interpreter value.
    pub fn from_tensor(tensor: &Tensor) -> Value {
        match tensor {
            Tensor::F32(a) => Value::Float(a.mapv(f64::from)),
            Tensor::F64(a) => Value::Float(a.clone()),
            Tensor::I64(a) => Value::Int(a.clone()),
            Tensor::Bool(a) => Value::Bool(a.clone()),
        }
    }

    /// Converts back into a tensor of the declared element type.
    pub fn into_tensor(self, dtype: DType) -> Result<Tensor, String> {
        Ok(match (self, dtype) {
            (Value::Float(a), DType::F32) => Tensor::F32(a.mapv(|v| v as f32)),
            (Value::Float(a), DType::F64) => Tensor::F64(a),
            (Value::Int(a), DType::I64) => Tensor::I64(a),
            (Value::Bool(a), DType::Bool) => Tensor::Bool(a),
            (v, d) => return Err(format!("a {} value cannot be typed {d}", v.kind())),
        })
    }

    fn float(&self) -> Result<&ArrayD<f64>, String> {
        match self {
            Value::Float(a) => Ok(a),
            v => Err(format!("expected a float operand, got {}", v.kind())),
        }
    }
}

/// Evaluates one op on operand values.
///
/// # Errors
/// A message when the operands do not fit the op (wrong kind, out-of-range index, …); the caller
/// adds the node's name.
pub fn eval_op(op: &Op, operands: &[&Value]) -> Result<Vec<Value>, String> {
    let one = |v: Value| Ok(vec![v]);
    match op {
        Op::Input | Op::Constant(_) | Op::SyntheticWeight { .. } => {
            Err("inputs and constants are not evaluated".into())
        }
        Op::Unary(u) => one(elementwise::unary(*u, operands[0])?),
        Op::Binary(b) => one(elementwise::binary(*b, operands[0], operands[1])?),
        Op::Compare(c) => one(elementwise::compare(*c, operands[0], operands[1])?),
        Op::Where => one(elementwise::select(operands[0], operands[1], operands[2])?),
        Op::Cast { to } => one(elementwise::cast(operands[0], *to)),
        Op::Clip { min, max } => one(elementwise::clip(operands[0], *min, *max)?),
        Op::MatMul => one(Value::Float(linalg::matmul(
            operands[0].float()?,
            operands[1].float()?,
        )?)),
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => one(Value::Float(linalg::gemm(
            operands[0].float()?,
            operands[1].float()?,
            operands.get(2).map(|c| c.float()).transpose()?,
            (*alpha, *beta, *trans_a, *trans_b),
        )?)),
        Op::Attention { scale } => one(Value::Float(linalg::attention(
            operands[0].float()?,
            operands[1].float()?,
            operands[2].float()?,
            operands.get(3).map(|m| m.float()).transpose()?,
            *scale,
        )?)),
        Op::Softmax { axis } => one(Value::Float(normalize::softmax(
            operands[0].float()?,
            *axis,
        )?)),
        Op::LayerNormalization { axis, epsilon } => one(Value::Float(normalize::layer_norm(
            operands[0].float()?,
            operands[1].float()?,
            operands.get(2).map(|b| b.float()).transpose()?,
            *axis,
            *epsilon,
        )?)),
        Op::RmsNorm { epsilon } => one(Value::Float(normalize::rms_norm(
            operands[0].float()?,
            operands[1].float()?,
            *epsilon,
        )?)),
        Op::Reduce {
            op,
            axes,
            keep_dims,
        } => one(normalize::reduce(*op, operands[0], axes, *keep_dims)?),
        Op::Gelu { approximation } => one(Value::Float(normalize::gelu(
            operands[0].float()?,
            *approximation,
        ))),
        Op::Silu => one(Value::Float(normalize::silu(operands[0].float()?))),
        Op::Polynomial(p) => one(Value::Float(polynomial(p, operands[0].float()?)?)),
        Op::Rope => one(Value::Float(normalize::rope(
            operands[0].float()?,
            operands[1].float()?,
            operands[2].float()?,
        )?)),
        Op::Transpose { perm } => one(layout::transpose(operands[0], perm)),
        Op::Reshape { shape } => one(layout::reshape(operands[0], shape)?),
        Op::Flatten { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } => {
            let shape = crate::infer::infer(op, &[layout::type_of(operands[0])])
                .map_err(|e| e.to_string())?
                .remove(0)
                .shape;
            one(layout::reshape(operands[0], &shape)?)
        }
        Op::Expand { shape } => one(layout::expand(operands[0], shape)?),
        Op::Concat { axis } => one(layout::concat(operands, *axis)?),
        Op::Split { axis, sizes } => layout::split(operands[0], *axis, sizes),
        Op::Slice {
            starts,
            ends,
            axes,
            steps,
        } => one(layout::slice(operands[0], starts, ends, axes, steps)?),
        Op::Gather { axis } => one(layout::gather(operands[0], operands[1], *axis)?),
    }
}

/// The values of a [`Op::SyntheticWeight`]: a splitmix64 stream from `seed`, uniform in
/// `±1/√fan_in` for matrices (`fan_in` = the second-to-last dimension, like a default
/// `nn.Linear` initialisation) and in `[0.5, 1.5]` for vectors (norm scales); integers are 0 and
/// booleans true.
pub fn synthetic_values(dtype: DType, shape: &[usize], seed: u64) -> Value {
    let dim = ndarray::IxDyn(shape);
    match dtype {
        DType::I64 => return Value::Int(ArrayD::zeros(dim)),
        DType::Bool => return Value::Bool(ArrayD::from_elem(dim, true)),
        DType::F32 | DType::F64 => {}
    }
    let (low, high) = if shape.len() >= 2 {
        let bound = 1.0 / (shape[shape.len() - 2].max(1) as f64).sqrt();
        (-bound, bound)
    } else {
        (0.5, 1.5)
    };
    let mut state = seed;
    Value::Float(ArrayD::from_shape_simple_fn(dim, || {
        state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        low + (high - low) * ((z >> 11) as f64 / (1u64 << 53) as f64)
    }))
}

/// Evaluates a Chebyshev-basis polynomial element-wise (Clenshaw's recurrence), refusing values
/// outside its domain: there the approximation does not hold.
fn polynomial(p: &crate::op::Polynomial, x: &ArrayD<f64>) -> Result<ArrayD<f64>, String> {
    let (a, b) = p.domain;
    // Rounding of the calibrated bounds must not turn an in-range value into an error.
    let slack = 1e-9 * (b - a).abs().max(1.0);
    if let Some(&outside) = x.iter().find(|&&v| !(v >= a - slack && v <= b + slack)) {
        return Err(format!(
            "{outside} lies outside [{a}, {b}], the calibrated domain of the {} approximation \
             (recalibrate with more representative data or a larger --margin)",
            p.function
        ));
    }
    Ok(x.mapv(|v| {
        let t = (2.0 * v - a - b) / (b - a);
        let (mut b1, mut b2) = (0.0, 0.0);
        for &c in p.coefficients.iter().skip(1).rev() {
            let b0 = 2.0 * t * b1 - b2 + c;
            b2 = b1;
            b1 = b0;
        }
        t * b1 - b2 + p.coefficients.first().copied().unwrap_or(0.0)
    }))
}

/// Executes a graph on named inputs.
#[derive(Debug)]
pub struct Interpreter<'g> {
    graph: &'g Graph,
    precision: Precision,
}

impl<'g> Interpreter<'g> {
    pub fn new(graph: &'g Graph, precision: Precision) -> Self {
        Self { graph, precision }
    }

    /// Runs the graph and returns every graph output by name, typed as declared.
    ///
    /// # Errors
    /// [`IrError::MissingInput`] / [`IrError::InputMismatch`] for inputs that are absent or of
    /// the wrong shape or element type; [`IrError::Eval`] naming the node that failed.
    pub fn run(
        &self,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<HashMap<String, Tensor>, IrError> {
        let values = self.run_values(inputs, &[])?;
        let mut outputs = HashMap::new();
        for output in self.graph.outputs() {
            let value = values[&output.value].clone();
            let dtype = self.graph.value_type(output.value).expect("verified").dtype;
            let tensor = value.into_tensor(dtype).map_err(|message| IrError::Eval {
                node: output.name.clone(),
                op: "output".into(),
                message,
            })?;
            outputs.insert(output.name.clone(), tensor);
        }
        Ok(outputs)
    }

    /// Runs the graph, keeping the graph outputs and the extra values listed in `observe`.
    /// Other values are freed after their last use.
    pub fn run_values(
        &self,
        inputs: &HashMap<String, Tensor>,
        observe: &[ValueRef],
    ) -> Result<HashMap<ValueRef, Value>, IrError> {
        self.run_observed(inputs, observe, &mut |_, _| {})
    }

    /// Like [`Interpreter::run_values`], and calls `observer` with every value as it is
    /// computed (calibration records ranges this way without keeping the values).
    pub fn run_observed(
        &self,
        inputs: &HashMap<String, Tensor>,
        observe: &[ValueRef],
        observer: &mut dyn FnMut(ValueRef, &Value),
    ) -> Result<HashMap<ValueRef, Value>, IrError> {
        let graph = self.graph;
        let order = graph.topological_order();
        let mut remaining_uses: HashMap<ValueRef, usize> = HashMap::new();
        for &node in &order {
            for v in graph.operands(node) {
                *remaining_uses.entry(v).or_insert(0) += 1;
            }
        }
        let keep: std::collections::HashSet<ValueRef> = graph
            .outputs()
            .iter()
            .map(|o| o.value)
            .chain(observe.iter().copied())
            .collect();
        let mut values: HashMap<ValueRef, Value> = HashMap::new();
        for &node in &order {
            let n = graph.node(node);
            let produced = match &n.op {
                Op::Input => vec![self.input_value(n, inputs)?],
                Op::Constant(t) => vec![self.round(Value::from_tensor(t), n.outputs[0].dtype)],
                Op::SyntheticWeight { dtype, shape, seed } => {
                    vec![self.round(synthetic_values(*dtype, shape, *seed), *dtype)]
                }
                op => {
                    let operand_refs = graph.operands(node);
                    let operands: Vec<&Value> = operand_refs.iter().map(|v| &values[v]).collect();
                    let results = eval_op(op, &operands).map_err(|message| IrError::Eval {
                        node: n.source.to_string(),
                        op: op.name(),
                        message,
                    })?;
                    for v in &operand_refs {
                        let uses = remaining_uses.get_mut(v).expect("counted");
                        *uses -= 1;
                        if *uses == 0 && !keep.contains(v) {
                            values.remove(v);
                        }
                    }
                    results
                        .into_iter()
                        .zip(&n.outputs)
                        .map(|(v, ty)| self.round(v, ty.dtype))
                        .collect()
                }
            };
            for (output, value) in produced.into_iter().enumerate() {
                let v = ValueRef { node, output };
                observer(v, &value);
                if remaining_uses.get(&v).copied().unwrap_or(0) > 0 || keep.contains(&v) {
                    values.insert(v, value);
                }
            }
        }
        Ok(values)
    }

    fn input_value(
        &self,
        node: &crate::graph::Node,
        inputs: &HashMap<String, Tensor>,
    ) -> Result<Value, IrError> {
        let name = &node.output_names[0];
        let ty = &node.outputs[0];
        let tensor = inputs
            .get(name)
            .ok_or_else(|| IrError::MissingInput(name.clone()))?;
        let compatible = tensor.shape() == ty.shape.as_slice()
            && (tensor.dtype() == ty.dtype || (tensor.dtype().is_float() && ty.dtype.is_float()));
        if !compatible {
            return Err(IrError::InputMismatch {
                name: name.clone(),
                expected: format!("{}{:?}", ty.dtype, ty.shape),
                got: format!("{}{:?}", tensor.dtype(), tensor.shape()),
            });
        }
        Ok(self.round(Value::from_tensor(tensor), ty.dtype))
    }

    fn round(&self, value: Value, dtype: DType) -> Value {
        match (self.precision, value, dtype) {
            (Precision::F32, Value::Float(mut a), DType::F32) => {
                a.mapv_inplace(|v| v as f32 as f64);
                Value::Float(a)
            }
            (_, v, _) => v,
        }
    }
}
