//! Element-wise kernels with numpy broadcasting: unary and binary arithmetic, comparisons,
//! `Where`, `Cast`, `Clip`.

use super::Value;
use crate::dtype::DType;
use crate::infer::broadcast_shapes;
use crate::op::{BinaryOp, CompareOp, UnaryOp};
use ndarray::{ArrayD, IxDyn, Zip};

/// Applies `f` to `a` and `b` broadcast to their common shape.
fn zip_broadcast<A: Clone, B: Clone, C>(
    a: &ArrayD<A>,
    b: &ArrayD<B>,
    f: impl Fn(A, B) -> C,
) -> Result<ArrayD<C>, String> {
    let shape = broadcast_shapes(a.shape(), b.shape()).map_err(|e| e.to_string())?;
    let a = a.broadcast(IxDyn(&shape)).expect("broadcastable");
    let b = b.broadcast(IxDyn(&shape)).expect("broadcastable");
    Ok(Zip::from(&a)
        .and(&b)
        .map_collect(|x, y| f(x.clone(), y.clone())))
}

pub(super) fn unary(op: UnaryOp, x: &Value) -> Result<Value, String> {
    if let (UnaryOp::Not, Value::Bool(a)) = (op, x) {
        return Ok(Value::Bool(a.mapv(|v| !v)));
    }
    if let (UnaryOp::Neg | UnaryOp::Abs, Value::Int(a)) = (op, x) {
        return Ok(Value::Int(match op {
            UnaryOp::Neg => a.mapv(|v| v.wrapping_neg()),
            _ => a.mapv(|v| v.wrapping_abs()),
        }));
    }
    let a = x.float()?;
    let f: fn(f64) -> f64 = match op {
        UnaryOp::Neg => |v| -v,
        UnaryOp::Abs => f64::abs,
        UnaryOp::Sqrt => f64::sqrt,
        UnaryOp::Reciprocal => |v| 1.0 / v,
        UnaryOp::Rsqrt => |v| 1.0 / v.sqrt(),
        UnaryOp::Exp => f64::exp,
        UnaryOp::Log => f64::ln,
        UnaryOp::Erf => libm::erf,
        UnaryOp::Tanh => f64::tanh,
        UnaryOp::Sigmoid => sigmoid,
        UnaryOp::Sin => f64::sin,
        UnaryOp::Cos => f64::cos,
        UnaryOp::Floor => f64::floor,
        UnaryOp::Ceil => f64::ceil,
        UnaryOp::Not => return Err("Not needs a bool operand".into()),
    };
    Ok(Value::Float(a.mapv(f)))
}

/// The logistic function, computed without overflow for large |x|.
pub(super) fn sigmoid(v: f64) -> f64 {
    if v >= 0.0 {
        1.0 / (1.0 + (-v).exp())
    } else {
        let e = v.exp();
        e / (1.0 + e)
    }
}

pub(super) fn binary(op: BinaryOp, left: &Value, right: &Value) -> Result<Value, String> {
    match (left, right) {
        (Value::Float(a), Value::Float(b)) => {
            let f: fn(f64, f64) -> f64 = match op {
                BinaryOp::Add => |x, y| x + y,
                BinaryOp::Sub => |x, y| x - y,
                BinaryOp::Mul => |x, y| x * y,
                BinaryOp::Div => |x, y| x / y,
                BinaryOp::Pow => pow,
                BinaryOp::Max => max_or_nan,
                BinaryOp::Min => min_or_nan,
                BinaryOp::And | BinaryOp::Or => {
                    return Err(format!("{op:?} needs bool operands"));
                }
            };
            Ok(Value::Float(zip_broadcast(a, b, f)?))
        }
        (Value::Float(a), Value::Int(b)) if op == BinaryOp::Pow => {
            Ok(Value::Float(zip_broadcast(a, b, |x, y| pow(x, y as f64))?))
        }
        (Value::Int(a), Value::Int(b)) => {
            if op == BinaryOp::Div && b.iter().any(|&v| v == 0) {
                return Err("integer division by zero".into());
            }
            if op == BinaryOp::Pow && b.iter().any(|&v| v < 0) {
                return Err("negative integer exponent".into());
            }
            let f: fn(i64, i64) -> i64 = match op {
                BinaryOp::Add => i64::wrapping_add,
                BinaryOp::Sub => i64::wrapping_sub,
                BinaryOp::Mul => i64::wrapping_mul,
                BinaryOp::Div => i64::wrapping_div,
                BinaryOp::Pow => |x, y| x.wrapping_pow(y.clamp(0, u32::MAX as i64) as u32),
                BinaryOp::Max => i64::max,
                BinaryOp::Min => i64::min,
                BinaryOp::And | BinaryOp::Or => {
                    return Err(format!("{op:?} needs bool operands"));
                }
            };
            Ok(Value::Int(zip_broadcast(a, b, f)?))
        }
        (Value::Bool(a), Value::Bool(b)) => match op {
            BinaryOp::And => Ok(Value::Bool(zip_broadcast(a, b, |x, y| x && y)?)),
            BinaryOp::Or => Ok(Value::Bool(zip_broadcast(a, b, |x, y| x || y)?)),
            _ => Err(format!("{op:?} is not defined on bool operands")),
        },
        (l, r) => Err(format!("{op:?} of {} and {} operands", l.kind(), r.kind())),
    }
}

/// `x^y` with the exact square for `y = 2` (exporters emit `Pow(x, 2)` for variances).
fn pow(x: f64, y: f64) -> f64 {
    if y == 2.0 { x * x } else { x.powf(y) }
}

pub(super) fn compare(op: CompareOp, left: &Value, right: &Value) -> Result<Value, String> {
    fn apply<T: PartialOrd + Clone>(
        op: CompareOp,
        a: &ArrayD<T>,
        b: &ArrayD<T>,
    ) -> Result<ArrayD<bool>, String> {
        let f: fn(&T, &T) -> bool = match op {
            CompareOp::Equal => |x, y| x == y,
            CompareOp::Less => |x, y| x < y,
            CompareOp::LessOrEqual => |x, y| x <= y,
            CompareOp::Greater => |x, y| x > y,
            CompareOp::GreaterOrEqual => |x, y| x >= y,
        };
        zip_broadcast(a, b, |x, y| f(&x, &y))
    }
    Ok(Value::Bool(match (left, right) {
        (Value::Float(a), Value::Float(b)) => apply(op, a, b)?,
        (Value::Int(a), Value::Int(b)) => apply(op, a, b)?,
        (Value::Bool(a), Value::Bool(b)) => apply(op, a, b)?,
        (l, r) => return Err(format!("{op:?} of {} and {} operands", l.kind(), r.kind())),
    }))
}

pub(super) fn select(condition: &Value, x: &Value, y: &Value) -> Result<Value, String> {
    let Value::Bool(c) = condition else {
        return Err("Where needs a bool condition".into());
    };
    fn pick<T: Clone>(c: &ArrayD<bool>, x: &ArrayD<T>, y: &ArrayD<T>) -> Result<ArrayD<T>, String> {
        let shape = broadcast_shapes(c.shape(), x.shape()).map_err(|e| e.to_string())?;
        let shape = broadcast_shapes(&shape, y.shape()).map_err(|e| e.to_string())?;
        let dim = IxDyn(&shape);
        let (c, x, y) = (
            c.broadcast(dim.clone()).expect("broadcastable"),
            x.broadcast(dim.clone()).expect("broadcastable"),
            y.broadcast(dim).expect("broadcastable"),
        );
        Ok(Zip::from(&c)
            .and(&x)
            .and(&y)
            .map_collect(|&c, x, y| if c { x.clone() } else { y.clone() }))
    }
    Ok(match (x, y) {
        (Value::Float(a), Value::Float(b)) => Value::Float(pick(c, a, b)?),
        (Value::Int(a), Value::Int(b)) => Value::Int(pick(c, a, b)?),
        (Value::Bool(a), Value::Bool(b)) => Value::Bool(pick(c, a, b)?),
        (l, r) => return Err(format!("Where of {} and {} branches", l.kind(), r.kind())),
    })
}

pub(super) fn cast(x: &Value, to: DType) -> Value {
    match (x, to) {
        (Value::Float(a), DType::F32 | DType::F64) => Value::Float(a.clone()),
        (Value::Float(a), DType::I64) => Value::Int(a.mapv(|v| v as i64)),
        (Value::Float(a), DType::Bool) => Value::Bool(a.mapv(|v| v != 0.0)),
        (Value::Int(a), DType::F32 | DType::F64) => Value::Float(a.mapv(|v| v as f64)),
        (Value::Int(a), DType::I64) => Value::Int(a.clone()),
        (Value::Int(a), DType::Bool) => Value::Bool(a.mapv(|v| v != 0)),
        (Value::Bool(a), DType::F32 | DType::F64) => Value::Float(a.mapv(|v| v as u8 as f64)),
        (Value::Bool(a), DType::I64) => Value::Int(a.mapv(|v| v as i64)),
        (Value::Bool(a), DType::Bool) => Value::Bool(a.clone()),
    }
}

/// `max` that keeps a NaN, as ONNX and numpy do (`f64::max` drops it).
pub(super) fn max_or_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.max(b)
    }
}

/// `min` that keeps a NaN.
pub(super) fn min_or_nan(a: f64, b: f64) -> f64 {
    if a.is_nan() || b.is_nan() {
        f64::NAN
    } else {
        a.min(b)
    }
}

pub(super) fn clip(x: &Value, min: Option<f64>, max: Option<f64>) -> Result<Value, String> {
    let lo = min.unwrap_or(f64::NEG_INFINITY);
    let hi = max.unwrap_or(f64::INFINITY);
    match x {
        Value::Float(a) => Ok(Value::Float(a.mapv(|v| min_or_nan(max_or_nan(v, lo), hi)))),
        Value::Int(a) => Ok(Value::Int(a.mapv(|v| (v as f64).max(lo).min(hi) as i64))),
        Value::Bool(_) => Err("Clip of a bool operand".into()),
    }
}
