//! The rewrite rules, as one list ([`rules`]) in the style of egg's `tests/math.rs`.
//!
//! Families (each rule's name starts with its family):
//! - **strength**: `x/y → x·(1/y)` (with `y` public, `1/y` is computed in the clear),
//!   `pow(x, 2) → x·x`, `pow(x, 3) → x·x·x`, `pow(x, ½) → √x`, `pow(x, −1) → 1/x`, `pow(x, −½) → 1/√x`,
//!   `1/√x → rsqrt(x)`, `√(1/x) → rsqrt(x)`, `x·1 → x`, `x+0 → x`, `x·(−1) → −x`, ops that
//!   change nothing dropped (casts to the same type, concats of one operand, expands to the same
//!   shape, `|x|` of `x ≥ 0` and clips around `x`'s range, by the range analysis);
//! - **algebra**: commutativity of `+` and `·`, gathering constant factors `(x·a)·b → x·(a·b)`,
//!   public scalars moved out of a product of two computed values (`(q·c)·kᵀ → (q·kᵀ)·c`, so
//!   that attention is recognised whichever side its scale is on);
//! - **fold**: a public scalar into a weight on either side of a `MatMul`, consecutive linear
//!   maps into one (`(x·A)·B → x·(AB)`), a bias through a linear map (`(x+c)·W → xW + cW`),
//!   and RoPE's rotate-half into the Q/K projection weights (`rotate_half(xW) = x·(W R)` with
//!   `R` the signed half-swap per head, so no ciphertext rotation is needed);
//! - **layout**: squeeze / unsqueeze / flatten / unit-axis transposes as reshapes, chains of
//!   reshapes and of transposes composed, identity reshapes and transposes dropped;
//! - **recognise**: SiLU, GELU (erf and tanh forms), softmax (with or without the max shift),
//!   RMSNorm, LayerNorm and softmax attention
//!   (with grouped KV heads: the `repeat_kv` expansion is dropped, `Attention` broadcasts them)
//!   from their element-wise forms, after the strength rules have canonicalised them.
//!
//! Every rule adds its right-hand side only when it is well typed and has exactly the type of
//! the matched e-class ([`TypeChecked`], [`TermApplier`]), so broadcasting cannot change a
//! shape, and no rule merges values of different secrecy.

use super::analysis::{Facts, TensorAnalysis, TensorGraph};
use super::language::TensorNode;
use cachemir_ir::infer::infer;
use cachemir_ir::{Op, TensorType};
use egg::{
    Applier, ConditionalApplier, ENodeOrVar, Id, Pattern, PatternAst, Rewrite, SearchMatches,
    Searcher, Subst, Symbol, Var,
};

/// A rewrite of this language.
pub type TensorRewrite = Rewrite<TensorNode, TensorAnalysis>;

/// Relative tolerance when a rule compares a constant with the formula's (exporters round
/// `√2`, `√(2/π)` to f32).
const TOLERANCE: f64 = 1e-6;

/// A term to add: existing e-classes combined by IR ops.
#[derive(Debug, Clone)]
pub enum Term {
    Class(Id),
    Node(Op, Vec<Term>),
}

/// The type `term` would have, without adding anything.
fn term_type(egraph: &TensorGraph, term: &Term) -> Option<TensorType> {
    match term {
        Term::Class(id) => egraph[*id].data.ty().cloned(),
        Term::Node(op, children) => {
            let types: Option<Vec<TensorType>> =
                children.iter().map(|c| term_type(egraph, c)).collect();
            let mut outputs = infer(op, &types?).ok()?;
            (outputs.len() == 1).then(|| outputs.remove(0))
        }
    }
}

/// Adds `term` (which must be well typed) and returns its e-class.
fn add_term(egraph: &mut TensorGraph, term: &Term) -> Id {
    match term {
        Term::Class(id) => *id,
        Term::Node(op, children) => {
            let ids = children.iter().map(|c| add_term(egraph, c)).collect();
            egraph.add(TensorNode::op(op.clone(), ids))
        }
    }
}

/// Adds `term` and merges it into `eclass` when its type is exactly the class's. Returns the
/// changed classes (egg counts them as the rule firing).
fn union_term(egraph: &mut TensorGraph, eclass: Id, term: &Term) -> Vec<Id> {
    let wanted = egraph[eclass].data.types.clone();
    match term_type(egraph, term) {
        Some(ty) if wanted.len() == 1 && wanted[0] == ty => {
            let id = add_term(egraph, term);
            if egraph.union(eclass, id) {
                vec![eclass]
            } else {
                vec![]
            }
        }
        _ => vec![],
    }
}

/// A pattern right-hand side that is instantiated only when it keeps the matched class's type.
#[derive(Debug)]
pub struct TypeChecked {
    rhs: Pattern<TensorNode>,
}

impl TypeChecked {
    fn new(rhs: &str) -> Self {
        Self {
            rhs: rhs.parse().expect("rules are valid patterns"),
        }
    }

    /// The type of the right-hand side under `subst`.
    fn rhs_type(&self, egraph: &TensorGraph, subst: &Subst) -> Option<TensorType> {
        let ast: &PatternAst<TensorNode> = &self.rhs.ast;
        let mut types: Vec<Option<TensorType>> = Vec::with_capacity(ast.len());
        for node in ast.as_ref() {
            let ty = match node {
                ENodeOrVar::Var(v) => subst.get(*v).and_then(|id| egraph[*id].data.ty().cloned()),
                ENodeOrVar::ENode(n) => {
                    let operands: Option<Vec<TensorType>> = n
                        .children
                        .iter()
                        .map(|c| types[usize::from(*c)].clone())
                        .collect();
                    let op = n.ir_op()?;
                    operands
                        .and_then(|o| infer(op, &o).ok())
                        .and_then(|mut t| (t.len() == 1).then(|| t.remove(0)))
                }
            };
            types.push(ty);
        }
        types.pop().flatten()
    }
}

impl Applier<TensorNode, TensorAnalysis> for TypeChecked {
    fn apply_one(
        &self,
        egraph: &mut TensorGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TensorNode>>,
        rule_name: Symbol,
    ) -> Vec<Id> {
        let wanted = egraph[eclass].data.types.clone();
        match self.rhs_type(egraph, subst) {
            Some(ty) if wanted.len() == 1 && wanted[0] == ty => {
                self.rhs.apply_one(egraph, eclass, subst, None, rule_name)
            }
            _ => vec![],
        }
    }

    fn vars(&self) -> Vec<Var> {
        self.rhs.vars()
    }
}

/// A right-hand side computed by a function of the match (for results with attributes read
/// from the e-graph, e.g. RMSNorm's epsilon).
pub struct TermApplier {
    build: fn(&TensorGraph, &Subst) -> Vec<Term>,
}

impl std::fmt::Debug for TermApplier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TermApplier")
    }
}

impl Applier<TensorNode, TensorAnalysis> for TermApplier {
    fn apply_one(
        &self,
        egraph: &mut TensorGraph,
        eclass: Id,
        subst: &Subst,
        _ast: Option<&PatternAst<TensorNode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let terms = (self.build)(egraph, subst);
        terms
            .iter()
            .flat_map(|t| union_term(egraph, eclass, t))
            .collect()
    }
}

/// A rule over e-nodes with attributes (permutations, shapes): `find` proposes equal terms for
/// an e-class by looking at its e-nodes. Searching and applying both call `find`, so the
/// proposals are always computed on the current e-graph.
pub struct NodeRule {
    find: fn(&TensorGraph, Id) -> Vec<Term>,
}

impl std::fmt::Debug for NodeRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeRule")
    }
}

impl Searcher<TensorNode, TensorAnalysis> for NodeRule {
    fn search_eclass_with_limit(
        &self,
        egraph: &TensorGraph,
        eclass: Id,
        limit: usize,
    ) -> Option<SearchMatches<'_, TensorNode>> {
        (limit > 0 && !(self.find)(egraph, eclass).is_empty()).then(|| SearchMatches {
            eclass,
            substs: vec![Subst::default()],
            ast: None,
        })
    }

    fn vars(&self) -> Vec<Var> {
        Vec::new()
    }
}

impl Applier<TensorNode, TensorAnalysis> for NodeRule {
    fn apply_one(
        &self,
        egraph: &mut TensorGraph,
        eclass: Id,
        _subst: &Subst,
        _ast: Option<&PatternAst<TensorNode>>,
        _rule_name: Symbol,
    ) -> Vec<Id> {
        let terms = (self.find)(egraph, eclass);
        terms
            .iter()
            .flat_map(|t| union_term(egraph, eclass, t))
            .collect()
    }
}

// ---- guards -------------------------------------------------------------------------------

type Condition = Box<dyn Fn(&mut TensorGraph, Id, &Subst) -> bool + Send + Sync>;

fn var(name: &str) -> Var {
    name.parse().expect("rules name valid variables")
}

fn facts<'a>(egraph: &'a TensorGraph, subst: &Subst, name: &str) -> Option<&'a Facts> {
    subst.get(var(name)).map(|id| &egraph[*id].data)
}

/// Whether `?name` is a one-element constant equal to `value` (relative [`TOLERANCE`]).
fn scalar_is(egraph: &TensorGraph, subst: &Subst, name: &str, value: f64) -> bool {
    facts(egraph, subst, name)
        .and_then(|f| f.scalar)
        .is_some_and(|v| (v - value).abs() <= TOLERANCE * value.abs().max(1e-30))
}

fn is_constant(egraph: &TensorGraph, subst: &Subst, name: &str) -> bool {
    facts(egraph, subst, name).is_some_and(|f| f.constant)
}

fn is_float(egraph: &TensorGraph, subst: &Subst, name: &str) -> bool {
    facts(egraph, subst, name)
        .and_then(Facts::ty)
        .is_some_and(|t| t.dtype.is_float())
}

fn rank_is(egraph: &TensorGraph, subst: &Subst, name: &str, rank: usize) -> bool {
    facts(egraph, subst, name)
        .and_then(Facts::ty)
        .is_some_and(|t| t.rank() == rank)
}

fn scalar_equals(name: &'static str, value: f64) -> Condition {
    Box::new(move |g, _, s| scalar_is(g, s, name, value))
}

/// `?x` is a float and `?c` equals `value` (the float-only functions a power becomes).
fn float_and_scalar(x: &'static str, c: &'static str, value: f64) -> Condition {
    Box::new(move |g, _, s| is_float(g, s, x) && scalar_is(g, s, c, value))
}

/// `?c` is a one-element weight-derived constant and `?w` a weight-derived constant.
fn scalar_and_weight(c: &'static str, w: &'static str) -> Condition {
    let scalar = scalar_constant(c);
    Box::new(move |g, id, s| is_constant(g, s, w) && scalar(g, id, s))
}

/// `?c` is a one-element weight-derived constant.
fn scalar_constant(c: &'static str) -> Condition {
    Box::new(move |g, _, s| facts(g, s, c).is_some_and(|f| f.constant && f.scalar.is_some()))
}

/// `?c` is a one-element constant and neither `?a` nor `?b` is weight-derived.
fn scalar_out_of_product(a: &'static str, b: &'static str, c: &'static str) -> Condition {
    let scalar = scalar_constant(c);
    Box::new(move |g, id, s| !is_constant(g, s, a) && !is_constant(g, s, b) && scalar(g, id, s))
}

fn always() -> Condition {
    Box::new(|_, _, _| true)
}

/// A pattern rule with a guard and a type-checked right-hand side.
fn rule(name: &str, lhs: &str, rhs: &str, condition: Condition) -> TensorRewrite {
    let searcher: Pattern<TensorNode> = lhs.parse().expect("rules are valid patterns");
    let applier = ConditionalApplier {
        condition,
        applier: TypeChecked::new(rhs),
    };
    Rewrite::new(name, searcher, applier).expect("rule variables are bound")
}

/// A pattern rule whose right-hand side is built by a function.
fn built(name: &str, lhs: &str, build: fn(&TensorGraph, &Subst) -> Vec<Term>) -> TensorRewrite {
    let searcher: Pattern<TensorNode> = lhs.parse().expect("rules are valid patterns");
    Rewrite::new(name, searcher, TermApplier { build }).expect("rule variables are bound")
}

/// A rule over attributed e-nodes.
fn node_rule(name: &str, find: fn(&TensorGraph, Id) -> Vec<Term>) -> TensorRewrite {
    Rewrite::new(name, NodeRule { find }, NodeRule { find }).expect("no variables")
}

/// Every rule, in families (see the module documentation).
#[rustfmt::skip]
pub fn rules() -> Vec<TensorRewrite> {
    use std::f64::consts::{FRAC_1_SQRT_2, FRAC_2_PI};
    vec![
        // strength
        rule("strength-div-to-mul-reciprocal", "(div ?a ?b)", "(mul ?a (recip ?b))",
             Box::new(|g, _, s| is_float(g, s, "?a") && is_float(g, s, "?b"))),
        rule("strength-reciprocal-sqrt-to-rsqrt", "(recip (sqrt ?x))", "(rsqrt ?x)", always()),
        rule("strength-sqrt-reciprocal-to-rsqrt", "(sqrt (recip ?x))", "(rsqrt ?x)", always()),
        rule("strength-square", "(pow ?x ?c)", "(mul ?x ?x)", scalar_equals("?c", 2.0)),
        rule("strength-cube", "(pow ?x ?c)", "(mul (mul ?x ?x) ?x)", scalar_equals("?c", 3.0)),
        rule("strength-pow-half", "(pow ?x ?c)", "(sqrt ?x)", float_and_scalar("?x", "?c", 0.5)),
        rule("strength-pow-minus-one", "(pow ?x ?c)", "(recip ?x)", float_and_scalar("?x", "?c", -1.0)),
        rule("strength-pow-minus-half", "(pow ?x ?c)", "(rsqrt ?x)", float_and_scalar("?x", "?c", -0.5)),
        rule("strength-pow-one", "(pow ?x ?c)", "?x", scalar_equals("?c", 1.0)),
        rule("strength-mul-one", "(mul ?x ?c)", "?x", scalar_equals("?c", 1.0)),
        rule("strength-add-zero", "(add ?x ?c)", "?x", scalar_equals("?c", 0.0)),
        rule("strength-mul-minus-one", "(mul ?x ?c)", "(neg ?x)", scalar_equals("?c", -1.0)),
        node_rule("strength-identity", super::patterns::identity),
        // algebra
        rule("algebra-commute-mul", "(mul ?a ?b)", "(mul ?b ?a)", always()),
        rule("algebra-commute-add", "(add ?a ?b)", "(add ?b ?a)", always()),
        // Only for products of two computed values (attention scores): moving a scalar out
        // makes a new value (the product without it), and doing so along a chain of weights
        // would make one per subset of the chain's scalars.
        rule("algebra-scalar-out-of-product-left", "(matmul (mul ?a ?c) ?b)", "(mul (matmul ?a ?b) ?c)",
             scalar_out_of_product("?a", "?b", "?c")),
        rule("algebra-scalar-out-of-product-right", "(matmul ?a (mul ?b ?c))", "(mul (matmul ?a ?b) ?c)",
             scalar_out_of_product("?a", "?b", "?c")),
        rule("algebra-gather-constants", "(mul (mul ?x ?a) ?b)", "(mul ?x (mul ?a ?b))",
             Box::new(|g, _, s| !is_constant(g, s, "?x") && is_constant(g, s, "?a")
                 && is_constant(g, s, "?b"))),
        // fold
        rule("fold-scale-into-weight", "(mul (matmul ?x ?w) ?c)", "(matmul ?x (mul ?w ?c))",
             scalar_and_weight("?c", "?w")),
        rule("fold-input-scale-into-weight", "(matmul (mul ?x ?c) ?w)", "(matmul ?x (mul ?w ?c))",
             scalar_and_weight("?c", "?w")),
        rule("fold-consecutive-linear-maps", "(matmul (matmul ?x ?a) ?b)", "(matmul ?x (matmul ?a ?b))",
             Box::new(|g, _, s| !is_constant(g, s, "?x") && is_constant(g, s, "?a")
                 && is_constant(g, s, "?b") && rank_is(g, s, "?a", 2) && rank_is(g, s, "?b", 2))),
        rule("fold-bias-through-linear-map", "(matmul (add ?x ?c) ?w)", "(add (matmul ?x ?w) (matmul ?c ?w))",
             Box::new(|g, _, s| !is_constant(g, s, "?x") && is_constant(g, s, "?c")
                 && is_constant(g, s, "?w") && rank_is(g, s, "?w", 2))),
        node_rule("fold-rotate-half-into-weight", super::patterns::fold_rotate_half),
        // layout
        node_rule("layout-as-reshape", super::patterns::as_reshape),
        node_rule("layout-reshape-chain", super::patterns::reshape_chain),
        node_rule("layout-transpose-chain", super::patterns::transpose_chain),
        // recognise
        rule("recognise-silu", "(mul ?x (sigmoid ?x))", "(silu ?x)", always()),
        rule("recognise-gelu-erf", "(mul (mul ?x ?h) (add (erf (mul ?x ?r)) ?one))", "(gelu-erf ?x)",
             Box::new(|g, _, s| scalar_is(g, s, "?h", 0.5) && scalar_is(g, s, "?one", 1.0)
                 && scalar_is(g, s, "?r", FRAC_1_SQRT_2))),
        rule("recognise-gelu-tanh",
             "(mul (mul ?x ?h) (add (tanh (mul (add ?x (mul (mul (mul ?x ?x) ?x) ?a)) ?k)) ?one))",
             "(gelu-tanh ?x)",
             Box::new(|g, _, s| scalar_is(g, s, "?h", 0.5) && scalar_is(g, s, "?one", 1.0)
                 && scalar_is(g, s, "?a", 0.044715) && scalar_is(g, s, "?k", FRAC_2_PI.sqrt()))),
        rule("recognise-softmax", "(mul (exp ?x) (recip (reduce-sum (exp ?x))))", "(softmax ?x)",
             always()),
        // Softmax is shift-invariant: the max subtracted for numerical range is not needed.
        rule("recognise-softmax-shift", "(softmax (sub ?x (reduce-max ?x)))", "(softmax ?x)",
             always()),
        built("recognise-rms-norm",
              "(mul (mul ?x (rsqrt (add (reduce-mean (mul ?x ?x)) ?eps))) ?w)",
              super::patterns::rms_norm),
        built("recognise-layer-norm",
              "(add (mul (mul (sub ?x (reduce-mean ?x)) (rsqrt (add (reduce-mean \
               (mul (sub ?x (reduce-mean ?x)) (sub ?x (reduce-mean ?x)))) ?eps))) ?w) ?b)",
              super::patterns::layer_norm),
        built("recognise-attention", "(matmul (softmax (add (mul (matmul ?q ?kt) ?s) ?m)) ?v)",
              super::patterns::attention),
        built("recognise-attention-unmasked", "(matmul (softmax (mul (matmul ?q ?kt) ?s)) ?v)",
              super::patterns::attention),
    ]
}

#[cfg(test)]
mod tests {
    //! Goal tests in egg's style: the start term is proved equal to each goal.

    use super::*;
    use crate::rewrite::analysis::LeafFacts;
    use cachemir_ir::{DType, Secrecy};
    use egg::Runner;

    /// Leaves: `%0` an encrypted `[2, 4]` value, `%1` the scalar 2, `%2` a `[4, 4]` weight,
    /// `%3` the scalar ½, `%4` a `[4, 3]` weight, `%5` an encrypted `[4, 3]` value.
    fn runner() -> Runner<TensorNode, TensorAnalysis> {
        let ty = |shape: &[usize], secrecy| TensorType::new(DType::F64, shape.to_vec(), secrecy);
        let leaf = |ty: TensorType, constant: bool, scalar: Option<f64>| LeafFacts {
            ty,
            constant,
            scalar,
            range: scalar.map(|v| (v, v)),
        };
        let leaves = vec![
            leaf(ty(&[2, 4], Secrecy::Encrypted), false, None),
            leaf(ty(&[], Secrecy::Public), true, Some(2.0)),
            leaf(ty(&[4, 4], Secrecy::Public), true, None),
            leaf(ty(&[], Secrecy::Public), true, Some(0.5)),
            leaf(ty(&[4, 3], Secrecy::Public), true, None),
            leaf(ty(&[4, 3], Secrecy::Encrypted), false, None),
        ];
        Runner::new(TensorAnalysis {
            leaves,
            ..Default::default()
        })
        .with_iter_limit(10)
    }

    egg::test_fn! { square_is_a_product, rules(), runner = runner(),
    "(pow %0 %1)" => "(mul %0 %0)" }
    egg::test_fn! { division_by_a_scalar_is_a_product, rules(), runner = runner(),
    "(div %0 %1)" => "(mul %0 (recip %1))" }
    egg::test_fn! { inverse_square_root, rules(), runner = runner(),
    "(recip (sqrt %0))" => "(rsqrt %0)" }
    egg::test_fn! { silu_from_its_formula, rules(), runner = runner(),
    "(mul (sigmoid %0) %0)" => "(silu %0)" }
    egg::test_fn! { scale_folds_into_the_weight, rules(), runner = runner(),
    "(mul (matmul %0 %2) %3)" => "(matmul %0 (mul %2 %3))" }
    egg::test_fn! { linear_maps_merge, rules(), runner = runner(),
    "(matmul (matmul (mul %0 %3) %2) %4)" => "(matmul %0 (matmul (mul %2 %3) %4))",
    "(matmul %0 (mul (matmul %2 %4) %3))" }

    egg::test_fn! { scalar_leaves_a_product_of_ciphertexts, rules(), runner = runner(),
    "(matmul (mul %0 %3) %5)" => "(mul (matmul %0 %5) %3)" }

    #[test]
    #[should_panic(expected = "Could not prove goal 0")]
    fn a_square_is_not_a_reciprocal() {
        egg::test::test_runner(
            "a_square_is_not_a_reciprocal",
            Some(runner()),
            &rules(),
            "(pow %0 %1)".parse().unwrap(),
            &["(recip %0)".parse().unwrap()],
            None,
            true,
        );
    }
}
