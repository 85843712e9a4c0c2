//! Text → syntax tree, with the pest grammar in `cachemir.pest` and a Pratt parser for infix
//! operators (`+ -` bind looser than `* / @`; unary `-` binds tightest).

use crate::ast::{Annotation, Expr, ExprKind, Infix, Program, Span, Statement, TypeExpr};
use crate::diagnostic::{DslError, ErrorKind};
use pest::Parser as _;
use pest::iterators::Pair;
use pest::pratt_parser::{Assoc, Op as PrattOp, PrattParser};
use std::sync::LazyLock;

#[derive(pest_derive::Parser)]
#[grammar = "cachemir.pest"]
struct Grammar;

static PRATT: LazyLock<PrattParser<Rule>> = LazyLock::new(|| {
    PrattParser::new()
        .op(PrattOp::infix(Rule::add, Assoc::Left) | PrattOp::infix(Rule::sub, Assoc::Left))
        .op(PrattOp::infix(Rule::mul, Assoc::Left)
            | PrattOp::infix(Rule::div, Assoc::Left)
            | PrattOp::infix(Rule::matmul, Assoc::Left))
        .op(PrattOp::prefix(Rule::neg))
});

/// Parses a model file.
///
/// # Errors
/// A [`ErrorKind::Syntax`] diagnostic at the first place the text leaves the grammar, saying
/// what was expected there.
pub fn parse(source: &str, file: &str) -> Result<Program, DslError> {
    let mut pairs =
        Grammar::parse(Rule::program, source).map_err(|e| syntax_error(e, source, file))?;
    let program = pairs.next().expect("program");
    let model = program.into_inner().next().expect("model");
    let mut inner = model.into_inner();
    let name = text_of_name(inner.next().expect("model name"));
    let statements = inner
        .filter(|p| p.as_rule() != Rule::EOI)
        .map(statement)
        .collect();
    Ok(Program { name, statements })
}

fn syntax_error(error: pest::error::Error<Rule>, source: &str, file: &str) -> DslError {
    let position = match error.location {
        pest::error::InputLocation::Pos(p) => p,
        pest::error::InputLocation::Span((s, _)) => s,
    };
    let message = match &error.variant {
        pest::error::ErrorVariant::ParsingError { positives, .. } => {
            let mut expected: Vec<&str> = positives.iter().map(|r| describe(*r)).collect();
            expected.sort_unstable();
            expected.dedup();
            let found = source[position..]
                .split_whitespace()
                .next()
                .map_or("the end of the file".to_string(), |w| {
                    format!("`{}`", w.chars().take(20).collect::<String>())
                });
            match expected.len() {
                0 => format!("unexpected {found}"),
                1 => format!("expected {}, found {found}", expected[0]),
                _ => {
                    let last = expected.pop().expect("non-empty");
                    format!("expected {} or {last}, found {found}", expected.join(", "))
                }
            }
        }
        pest::error::ErrorVariant::CustomError { message } => message.clone(),
    };
    // The caret covers the word found there (at least one character).
    let position = position.min(source.len());
    let rest = &source[position..];
    let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
    let first = rest.chars().next().map_or(0, char::len_utf8);
    let end = position + word.max(first);
    DslError::at(
        ErrorKind::Syntax,
        message,
        file,
        source,
        Span {
            start: position,
            end,
        },
    )
}

/// What a grammar rule is called in error messages.
fn describe(rule: Rule) -> &'static str {
    match rule {
        Rule::model => "`model NAME { … }`",
        Rule::param_decl
        | Rule::weights_decl
        | Rule::input_decl
        | Rule::state_decl
        | Rule::let_stmt
        | Rule::output_stmt
        | Rule::for_stmt => "a statement (param, weights, input, state, let, output, for)",
        Rule::ident | Rule::targets => "a name",
        Rule::string | Rule::string_inner => "a quoted string",
        Rule::expr | Rule::primary | Rule::call | Rule::list | Rule::number => "an expression",
        Rule::add | Rule::sub | Rule::mul | Rule::div | Rule::matmul => "an operator",
        Rule::tensor_type | Rule::dtype => "a tensor type like `f32[1, 16]`",
        Rule::secrecy => "`encrypted` or `public`",
        Rule::annotation => "an annotation like `@range(-4, 4)`",
        Rule::alias => "`as NAME`",
        Rule::argument | Rule::keyword_argument => "an argument",
        Rule::none_kw => "`none`",
        Rule::EOI => "the end of the file",
        _ => "something else",
    }
}

fn span(pair: &Pair<Rule>) -> Span {
    let s = pair.as_span();
    Span {
        start: s.start(),
        end: s.end(),
    }
}

fn text_of_name(pair: Pair<Rule>) -> String {
    match pair.as_rule() {
        Rule::string => unescape(pair.into_inner().next().expect("string body").as_str()),
        _ => pair.as_str().to_string(),
    }
}

fn unescape(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c == '\\' {
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        } else {
            out.push(c);
        }
    }
    out
}

fn secrecy(pair: Option<Pair<Rule>>) -> Option<bool> {
    pair.map(|p| p.as_str() == "encrypted")
}

fn statement(pair: Pair<Rule>) -> Statement {
    let whole = span(&pair);
    let rule = pair.as_rule();
    let mut inner = pair.into_inner().peekable();
    match rule {
        Rule::param_decl => Statement::Param {
            name: inner.next().expect("name").as_str().to_string(),
            value: expr(inner.next().expect("value")),
            span: whole,
        },
        Rule::weights_decl => {
            let what = inner.next().expect("file or none");
            let file = (what.as_rule() == Rule::string).then(|| text_of_name(what));
            Statement::Weights { file, span: whole }
        }
        Rule::input_decl => Statement::Input {
            name: text_of_name(inner.next().expect("name")),
            alias: inner.next_if(|p| p.as_rule() == Rule::alias).map(alias),
            ty: tensor_type(inner.next().expect("type")),
            secrecy: secrecy(inner.next()),
            span: whole,
        },
        Rule::state_decl => {
            let name = text_of_name(inner.next().expect("name"));
            let alias = inner.next_if(|p| p.as_rule() == Rule::alias).map(alias);
            let ty = tensor_type(inner.next().expect("type"));
            let secrecy = secrecy(inner.next_if(|p| p.as_rule() == Rule::secrecy));
            let output = text_of_name(inner.next().expect("output"));
            Statement::State {
                name,
                alias,
                ty,
                secrecy,
                output,
                span: whole,
            }
        }
        Rule::let_stmt => {
            let targets = inner
                .next()
                .expect("targets")
                .into_inner()
                .map(|t| (t.as_str().to_string(), span(&t)))
                .collect();
            let value = expr(inner.next().expect("value"));
            let annotations = inner.map(annotation).collect();
            Statement::Let {
                targets,
                value,
                annotations,
                span: whole,
            }
        }
        Rule::output_stmt => Statement::Output {
            name: text_of_name(inner.next().expect("name")),
            value: expr(inner.next().expect("value")),
            span: whole,
        },
        Rule::for_stmt => Statement::For {
            var: inner.next().expect("variable").as_str().to_string(),
            start: expr(inner.next().expect("start")),
            end: expr(inner.next().expect("end")),
            body: inner.map(statement).collect(),
            span: whole,
        },
        other => unreachable!("statement rule {other:?}"),
    }
}

fn alias(pair: Pair<Rule>) -> String {
    pair.into_inner()
        .next()
        .expect("alias name")
        .as_str()
        .to_string()
}

fn annotation(pair: Pair<Rule>) -> Annotation {
    let whole = span(&pair);
    let mut inner = pair.into_inner();
    Annotation {
        name: inner.next().expect("name").as_str().to_string(),
        args: inner.map(expr).collect(),
        span: whole,
    }
}

fn tensor_type(pair: Pair<Rule>) -> TypeExpr {
    let whole = span(&pair);
    let mut inner = pair.into_inner();
    TypeExpr {
        dtype: inner.next().expect("dtype").as_str().to_string(),
        dims: inner.map(expr).collect(),
        span: whole,
    }
}

fn expr(pair: Pair<Rule>) -> Expr {
    PRATT
        .map_primary(primary)
        .map_prefix(|op, operand| {
            let s = Span {
                start: op.as_span().start(),
                end: operand.span.end,
            };
            Expr {
                kind: ExprKind::Neg(Box::new(operand)),
                span: s,
            }
        })
        .map_infix(|left, op, right| {
            let infix = match op.as_rule() {
                Rule::add => Infix::Add,
                Rule::sub => Infix::Sub,
                Rule::mul => Infix::Mul,
                Rule::div => Infix::Div,
                _ => Infix::MatMul,
            };
            let s = Span {
                start: left.span.start,
                end: right.span.end,
            };
            Expr {
                kind: ExprKind::Infix(infix, Box::new(left), Box::new(right)),
                span: s,
            }
        })
        .parse(pair.into_inner())
}

fn primary(pair: Pair<Rule>) -> Expr {
    let whole = span(&pair);
    let kind = match pair.as_rule() {
        Rule::expr => return expr(pair),
        Rule::number => {
            let text = pair.as_str();
            match text.parse::<i128>() {
                Ok(v) if !text.contains(['.', 'e', 'E']) => ExprKind::Int(v),
                _ => ExprKind::Float(text.parse().unwrap_or(f64::INFINITY)),
            }
        }
        Rule::string => ExprKind::Str(text_of_name(pair)),
        Rule::ident => ExprKind::Ident(pair.as_str().to_string()),
        Rule::list => ExprKind::List(pair.into_inner().map(expr).collect()),
        Rule::call => {
            let mut inner = pair.into_inner();
            let name = inner.next().expect("name").as_str().to_string();
            let mut args = Vec::new();
            let mut keywords = Vec::new();
            for argument in inner {
                let a = argument.into_inner().next().expect("argument");
                if a.as_rule() == Rule::keyword_argument {
                    let mut kv = a.into_inner();
                    let key = kv.next().expect("key").as_str().to_string();
                    keywords.push((key, expr(kv.next().expect("value"))));
                } else {
                    args.push(expr(a));
                }
            }
            ExprKind::Call {
                name,
                args,
                keywords,
            }
        }
        other => unreachable!("primary rule {other:?}"),
    };
    Expr { kind, span: whole }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_of_infix_operators() {
        let p = parse("model m { let y = -a + b * c @ d; }", "m.cmr").unwrap();
        let Statement::Let { value, .. } = &p.statements[0] else {
            panic!()
        };
        let ExprKind::Infix(Infix::Add, left, right) = &value.kind else {
            panic!("{value:?}")
        };
        assert!(matches!(left.kind, ExprKind::Neg(_)));
        assert!(matches!(right.kind, ExprKind::Infix(Infix::MatMul, _, _)));
    }

    #[test]
    fn dotted_names_and_ranges() {
        let p = parse(
            "model m { for i in 0..layers { let past_key_values.0.key = x; } }",
            "m.cmr",
        )
        .unwrap();
        let Statement::For { end, body, .. } = &p.statements[0] else {
            panic!()
        };
        assert!(matches!(&end.kind, ExprKind::Ident(n) if n == "layers"));
        assert_eq!(body.len(), 1);
    }
}
