//! Syntax tree of a condition, as parsed; names are resolved later by the compiler.

/// Byte range in the condition text it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Span {
    pub start: usize,
    pub end: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    And(Vec<Expr>),
    Or(Vec<Expr>),
    Not(Box<Expr>),
    /// A macro reference (a bare identifier not followed by an operator).
    Macro(String, Span),
    Check(Box<Check>),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    pub field: FieldExpr,
    pub op: Op,
    pub op_span: Span,
    pub operand: Operand,
}

/// `tolower(basename(fd.name))` = transformers outermost first, then the field.
#[derive(Debug, Clone, PartialEq)]
pub struct FieldExpr {
    pub transformers: Vec<Transformer>,
    /// Full text as written, e.g. `proc.aname[2]`.
    pub name: String,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transformer {
    ToLower,
    ToUpper,
    Basename,
    Len,
    B64,
}

impl Transformer {
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "tolower" => Transformer::ToLower,
            "toupper" => Transformer::ToUpper,
            "basename" => Transformer::Basename,
            "len" => Transformer::Len,
            "b64" => Transformer::B64,
            _ => return None,
        })
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Operand {
    None,
    Value(Lit),
    List(Vec<Lit>),
    /// `val(field)`.
    Field(FieldExpr),
}

/// A literal as written; `quoted` literals are never list names.
#[derive(Debug, Clone, PartialEq)]
pub struct Lit {
    pub text: String,
    pub quoted: bool,
    pub span: Span,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    In,
    Intersects,
    Pmatch,
    Contains,
    IContains,
    BContains,
    StartsWith,
    BStartsWith,
    EndsWith,
    Glob,
    IGlob,
    Regex,
    Exists,
}

impl Op {
    pub fn from_word(s: &str) -> Option<Self> {
        Some(match s {
            "=" | "==" => Op::Eq,
            "!=" => Op::Ne,
            "<" => Op::Lt,
            "<=" => Op::Le,
            ">" => Op::Gt,
            ">=" => Op::Ge,
            "in" => Op::In,
            "intersects" => Op::Intersects,
            "pmatch" => Op::Pmatch,
            "contains" => Op::Contains,
            "icontains" => Op::IContains,
            "bcontains" => Op::BContains,
            "startswith" => Op::StartsWith,
            "bstartswith" => Op::BStartsWith,
            "endswith" => Op::EndsWith,
            "glob" => Op::Glob,
            "iglob" => Op::IGlob,
            "regex" => Op::Regex,
            "exists" => Op::Exists,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Op::Eq => "=",
            Op::Ne => "!=",
            Op::Lt => "<",
            Op::Le => "<=",
            Op::Gt => ">",
            Op::Ge => ">=",
            Op::In => "in",
            Op::Intersects => "intersects",
            Op::Pmatch => "pmatch",
            Op::Contains => "contains",
            Op::IContains => "icontains",
            Op::BContains => "bcontains",
            Op::StartsWith => "startswith",
            Op::BStartsWith => "bstartswith",
            Op::EndsWith => "endswith",
            Op::Glob => "glob",
            Op::IGlob => "iglob",
            Op::Regex => "regex",
            Op::Exists => "exists",
        }
    }

    pub fn takes_list(self) -> bool {
        matches!(self, Op::In | Op::Intersects | Op::Pmatch)
    }
}
