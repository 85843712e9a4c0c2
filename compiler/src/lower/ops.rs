//! Per-op lowering: element-wise ops, polynomials, reductions, data movement (views) and the
//! matrix products (ciphertext × weight by the interleaved kernel, ciphertext × ciphertext by
//! broadcast-multiply-reduce in a product layout).

use super::Cipher;
use super::kernels::matvec::{self, Matrix};
use super::kernels::stacked;
use super::kernels::{polynomial, reduce::reduce};
use super::lowering::{KernelRecord, LowerError, Lowering, WeightSource};
use super::movement::{Broadcast, element_map, is_movement};
use super::select::{
    Stack, decode_product, general_product, packed_scores, rows_interleaved, sequence_output,
    sequence_product, stacked_rows,
};
use super::value::Value;
use cachemir_ir::layout::{EMPTY, Layout, runs_of};
use cachemir_ir::plan::{Plaintext, Register, TensorRef};
use cachemir_ir::{BinaryOp, NodeIndex, Op, ReduceOp, UnaryOp, ValueRef};
use std::sync::Arc;

/// Ciphertexts of decode-attention scores from which they are packed before softmax.
pub const PACK_SCORES_FROM: usize = 16;

impl Lowering<'_> {
    fn unsupported(&self, node: NodeIndex, reason: impl Into<String>) -> LowerError {
        let n = self.graph.node(node);
        LowerError::Unsupported {
            node: n.output_names[0].clone(),
            op: n.op.name(),
            reason: reason.into(),
        }
    }

    fn value(&self, v: ValueRef) -> Value {
        self.values
            .get(&v)
            .cloned()
            .expect("operands are lowered first")
    }

    fn shape(&self, v: ValueRef) -> Vec<usize> {
        self.graph.value_type(v).expect("typed").shape.clone()
    }

    fn set(&mut self, node: NodeIndex, output: usize, value: Value) {
        self.values.insert(ValueRef { node, output }, value);
    }

    /// Lowers one node with an encrypted output.
    pub(super) fn lower_node(&mut self, node: NodeIndex) -> Result<(), LowerError> {
        let n = self.graph.node(node);
        let operands = self.graph.operands(node);
        match &n.op {
            op if is_movement(op) => self.movement(node),
            Op::Binary(op) => self.binary(node, *op),
            Op::Unary(UnaryOp::Neg) => {
                let x = self.value(operands[0]);
                let x = self.materialize(&x);
                let registers = x.registers.iter().map(|r| self.b.negate(*r)).collect();
                self.set(node, 0, Value::Cipher(Cipher { registers, layout: x.layout }));
                Ok(())
            }
            Op::Polynomial(p) => {
                let x = self.value(operands[0]);
                let x = self.materialize(&x);
                for (part, register) in x.registers.iter().enumerate() {
                    self.b.check(*register, p.domain.0, p.domain.1, &x.layout, part);
                }
                let y = polynomial::chebyshev(&mut self.b, &x, p);
                self.set(node, 0, Value::Cipher(y));
                Ok(())
            }
            Op::Reduce { op, axes, keep_dims } => {
                let scale_by_count = match op {
                    ReduceOp::Sum => false,
                    ReduceOp::Mean => true,
                    _ => return Err(self.unsupported(node, "only sums and means reduce encrypted values")),
                };
                let x = self.value(operands[0]);
                let mut cipher = self.materialize(&x);
                let rank = cipher.layout.shape.len();
                let mut axes: Vec<usize> = if axes.is_empty() {
                    (0..rank).collect()
                } else {
                    axes.iter().map(|&a| if a < 0 { (a + rank as i64) as usize } else { a as usize }).collect()
                };
                axes.sort_unstable_by(|a, b| b.cmp(a));
                for axis in axes {
                    let n = cipher.layout.shape[axis];
                    let scale = if scale_by_count { 1.0 / n as f64 } else { 1.0 };
                    cipher = reduce(&mut self.b, &cipher, axis, scale);
                }
                let out_shape = n.outputs[0].shape.clone();
                let value = if *keep_dims {
                    Value::Cipher(cipher)
                } else {
                    let v = Value::Cipher(cipher);
                    let view = Value::rearrange(&[&v], &out_shape, |e| (0, e));
                    Value::Cipher(self.materialize(&view))
                };
                self.set(node, 0, value);
                Ok(())
            }
            Op::MatMul | Op::Gemm { .. } => {
                if self.encrypted(operands[1]) {
                    if matches!(n.op, Op::Gemm { .. }) {
                        return Err(self.unsupported(node, "Gemm of two encrypted operands"));
                    }
                    self.product(node)
                } else {
                    self.matrix_vector(node)
                }
            }
            _ => Err(self.unsupported(
                node,
                "no slot-level lowering for this op on encrypted values (run the approximation pass first)",
            )),
        }
    }

    fn movement(&mut self, node: NodeIndex) -> Result<(), LowerError> {
        let n = self.graph.node(node);
        let operands = self.graph.operands(node);
        let data: Vec<ValueRef> = match n.op {
            Op::Gather { .. } => operands[..1].to_vec(),
            _ => operands.clone(),
        };
        if let Some(public) = data.iter().find(|v| !self.encrypted(**v)) {
            let name = self.graph.value_name(*public).unwrap_or("?").to_string();
            return Err(
                self.unsupported(node, format!("mixes encrypted values with public {name}"))
            );
        }
        let shapes: Vec<Vec<usize>> = operands.iter().map(|v| self.shape(*v)).collect();
        let indices = match n.op {
            Op::Gather { .. } => Some(
                self.graph
                    .constant(operands[1])
                    .ok_or_else(|| {
                        self.unsupported(node, "encrypted gather needs constant indices")
                    })?
                    .clone(),
            ),
            _ => None,
        };
        let values: Vec<Value> = data.iter().map(|v| self.value(*v)).collect();
        if matches!(
            n.op,
            Op::Reshape { .. } | Op::Squeeze { .. } | Op::Unsqueeze { .. } | Op::Flatten { .. }
        ) {
            self.set(node, 0, values[0].reshaped(&n.outputs[0].shape));
            return Ok(());
        }
        let refs: Vec<&Value> = values.iter().collect();
        for (output, ty) in n.outputs.iter().enumerate() {
            let map = element_map(&n.op, &shapes, output, &ty.shape, indices.as_ref())
                .ok_or_else(|| self.unsupported(node, "not a data-movement op"))?;
            let view = Value::rearrange(&refs, &ty.shape, |e| {
                let (operand, element) = map[e];
                (operand as usize, element as usize)
            });
            self.set(node, output, view);
        }
        Ok(())
    }

    fn binary(&mut self, node: NodeIndex, op: BinaryOp) -> Result<(), LowerError> {
        let n = self.graph.node(node);
        let out_shape = n.outputs[0].shape.clone();
        let operands = self.graph.operands(node);
        let (a, b) = (operands[0], operands[1]);
        if !matches!(
            op,
            BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul | BinaryOp::Div
        ) {
            return Err(self.unsupported(
                node,
                "only +, −, × and ÷ by public values on encrypted values",
            ));
        }
        match (self.encrypted(a), self.encrypted(b)) {
            (true, true) => {
                if op == BinaryOp::Div {
                    return Err(
                        self.unsupported(node, "division by an encrypted value (decompose first)")
                    );
                }
                let (va, vb) = (self.value(a), self.value(b));
                let a_leads =
                    va.shape() == out_shape.as_slice() || vb.shape() != out_shape.as_slice();
                let (lead, other) = if a_leads { (va, vb) } else { (vb, va) };
                let lead = self.broadcast(&lead, &out_shape);
                let lead = self.materialize(&lead);
                let other_shape = other.shape().to_vec();
                let broadcast = Broadcast::new(&out_shape, &other_shape);
                let target = remap(&lead.layout, &other_shape, |e| broadcast.index(e));
                let other = if op == BinaryOp::Mul {
                    other.gather_for_product(&mut self.b, &target)
                } else {
                    other.gather_into(&mut self.b, &target, None)
                };
                let registers = lead
                    .registers
                    .iter()
                    .zip(&other.registers)
                    .map(|(&l, &o)| match op {
                        BinaryOp::Add => self.b.add(l, o),
                        BinaryOp::Mul => self.b.multiply(l, o),
                        _ if a_leads => self.b.sub(l, o),
                        _ => self.b.sub(o, l),
                    })
                    .collect();
                self.set(
                    node,
                    0,
                    Value::Cipher(Cipher {
                        registers,
                        layout: lead.layout,
                    }),
                );
            }
            (true, false) | (false, true) => {
                let encrypted_first = self.encrypted(a);
                let (x, p) = if encrypted_first { (a, b) } else { (b, a) };
                let xv = self.value(x);
                let xv = self.broadcast(&xv, &out_shape);
                let x_cipher = self.materialize(&xv);
                let p_shape = self.shape(p);
                let scalar = self
                    .graph
                    .constant(p)
                    .filter(|t| t.len() == 1)
                    .map(|t| t.to_f64().iter().copied().next().unwrap_or(0.0));
                let registers: Vec<Register> = match (op, encrypted_first) {
                    (BinaryOp::Mul, _) => match scalar {
                        Some(c) => x_cipher
                            .registers
                            .iter()
                            .map(|r| self.b.multiply_scalar(*r, c))
                            .collect(),
                        None => {
                            let tensor = self.tensor_ref(p);
                            self.per_part(&x_cipher, &out_shape, &p_shape, tensor, |b, r, pt| {
                                b.multiply_plain(r, pt)
                            })
                        }
                    },
                    (BinaryOp::Div, true) => match scalar {
                        Some(c) => x_cipher
                            .registers
                            .iter()
                            .map(|r| self.b.multiply_scalar(*r, 1.0 / c))
                            .collect(),
                        None => {
                            if self.graph.constant(p).is_none() {
                                return Err(self.unsupported(
                                    node,
                                    "division by a public value computed at run time",
                                ));
                            }
                            let name =
                                format!("{}/reciprocal", self.graph.value_name(p).unwrap_or("?"));
                            self.weights
                                .insert(name.clone(), WeightSource::Reciprocal(p));
                            self.per_part(
                                &x_cipher,
                                &out_shape,
                                &p_shape,
                                TensorRef::Weight(name),
                                |b, r, pt| b.multiply_plain(r, pt),
                            )
                        }
                    },
                    (BinaryOp::Div, false) => {
                        return Err(self.unsupported(
                            node,
                            "division by an encrypted value (decompose first)",
                        ));
                    }
                    (BinaryOp::Add | BinaryOp::Sub, _) => {
                        // x + p, x − p = x + (−p), p − x = (−x) + p.
                        let negate_x = op == BinaryOp::Sub && !encrypted_first;
                        let sign = if op == BinaryOp::Sub && encrypted_first {
                            -1.0
                        } else {
                            1.0
                        };
                        let base: Vec<Register> = if negate_x {
                            x_cipher
                                .registers
                                .iter()
                                .map(|r| self.b.negate(*r))
                                .collect()
                        } else {
                            x_cipher.registers.clone()
                        };
                        let base_cipher = Cipher {
                            registers: base,
                            layout: x_cipher.layout.clone(),
                        };
                        match scalar {
                            Some(c) => self.add_constant(&base_cipher, sign * c),
                            None => {
                                let tensor = self.tensor_ref(p);
                                if sign < 0.0 {
                                    self.per_part(
                                        &base_cipher,
                                        &out_shape,
                                        &p_shape,
                                        tensor,
                                        |b, r, pt| b.sub_plain(r, pt),
                                    )
                                } else {
                                    self.per_part(
                                        &base_cipher,
                                        &out_shape,
                                        &p_shape,
                                        tensor,
                                        |b, r, pt| b.add_plain(r, pt),
                                    )
                                }
                            }
                        }
                    }
                    _ => unreachable!("filtered above"),
                };
                self.set(
                    node,
                    0,
                    Value::Cipher(Cipher {
                        registers,
                        layout: x_cipher.layout,
                    }),
                );
            }
            (false, false) => unreachable!("an encrypted node has an encrypted operand"),
        }
        Ok(())
    }

    /// `x` broadcast to `shape` (a view when it is smaller).
    fn broadcast(&self, x: &Value, shape: &[usize]) -> Value {
        if x.shape() == shape {
            return x.clone();
        }
        let broadcast = Broadcast::new(shape, x.shape());
        Value::rearrange(&[x], shape, |e| (0, broadcast.index(e)))
    }

    /// `c` added to every element, keeping empty slots zero.
    fn add_constant(&mut self, x: &Cipher, c: f64) -> Vec<Register> {
        x.registers
            .iter()
            .enumerate()
            .map(|(part, &r)| {
                let map = &x.layout.map[part];
                if map.iter().all(|&e| e != EMPTY) {
                    self.b.add_scalar(r, c)
                } else {
                    let runs = runs_of(std::slice::from_ref(map));
                    self.b.add_plain(r, Plaintext::Fill { runs, value: c })
                }
            })
            .collect()
    }

    /// One plaintext per ciphertext of `x`: the public tensor (of `p_shape`, broadcast to
    /// `out_shape`) in `x`'s layout.
    fn per_part(
        &mut self,
        x: &Cipher,
        out_shape: &[usize],
        p_shape: &[usize],
        tensor: TensorRef,
        emit: impl Fn(&mut super::Builder, Register, Plaintext) -> Register,
    ) -> Vec<Register> {
        let broadcast = Broadcast::new(out_shape, p_shape);
        x.registers
            .iter()
            .enumerate()
            .map(|(part, &r)| {
                let map: Vec<u32> = x.layout.map[part]
                    .iter()
                    .map(|&e| {
                        if e == EMPTY {
                            EMPTY
                        } else {
                            broadcast.index(e as usize) as u32
                        }
                    })
                    .collect();
                let plaintext = Plaintext::Gather {
                    tensor: tensor.clone(),
                    runs: runs_of(&[map]),
                    scale: 1.0,
                };
                emit(&mut self.b, r, plaintext)
            })
            .collect()
    }

    /// Ciphertext × public weight: one interleaved matrix–vector product per row.
    fn matrix_vector(&mut self, node: NodeIndex) -> Result<(), LowerError> {
        let n = self.graph.node(node);
        let operands = self.graph.operands(node);
        let out_shape = n.outputs[0].shape.clone();
        let (a, w) = (operands[0], operands[1]);
        let w_shape = self.shape(w);
        if w_shape.len() != 2 || !self.input_free(w.node) {
            return Err(self.unsupported(
                node,
                "the weight of an encrypted matrix product must be a 2-D constant",
            ));
        }
        let (alpha, beta, trans_a, trans_b) = match n.op {
            Op::Gemm {
                alpha,
                beta,
                trans_a,
                trans_b,
            } => (alpha, beta, trans_a, trans_b),
            _ => (1.0, 1.0, false, false),
        };
        if trans_a {
            return Err(self.unsupported(node, "Gemm with transA on an encrypted operand"));
        }
        let name = self.graph.value_name(w).unwrap_or("?").to_string();
        let (rows, columns, tensor) = if trans_b || alpha != 1.0 {
            let derived = format!("{name}/transposed");
            let (rows, columns) = if trans_b {
                (w_shape[1], w_shape[0])
            } else {
                (w_shape[0], w_shape[1])
            };
            let source = if trans_b {
                WeightSource::Transposed {
                    value: w,
                    scale: alpha,
                }
            } else {
                WeightSource::Scaled {
                    value: w,
                    scale: alpha,
                }
            };
            self.weights.insert(derived.clone(), source);
            (rows, columns, TensorRef::Weight(derived))
        } else {
            (w_shape[0], w_shape[1], self.tensor_ref(w))
        };
        let a_value = self.value(a);
        let a_shape = a_value.shape().to_vec();
        let slots = self.b.slots;
        let row_count: usize = a_shape[..a_shape.len() - 1].iter().product();
        let matrix = Matrix {
            tensor,
            rows,
            columns,
        };
        // Kernel records count the kernel, not the conversion of its input.
        let mut y = if row_count > 1 {
            // All rows at once: the stack's long vector times diag(W, …, W).
            let x = a_value.gather_into(
                &mut self.b,
                &stacked_rows(&a_shape, slots, self.period),
                None,
            );
            let before = self.b.counts;
            let y = stacked::stacked(&mut self.b, &x, &matrix, self.period, &out_shape);
            self.kernels.push(KernelRecord {
                site: n.output_names[0].clone(),
                kernel: format!(
                    "stacked(period {}, long period {}) {rows}×{columns} × {row_count} rows",
                    self.period,
                    Stack::of_shape(&a_shape, slots, self.period).period
                ),
                counts: self.b.counts - before,
            });
            y
        } else {
            let x = a_value.gather_into(
                &mut self.b,
                &rows_interleaved(&a_shape, slots, self.period),
                None,
            );
            let before = self.b.counts;
            let input = Cipher {
                registers: x.registers.clone(),
                layout: Arc::new(Layout::interleaved(&[rows], slots, self.period)),
            };
            let y = matvec::interleaved(&mut self.b, &input, &matrix, &[], &[columns]);
            self.kernels.push(KernelRecord {
                site: n.output_names[0].clone(),
                kernel: format!(
                    "interleaved(period {}) {rows}×{columns} × {row_count} rows",
                    self.period
                ),
                counts: self.b.counts - before,
            });
            Cipher {
                registers: y.registers,
                layout: Arc::new(rows_interleaved(&out_shape, slots, self.period)),
            }
        };
        if let Some(&bias) = operands.get(2) {
            let bias_shape = self.shape(bias);
            let tensor = if beta == 1.0 {
                self.tensor_ref(bias)
            } else {
                let derived = format!("{}/scaled", self.graph.value_name(bias).unwrap_or("?"));
                self.weights.insert(
                    derived.clone(),
                    WeightSource::Scaled {
                        value: bias,
                        scale: beta,
                    },
                );
                TensorRef::Weight(derived)
            };
            let registers = self.per_part(&y, &out_shape, &bias_shape, tensor, |b, r, pt| {
                b.add_plain(r, pt)
            });
            y.registers = registers;
        }
        self.set(node, 0, Value::Cipher(y));
        Ok(())
    }

    /// Ciphertext × ciphertext matrix product: both operands broadcast into a product layout over
    /// `[batch, m, n, k]`, multiplied, and summed over `k`. Decode attention uses Cachemir's layout
    /// ([`decode_product`]), self-attention over `m > 1` tokens the copies of the stacked rows
    /// ([`sequence_product`]; scores packed by [`packed_scores`]), everything else a row-major
    /// one ([`general_product`]).
    fn product(&mut self, node: NodeIndex) -> Result<(), LowerError> {
        let n = self.graph.node(node);
        let operands = self.graph.operands(node);
        let out_shape = n.outputs[0].shape.clone();
        let (va, vb) = (self.value(operands[0]), self.value(operands[1]));
        let (sa, sb) = (va.shape().to_vec(), vb.shape().to_vec());
        if sa.len() < 2 || sb.len() < 2 {
            return Err(self.unsupported(node, "encrypted matrix products need rank ≥ 2"));
        }
        let (m, k, nn) = (sa[sa.len() - 2], sa[sa.len() - 1], sb[sb.len() - 1]);
        let batch: usize = out_shape[..out_shape.len() - 2].iter().product();
        let batch_shape = &out_shape[..out_shape.len() - 2];
        let (batch_a, batch_b) = (
            Broadcast::new(batch_shape, &sa[..sa.len() - 2]),
            Broadcast::new(batch_shape, &sb[..sb.len() - 2]),
        );
        let a_index = |bi: usize, i: usize, kk: usize| (batch_a.index(bi) * m + i) * k + kk;
        let b_index = |bi: usize, kk: usize, j: usize| (batch_b.index(bi) * k + kk) * nn + j;
        let slots = self.b.slots;
        let token_inner = self.attention_role(node, m, k, nn);
        let fits = |inner: bool| batch * if inner { nn } else { k } <= self.period;
        let before = self.b.counts;
        let (summed, kernel) = match token_inner.filter(|&inner| m > 1 || fits(inner)) {
            Some(inner) if m > 1 => {
                // Self-attention over the sequence: every query row at once (see
                // `select::sequence_product`).
                let head_dim = if inner { nn } else { k };
                let layout = sequence_product(batch, m, head_dim, inner, slots, self.period);
                let product_shape = layout.shape.clone();
                let (a_view, b_view) = if inner {
                    // Elements (h, i, d, j): probabilities (h, i, j), values (h, j, d).
                    let split = |e: usize| {
                        (
                            e / (m * head_dim * m),
                            (e / (head_dim * m)) % m,
                            (e / m) % head_dim,
                            e % m,
                        )
                    };
                    (
                        Value::rearrange(&[&va], &product_shape, |e| {
                            let (h, i, _, j) = split(e);
                            (0, a_index(h, i, j))
                        }),
                        Value::rearrange(&[&vb], &product_shape, |e| {
                            let (h, _, d, j) = split(e);
                            (0, b_index(h, j, d))
                        }),
                    )
                } else {
                    // Elements (h, i, j, d): queries (h, i, d), keys (h, d, j).
                    let split = |e: usize| {
                        (
                            e / (m * m * head_dim),
                            (e / (m * head_dim)) % m,
                            (e / head_dim) % m,
                            e % head_dim,
                        )
                    };
                    (
                        Value::rearrange(&[&va], &product_shape, |e| {
                            let (h, i, _, d) = split(e);
                            (0, a_index(h, i, d))
                        }),
                        Value::rearrange(&[&vb], &product_shape, |e| {
                            let (h, _, j, d) = split(e);
                            (0, b_index(h, d, j))
                        }),
                    )
                };
                let b_cipher = b_view.gather_into(&mut self.b, &layout, None);
                let a_cipher = a_view.gather_for_product(&mut self.b, &layout);
                let products: Vec<Register> = a_cipher
                    .registers
                    .iter()
                    .zip(&b_cipher.registers)
                    .map(|(&x, &y)| self.b.multiply(x, y))
                    .collect();
                let per_copy = products.len() / m;
                if inner {
                    // Σ_j: the copies, slot by slot.
                    let mut sums = products[..per_copy].to_vec();
                    for copy in products.chunks(per_copy).skip(1) {
                        for (sum, &term) in sums.iter_mut().zip(copy) {
                            *sum = self.b.add(*sum, term);
                        }
                    }
                    let layout =
                        sequence_output(&out_shape, batch, m, head_dim, slots, self.period);
                    (
                        Cipher {
                            registers: sums,
                            layout: Arc::new(layout),
                        },
                        "self-attention softmax·V",
                    )
                } else {
                    let product = Cipher {
                        registers: products,
                        layout: Arc::new(layout),
                    };
                    let summed = Value::Cipher(reduce(&mut self.b, &product, 4, 1.0));
                    let view = Value::rearrange(&[&summed], &out_shape, |e| (0, e));
                    let scores = if m <= head_dim {
                        let packed =
                            packed_scores(&out_shape, batch, m, head_dim, slots, self.period);
                        view.gather_into(&mut self.b, &packed, None)
                    } else {
                        self.materialize(&view)
                    };
                    (scores, "self-attention qKᵀ")
                }
            }
            Some(inner) => {
                // One attention row at a time against keys (values) converted once.
                let layout = decode_product(batch, nn, k, inner, slots, self.period);
                let row_shape = [1, batch, 1, nn, k];
                let split = |e: usize| (e / (nn * k), (e / k) % nn, e % k);
                let b_view = Value::rearrange(&[&vb], &row_shape, |e| {
                    let (bi, j, kk) = split(e);
                    (0, b_index(bi, kk, j))
                });
                let b_cipher = b_view.gather_into(&mut self.b, &layout, None);
                let mut rows = Vec::with_capacity(m);
                for i in 0..m {
                    let a_view = Value::rearrange(&[&va], &row_shape, |e| {
                        let (bi, _, kk) = split(e);
                        (0, a_index(bi, i, kk))
                    });
                    let a_cipher = a_view.gather_for_product(&mut self.b, &layout);
                    rows.push(self.multiply_and_sum(&a_cipher, &b_cipher));
                }
                // Row i's element (b, j) is output element (b·m + i)·n + j.
                let mut map = Vec::new();
                let mut registers = Vec::new();
                for (i, row) in rows.iter().enumerate() {
                    registers.extend(&row.registers);
                    map.extend(row.layout.map.iter().map(|part| {
                        part.iter()
                            .map(|&e| {
                                if e == EMPTY {
                                    EMPTY
                                } else {
                                    let (bi, j) = (e as usize / nn, e as usize % nn);
                                    ((bi * m + i) * nn + j) as u32
                                }
                            })
                            .collect()
                    }));
                }
                let layout = Layout::from_map(&out_shape, slots, map);
                let name = if inner {
                    "attention softmax·V"
                } else {
                    "attention qKᵀ"
                };
                (
                    Cipher {
                        registers,
                        layout: Arc::new(layout),
                    },
                    name,
                )
            }
            None => {
                let product_shape = [1, batch, m, nn, k];
                let layout = general_product(&product_shape, slots);
                let split = |e: usize| (e / (m * nn * k), (e / (nn * k)) % m, (e / k) % nn, e % k);
                let a_view = Value::rearrange(&[&va], &product_shape, |e| {
                    let (bi, i, _, kk) = split(e);
                    (0, a_index(bi, i, kk))
                });
                let b_view = Value::rearrange(&[&vb], &product_shape, |e| {
                    let (bi, _, j, kk) = split(e);
                    (0, b_index(bi, kk, j))
                });
                let b_cipher = b_view.gather_into(&mut self.b, &layout, None);
                let a_cipher = a_view.gather_for_product(&mut self.b, &layout);
                let summed = self.multiply_and_sum(&a_cipher, &b_cipher);
                let summed = Value::Cipher(summed);
                let view = Value::rearrange(&[&summed], &out_shape, |e| (0, e));
                (self.materialize(&view), "general ct×ct product")
            }
        };
        self.kernels.push(KernelRecord {
            site: n.output_names[0].clone(),
            kernel: format!("{kernel} [{batch}×{m}×{nn}×{k}]"),
            counts: self.b.counts - before,
        });
        // Decode scores against a long cache are spread over as many ciphertexts as the cache
        // (one slot in `k`): softmax would multiply and bootstrap every one of them. Packed
        // they fit in one; the softmax·V product spreads them back — worth it from
        // [`PACK_SCORES_FROM`] ciphertexts on.
        let mut summed = summed;
        if token_inner == Some(false) && m == 1 && summed.registers.len() >= PACK_SCORES_FROM {
            // Row-major into one ciphertext only: there the softmax sums and their broadcast
            // are rotations within it; across several (or in an irregular packing) the
            // broadcast back is a general conversion, not worth it yet.
            let packed = Layout::row_major(&out_shape, slots);
            if packed.ciphertexts() == 1 {
                summed = Value::Cipher(summed).gather_into(&mut self.b, &packed, None);
            }
        }
        self.set(node, 0, Value::Cipher(summed));
        Ok(())
    }

    /// Slot-wise product of two ciphertexts in one product layout, summed over its last axis.
    fn multiply_and_sum(&mut self, a: &Cipher, b: &Cipher) -> Cipher {
        let registers = a
            .registers
            .iter()
            .zip(&b.registers)
            .map(|(&x, &y)| self.b.multiply(x, y))
            .collect();
        let product = Cipher {
            registers,
            layout: b.layout.clone(),
        };
        let rank = product.layout.shape.len();
        reduce(&mut self.b, &product, rank - 1, 1.0)
    }

    /// Whether a ciphertext product `[.., m, k] × [.., k, n]` is attention's `qKᵀ`
    /// (`Some(false)`: the head dimension is summed) or `softmax·V` (`Some(true)`: the key
    /// position is summed): from the KV caches' head dimension for decode steps, from the square
    /// score matrix for self-attention over a sequence, and where shapes cannot tell (as many
    /// tokens as the head dimension) from the first operand's history: scores come out of an
    /// earlier ciphertext product.
    fn attention_role(&self, node: NodeIndex, m: usize, k: usize, nn: usize) -> Option<bool> {
        let by_shape = if m > 1 {
            match (nn == m && k != m, k == m && nn != m) {
                (true, _) => Some(Some(false)),
                (_, true) => Some(Some(true)),
                _ if k == m && nn == m => None,
                _ => Some(None),
            }
        } else {
            match (self.head_dims.contains(&k), self.head_dims.contains(&nn)) {
                (true, false) => Some(Some(false)),
                (false, true) => Some(Some(true)),
                (true, true) => None,
                (false, false) => Some(None),
            }
        };
        by_shape.unwrap_or_else(|| Some(self.follows_a_product(self.graph.operands(node)[0])))
    }

    /// Whether `value` derives from an encrypted × encrypted matrix product through element-wise,
    /// polynomial, reduction and data-movement ops.
    fn follows_a_product(&self, value: ValueRef) -> bool {
        let mut stack = vec![value.node];
        let mut seen = std::collections::HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n) {
                continue;
            }
            let node = self.graph.node(n);
            let operands = self.graph.operands(n);
            match &node.op {
                Op::MatMul if operands.iter().all(|v| self.encrypted(*v)) => return true,
                Op::Binary(_) | Op::Unary(_) | Op::Polynomial(_) | Op::Reduce { .. } => {}
                op if is_movement(op) => {}
                _ => continue,
            }
            stack.extend(
                operands
                    .iter()
                    .filter(|v| self.encrypted(**v))
                    .map(|v| v.node),
            );
        }
        false
    }
}

/// `layout`'s slots seen as holding elements of a tensor of `shape`: element `e` of the
/// original becomes `element(e)` (several slots may then hold one element).
fn remap(layout: &Layout, shape: &[usize], element: impl Fn(usize) -> usize) -> Layout {
    let map = layout
        .map
        .iter()
        .map(|m| {
            m.iter()
                .map(|&e| {
                    if e == EMPTY {
                        EMPTY
                    } else {
                        element(e as usize) as u32
                    }
                })
                .collect()
        })
        .collect();
    Layout::from_map(shape, layout.slots, map)
}
