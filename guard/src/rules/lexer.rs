//! Tokens of Falco's condition language.

use super::ast::Span;

#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    LParen,
    RParen,
    Comma,
    /// `=`, `==`, `!=`, `<`, `<=`, `>`, `>=`.
    Sym(&'static str),
    /// Bare word: identifiers, keywords, word operators, unquoted values.
    Word(String),
    /// Quoted string, unescaped.
    Quoted(String),
}

#[derive(Debug, Clone, PartialEq)]
pub struct Token {
    pub tok: Tok,
    pub span: Span,
}

/// A syntax error at a byte range of the condition text.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Span,
    pub msg: String,
}

fn is_delim(c: char) -> bool {
    c.is_whitespace() || matches!(c, '(' | ')' | ',' | '=' | '<' | '>' | '!' | '"' | '\'')
}

pub fn lex(src: &str) -> Result<Vec<Token>, SyntaxError> {
    let mut out = Vec::new();
    let mut it = src.char_indices().peekable();
    while let Some(&(i, c)) = it.peek() {
        let single = |tok: Tok, len: usize| Token {
            tok,
            span: Span {
                start: i,
                end: i + len,
            },
        };
        match c {
            c if c.is_whitespace() => {
                it.next();
            }
            '(' | ')' | ',' => {
                it.next();
                out.push(single(
                    match c {
                        '(' => Tok::LParen,
                        ')' => Tok::RParen,
                        _ => Tok::Comma,
                    },
                    1,
                ));
            }
            '=' | '<' | '>' | '!' => {
                it.next();
                let eq = matches!(it.peek(), Some(&(_, '=')));
                if eq {
                    it.next();
                }
                let sym = match (c, eq) {
                    ('=', false) => "=",
                    ('=', true) => "==",
                    ('<', false) => "<",
                    ('<', true) => "<=",
                    ('>', false) => ">",
                    ('>', true) => ">=",
                    ('!', true) => "!=",
                    _ => {
                        return Err(SyntaxError {
                            span: Span {
                                start: i,
                                end: i + 1,
                            },
                            msg: "unexpected character '!' (did you mean '!=' or 'not'?)".into(),
                        });
                    }
                };
                out.push(single(Tok::Sym(sym), sym.len()));
            }
            '"' | '\'' => {
                it.next();
                let mut s = String::new();
                let mut end = None;
                while let Some((j, d)) = it.next() {
                    if d == c {
                        end = Some(j + 1);
                        break;
                    }
                    if d == '\\' {
                        match it.next() {
                            Some((_, 'n')) => s.push('\n'),
                            Some((_, 't')) => s.push('\t'),
                            Some((_, e)) => s.push(e),
                            None => break,
                        }
                    } else {
                        s.push(d);
                    }
                }
                let Some(end) = end else {
                    return Err(SyntaxError {
                        span: Span {
                            start: i,
                            end: src.len(),
                        },
                        msg: "unterminated string".into(),
                    });
                };
                out.push(Token {
                    tok: Tok::Quoted(s),
                    span: Span { start: i, end },
                });
            }
            _ => {
                let mut end = i;
                while let Some(&(j, d)) = it.peek() {
                    if is_delim(d) {
                        break;
                    }
                    end = j + d.len_utf8();
                    it.next();
                }
                out.push(Token {
                    tok: Tok::Word(src[i..end].to_string()),
                    span: Span { start: i, end },
                });
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        lex(s).expect("lexes").into_iter().map(|t| t.tok).collect()
    }

    #[test]
    fn words_symbols_strings() {
        assert_eq!(
            toks("fd.num>=0 and proc.name!=\"a b\" in (runc:[0:PARENT], 'x\\'y')"),
            vec![
                Tok::Word("fd.num".into()),
                Tok::Sym(">="),
                Tok::Word("0".into()),
                Tok::Word("and".into()),
                Tok::Word("proc.name".into()),
                Tok::Sym("!="),
                Tok::Quoted("a b".into()),
                Tok::Word("in".into()),
                Tok::LParen,
                Tok::Word("runc:[0:PARENT]".into()),
                Tok::Comma,
                Tok::Quoted("x'y".into()),
                Tok::RParen,
            ]
        );
    }

    #[test]
    fn errors_have_spans() {
        let e = lex("a = \"open").expect_err("unterminated");
        assert_eq!(e.span.start, 4);
        let e = lex("a ! b").expect_err("bang");
        assert_eq!(e.span, Span { start: 2, end: 3 });
    }
}
