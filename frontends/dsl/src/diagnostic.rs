//! Errors with `file:line:col`, the source line and a caret under the offending text.

use crate::ast::Span;
use std::fmt;

/// What kind of mistake a diagnostic reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The text does not follow the grammar.
    Syntax,
    /// An undefined or repeated name.
    Name,
    /// A shape or element-type rule of an op.
    Shape,
    /// A wrong kind of value (a list where a tensor is needed, an unknown op or argument, …).
    Type,
    /// A weight that is missing from the weights file or differs from its declaration.
    Weights,
    /// The file or the weights file cannot be read.
    Io,
}

impl ErrorKind {
    fn label(self) -> &'static str {
        match self {
            ErrorKind::Syntax => "syntax error",
            ErrorKind::Name => "name error",
            ErrorKind::Shape => "shape error",
            ErrorKind::Type => "type error",
            ErrorKind::Weights => "weights error",
            ErrorKind::Io => "error",
        }
    }
}

/// A located error in a model file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DslError {
    pub kind: ErrorKind,
    pub message: String,
    pub file: String,
    /// 1-based line and column (in characters) of the span's start.
    pub line: usize,
    pub column: usize,
    source_line: String,
    caret_len: usize,
}

impl DslError {
    /// An error at `span` of `source` (a file called `file`).
    pub fn at(
        kind: ErrorKind,
        message: impl Into<String>,
        file: &str,
        source: &str,
        span: Span,
    ) -> Self {
        let mut start = span.start.min(source.len());
        while !source.is_char_boundary(start) {
            start -= 1;
        }
        let line_start = source[..start].rfind('\n').map_or(0, |i| i + 1);
        let line_end = source[start..]
            .find('\n')
            .map_or(source.len(), |i| start + i);
        let line = source[..start].matches('\n').count() + 1;
        let column = source[line_start..start].chars().count() + 1;
        let mut end = span.end.clamp(start, line_end);
        while !source.is_char_boundary(end) {
            end -= 1;
        }
        Self {
            kind,
            message: message.into(),
            file: file.to_string(),
            line,
            column,
            source_line: source[line_start..line_end].to_string(),
            caret_len: source[start..end].chars().count().max(1),
        }
    }

    /// An error about a whole file (unreadable, missing weights file).
    pub fn file(kind: ErrorKind, message: impl Into<String>, file: &str) -> Self {
        Self {
            kind,
            message: message.into(),
            file: file.to_string(),
            line: 0,
            column: 0,
            source_line: String::new(),
            caret_len: 0,
        }
    }
}

impl fmt::Display for DslError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}: {}", self.kind.label(), self.message)?;
        if self.line == 0 {
            return write!(f, " --> {}", self.file);
        }
        let number = self.line.to_string();
        let gutter = " ".repeat(number.len());
        writeln!(f, "{gutter}--> {}:{}:{}", self.file, self.line, self.column)?;
        writeln!(f, "{gutter} |")?;
        writeln!(f, "{number} | {}", self.source_line)?;
        let pad: String = self
            .source_line
            .chars()
            .take(self.column - 1)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        write!(f, "{gutter} | {pad}{}", "^".repeat(self.caret_len))
    }
}

impl std::error::Error for DslError {}
