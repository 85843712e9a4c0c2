//! What a successful match turns into: a short list of new nodes (the composite op, sometimes
//! preceded by a helper such as a `Transpose`), checked on paper with shape inference before
//! anything is added, then spliced in place of the matched root.

use crate::graph::{Graph, ValueRef};
use crate::infer::infer;
use crate::op::Op;

/// An operand of a planned node: an existing value or the output of an earlier planned node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Value(ValueRef),
    Step(usize),
}

impl From<ValueRef> for Source {
    fn from(value: ValueRef) -> Self {
        Source::Value(value)
    }
}

/// New nodes that together compute the matched root's value; the last one replaces it.
#[derive(Debug, Clone)]
pub struct Replacement {
    /// Report key of the composite formed, e.g. `Gelu(Tanh)`.
    pub label: String,
    /// The value being replaced.
    pub root: ValueRef,
    steps: Vec<(Op, Vec<Source>, String)>,
}

impl Replacement {
    /// An empty plan; add steps with [`Replacement::push`].
    pub fn new(label: impl Into<String>, root: ValueRef) -> Self {
        Self {
            label: label.into(),
            root,
            steps: Vec::new(),
        }
    }

    /// A replacement by one node `op(operands)`.
    pub fn single(label: impl Into<String>, root: ValueRef, op: Op, operands: &[ValueRef]) -> Self {
        let mut replacement = Self::new(label, root);
        replacement.push(op, operands.iter().map(|&v| v.into()).collect(), "");
        replacement
    }

    /// Appends a node; `suffix` names a helper's output after the root's (`""` for the final
    /// node, which takes the root's own name). Returns the step's index for later operands.
    pub fn push(&mut self, op: Op, operands: Vec<Source>, suffix: &str) -> Source {
        self.steps.push((op, operands, suffix.to_string()));
        Source::Step(self.steps.len() - 1)
    }

    /// Adds the planned nodes and redirects every use of the root to the last one. Returns
    /// `false`, leaving the graph untouched, when shape inference rejects a step or the result's
    /// type differs from the root's (the composite's shape rule does not hold).
    pub fn apply(&self, graph: &mut Graph) -> bool {
        if !self.type_checks(graph) {
            return false;
        }
        let Some(name) = graph.value_name(self.root).map(str::to_string) else {
            return false;
        };
        // The pattern's last node stands for the whole pattern in diagnostics.
        let source = graph.node(self.root.node).source.clone();
        let mut made: Vec<ValueRef> = Vec::with_capacity(self.steps.len());
        for (op, operands, suffix) in &self.steps {
            let operands: Vec<ValueRef> = operands.iter().map(|s| resolve(*s, &made)).collect();
            let output_name = if suffix.is_empty() {
                name.clone()
            } else {
                format!("{name}/{suffix}")
            };
            match graph.add_node(op.clone(), &operands, vec![output_name], source.clone()) {
                Ok(outputs) => made.push(outputs[0]),
                // Cannot happen after `type_checks` (the same inference); a helper added before
                // would be dead and go with the next prune.
                Err(_) => return false,
            }
        }
        let Some(&new) = made.last() else {
            return false;
        };
        // Facts an author stated about the value (DSL `@range`) hold for its new computation.
        let hints = graph.node(self.root.node).hints.clone();
        graph.node_mut(new.node).hints = hints;
        graph.replace_uses(self.root, new).is_ok()
    }

    fn type_checks(&self, graph: &Graph) -> bool {
        let mut types = Vec::with_capacity(self.steps.len());
        for (op, operands, _) in &self.steps {
            let operand_types: Option<Vec<_>> = operands
                .iter()
                .map(|s| match *s {
                    Source::Value(v) => graph.value_type(v).cloned(),
                    Source::Step(i) => types.get(i).cloned(),
                })
                .collect();
            let Some(operand_types) = operand_types else {
                return false;
            };
            match infer(op, &operand_types) {
                Ok(mut out) if out.len() == 1 => types.push(out.remove(0)),
                _ => return false,
            }
        }
        types.last().is_some() && types.last() == graph.value_type(self.root)
    }
}

fn resolve(source: Source, made: &[ValueRef]) -> ValueRef {
    match source {
        Source::Value(v) => v,
        Source::Step(i) => made[i],
    }
}
