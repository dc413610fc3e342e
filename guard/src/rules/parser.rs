//! Recursive-descent parser for conditions: `or` binds loosest, then `and`, then `not`.
//! Nesting depth is bounded so that hostile input cannot exhaust the stack.

use super::{
    ast::{Check, Expr, FieldExpr, Lit, Op, Operand, Span, Transformer},
    lexer::{SyntaxError, Tok, Token, lex},
};

/// Deepest nesting of parentheses, `not` and transformers accepted.
pub const MAX_DEPTH: usize = 64;

pub fn parse(src: &str) -> Result<Expr, SyntaxError> {
    let toks = lex(src)?;
    let mut p = Parser {
        toks,
        pos: 0,
        depth: 0,
        len: src.len(),
    };
    if p.toks.is_empty() {
        return Err(SyntaxError {
            span: Span {
                start: 0,
                end: src.len(),
            },
            msg: "empty condition".into(),
        });
    }
    let e = p.or()?;
    if let Some(t) = p.peek() {
        return Err(p.err_at(
            t.span,
            format!(
                "unexpected {}; expected 'and', 'or' or the end of the condition",
                describe(&t.tok)
            ),
        ));
    }
    Ok(e)
}

struct Parser {
    toks: Vec<Token>,
    pos: usize,
    depth: usize,
    len: usize,
}

fn describe(t: &Tok) -> String {
    match t {
        Tok::LParen => "'('".into(),
        Tok::RParen => "')'".into(),
        Tok::Comma => "','".into(),
        Tok::Sym(s) => format!("'{s}'"),
        Tok::Word(w) => format!("'{w}'"),
        Tok::Quoted(s) => format!("string \"{s}\""),
    }
}

fn is_ident(w: &str) -> bool {
    let mut c = w.chars();
    matches!(c.next(), Some(ch) if ch.is_ascii_alphabetic() || ch == '_')
        && c.all(|ch| ch.is_ascii_alphanumeric() || ch == '_' || ch == '-')
}

fn is_keyword(w: &str) -> bool {
    matches!(w, "and" | "or" | "not")
}

impl Parser {
    fn peek(&self) -> Option<&Token> {
        self.toks.get(self.pos)
    }

    fn peek_at(&self, k: usize) -> Option<&Token> {
        self.toks.get(self.pos + k)
    }

    fn bump(&mut self) -> Option<Token> {
        let t = self.toks.get(self.pos).cloned();
        self.pos += 1;
        t
    }

    fn end_span(&self) -> Span {
        Span {
            start: self.len,
            end: self.len,
        }
    }

    fn err_at(&self, span: Span, msg: String) -> SyntaxError {
        SyntaxError { span, msg }
    }

    fn is_word(&self, w: &str) -> bool {
        matches!(self.peek(), Some(Token { tok: Tok::Word(x), .. }) if x == w)
    }

    fn enter(&mut self, span: Span) -> Result<(), SyntaxError> {
        self.depth += 1;
        if self.depth > MAX_DEPTH {
            return Err(self.err_at(
                span,
                format!("condition nested deeper than {MAX_DEPTH} levels"),
            ));
        }
        Ok(())
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.and()?];
        while self.is_word("or") {
            self.bump();
            items.push(self.and()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::Or(items)
        })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut items = vec![self.not()?];
        while self.is_word("and") {
            self.bump();
            items.push(self.not()?);
        }
        Ok(if items.len() == 1 {
            items.remove(0)
        } else {
            Expr::And(items)
        })
    }

    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if self.is_word("not") {
            let t = self.bump();
            self.enter(t.map_or(self.end_span(), |t| t.span))?;
            let inner = self.not()?;
            self.depth -= 1;
            return Ok(Expr::Not(Box::new(inner)));
        }
        self.primary()
    }

    fn primary(&mut self) -> Result<Expr, SyntaxError> {
        let Some(t) = self.peek().cloned() else {
            return Err(self.err_at(self.end_span(), "unexpected end of condition".into()));
        };
        match &t.tok {
            Tok::LParen => {
                self.bump();
                self.enter(t.span)?;
                let e = self.or()?;
                self.depth -= 1;
                match self.bump() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(e),
                    Some(other) => Err(self.err_at(
                        other.span,
                        format!("expected ')' or 'and'/'or', found {}", describe(&other.tok)),
                    )),
                    None => Err(self.err_at(t.span, "unclosed '('".into())),
                }
            }
            Tok::Word(w) if is_keyword(w) => Err(self.err_at(
                t.span,
                format!("expected a field or macro, found keyword '{w}'"),
            )),
            Tok::Word(w) => {
                let transformer_call = Transformer::parse(w).is_some()
                    && matches!(
                        self.peek_at(1),
                        Some(Token {
                            tok: Tok::LParen,
                            ..
                        })
                    );
                if transformer_call {
                    let field = self.field_expr()?;
                    return self.check(field);
                }
                let next_is_op = match self.peek_at(1).map(|n| &n.tok) {
                    Some(Tok::Sym(_)) => true,
                    Some(Tok::Word(n)) => Op::from_word(n).is_some(),
                    _ => false,
                };
                if next_is_op {
                    let field = self.field_expr()?;
                    return self.check(field);
                }
                self.bump();
                if !w.contains('.') && !w.contains('[') && is_ident(w) {
                    return Ok(Expr::Macro(w.clone(), t.span));
                }
                match self.peek().cloned() {
                    Some(Token {
                        tok: Tok::Word(op),
                        span,
                    }) if !is_keyword(&op) => {
                        Err(self.err_at(span, format!("unknown operator '{op}' after field '{w}'")))
                    }
                    Some(n) => Err(self.err_at(
                        n.span,
                        format!(
                            "expected an operator after field '{w}', found {}",
                            describe(&n.tok)
                        ),
                    )),
                    None => {
                        Err(self.err_at(t.span, format!("expected an operator after field '{w}'")))
                    }
                }
            }
            other => Err(self.err_at(
                t.span,
                format!("expected a field, macro or '(', found {}", describe(other)),
            )),
        }
    }

    /// `field`, or `transformer(field_expr)`.
    fn field_expr(&mut self) -> Result<FieldExpr, SyntaxError> {
        let Some(t) = self.bump() else {
            return Err(self.err_at(self.end_span(), "expected a field".into()));
        };
        let Tok::Word(w) = &t.tok else {
            return Err(self.err_at(
                t.span,
                format!("expected a field, found {}", describe(&t.tok)),
            ));
        };
        if let Some(tr) = Transformer::parse(w)
            && matches!(
                self.peek(),
                Some(Token {
                    tok: Tok::LParen,
                    ..
                })
            )
        {
            self.bump();
            self.enter(t.span)?;
            let mut inner = self.field_expr()?;
            self.depth -= 1;
            match self.bump() {
                Some(Token {
                    tok: Tok::RParen,
                    span,
                }) => {
                    inner.transformers.insert(0, tr);
                    inner.span = Span {
                        start: t.span.start,
                        end: span.end,
                    };
                    return Ok(inner);
                }
                other => {
                    let span = other.map_or(self.end_span(), |o| o.span);
                    return Err(self.err_at(span, format!("expected ')' to close {w}(")));
                }
            }
        }
        Ok(FieldExpr {
            transformers: Vec::new(),
            name: w.clone(),
            span: t.span,
        })
    }

    fn check(&mut self, field: FieldExpr) -> Result<Expr, SyntaxError> {
        let Some(t) = self.bump() else {
            return Err(self.err_at(
                field.span,
                format!("expected an operator after field '{}'", field.name),
            ));
        };
        let op = match &t.tok {
            Tok::Sym(s) => Op::from_word(s),
            Tok::Word(w) => Op::from_word(w),
            _ => None,
        };
        let Some(op) = op else {
            return Err(self.err_at(
                t.span,
                format!(
                    "unknown operator {} after field '{}'",
                    describe(&t.tok),
                    field.name
                ),
            ));
        };
        let operand = if op == Op::Exists {
            Operand::None
        } else if op.takes_list() {
            self.list(op)?
        } else {
            self.value(op, t.span)?
        };
        Ok(Expr::Check(Box::new(Check {
            field,
            op,
            op_span: t.span,
            operand,
        })))
    }

    fn list(&mut self, op: Op) -> Result<Operand, SyntaxError> {
        match self.bump() {
            Some(Token {
                tok: Tok::LParen, ..
            }) => {}
            Some(t) => {
                return Err(self.err_at(
                    t.span,
                    format!(
                        "'{}' needs a list in parentheses, found {}",
                        op.as_str(),
                        describe(&t.tok)
                    ),
                ));
            }
            None => {
                return Err(self.err_at(
                    self.end_span(),
                    format!("'{}' needs a list in parentheses", op.as_str()),
                ));
            }
        }
        let mut items = Vec::new();
        loop {
            let Some(t) = self.bump() else {
                return Err(self.err_at(self.end_span(), "unclosed list".into()));
            };
            match t.tok {
                Tok::RParen if items.is_empty() => break,
                Tok::Word(w) => items.push(Lit {
                    text: w,
                    quoted: false,
                    span: t.span,
                }),
                Tok::Quoted(s) => items.push(Lit {
                    text: s,
                    quoted: true,
                    span: t.span,
                }),
                other => {
                    return Err(self.err_at(
                        t.span,
                        format!("expected a list item, found {}", describe(&other)),
                    ));
                }
            }
            match self.bump() {
                Some(Token {
                    tok: Tok::Comma, ..
                }) => {}
                Some(Token {
                    tok: Tok::RParen, ..
                }) => break,
                Some(t) => {
                    return Err(self.err_at(
                        t.span,
                        format!("expected ',' or ')' in list, found {}", describe(&t.tok)),
                    ));
                }
                None => return Err(self.err_at(self.end_span(), "unclosed list".into())),
            }
        }
        Ok(Operand::List(items))
    }

    fn value(&mut self, op: Op, op_span: Span) -> Result<Operand, SyntaxError> {
        let Some(t) = self.bump() else {
            return Err(self.err_at(op_span, format!("'{}' needs a value", op.as_str())));
        };
        match t.tok {
            Tok::Word(w)
                if w == "val"
                    && matches!(
                        self.peek(),
                        Some(Token {
                            tok: Tok::LParen,
                            ..
                        })
                    ) =>
            {
                self.bump();
                let f = self.field_expr()?;
                match self.bump() {
                    Some(Token {
                        tok: Tok::RParen, ..
                    }) => Ok(Operand::Field(f)),
                    other => {
                        let span = other.map_or(self.end_span(), |o| o.span);
                        Err(self.err_at(span, "expected ')' to close val(".into()))
                    }
                }
            }
            Tok::Word(w) if is_keyword(&w) => Err(self.err_at(
                t.span,
                format!("'{}' needs a value, found keyword '{w}'", op.as_str()),
            )),
            Tok::Word(w) => Ok(Operand::Value(Lit {
                text: w,
                quoted: false,
                span: t.span,
            })),
            Tok::Quoted(s) => Ok(Operand::Value(Lit {
                text: s,
                quoted: true,
                span: t.span,
            })),
            other => Err(self.err_at(
                t.span,
                format!(
                    "'{}' needs a value, found {}",
                    op.as_str(),
                    describe(&other)
                ),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_and_not() {
        let e = parse("a or b and not c").expect("parses");
        let Expr::Or(items) = e else {
            panic!("or at top: {e:?}")
        };
        assert_eq!(items[0], Expr::Macro("a".into(), Span { start: 0, end: 1 }));
        let Expr::And(ref and) = items[1] else {
            panic!("and second")
        };
        assert!(matches!(and[1], Expr::Not(_)));
    }

    #[test]
    fn checks_lists_transformers_val() {
        let e = parse("tolower(basename(fd.name)) in (a, \"b c\") and proc.name = val(proc.pname) and proc.pname exists")
            .expect("parses");
        let Expr::And(items) = e else { panic!("and") };
        let Expr::Check(c) = &items[0] else {
            panic!("check")
        };
        assert_eq!(
            c.field.transformers,
            vec![Transformer::ToLower, Transformer::Basename]
        );
        assert_eq!(c.field.name, "fd.name");
        let Operand::List(l) = &c.operand else {
            panic!("list")
        };
        assert_eq!((l[1].text.as_str(), l[1].quoted), ("b c", true));
        let Expr::Check(c) = &items[1] else {
            panic!("check")
        };
        assert!(matches!(&c.operand, Operand::Field(f) if f.name == "proc.pname"));
        let Expr::Check(c) = &items[2] else {
            panic!("check")
        };
        assert_eq!(c.op, Op::Exists);
    }

    #[test]
    fn field_args_are_part_of_the_name() {
        let e = parse("proc.aname[2]=sshd and container.label[app] = web").expect("parses");
        let Expr::And(items) = e else { panic!("and") };
        let Expr::Check(c) = &items[0] else {
            panic!("check")
        };
        assert_eq!(c.field.name, "proc.aname[2]");
    }

    #[test]
    fn errors() {
        let e = parse("proc.name equals bash").expect_err("bad op");
        assert!(e.msg.contains("unknown operator 'equals'"), "{}", e.msg);
        assert_eq!(e.span.start, 10);
        let e = parse("(a and b").expect_err("unclosed");
        assert!(e.msg.contains("unclosed"), "{}", e.msg);
        let e = parse("a b").expect_err("junk");
        assert!(e.msg.contains("unexpected 'b'"), "{}", e.msg);
        let e = parse("proc.name in shell").expect_err("list");
        assert!(e.msg.contains("needs a list"), "{}", e.msg);
        assert!(parse("").is_err());
    }

    #[test]
    fn depth_is_bounded() {
        let deep = format!("{}a{}", "(".repeat(10_000), ")".repeat(10_000));
        let e = parse(&deep).expect_err("too deep");
        assert!(e.msg.contains("nested deeper"), "{}", e.msg);
        let nots = format!("{}a", "not ".repeat(10_000));
        assert!(parse(&nots).is_err());
    }
}
