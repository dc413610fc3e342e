//! A rule's exceptions compiled into the tests that exclude matching events.

use super::*;

impl Compiler<'_> {
    /// Exceptions become `not (row or row ...)`, each row `(field comp value and ...)`.
    pub(super) fn exceptions(&mut self, exs: &[ExceptionDef], uses: &mut Uses) -> R<Option<Node>> {
        let mut rows = Vec::new();
        let mut ok = true;
        for ex in exs {
            let src = SourceText::new(String::new(), ex.file.clone(), Vec::new(), ex.pos);
            let mut ops = Vec::new();
            for comp in &ex.comps {
                match Op::from_word(comp) {
                    Some(op) if op != Op::Exists => ops.push(op),
                    _ => {
                        self.push(
                            Diagnostic::error(
                                &ex.file,
                                ex.pos,
                                format!("exception '{}': unknown comparison '{comp}'", ex.name),
                            )
                            .with_text(comp.clone()),
                        );
                        ok = false;
                    }
                }
            }
            if !ok {
                continue;
            }
            for row in &ex.values {
                let mut checks = Vec::new();
                for ((field, op), val) in ex.fields.iter().zip(&ops).zip(row) {
                    let lits = |items: &[ListItem]| -> Vec<Lit> {
                        items
                            .iter()
                            .map(|i| Lit {
                                text: i.text.clone(),
                                quoted: i.quoted,
                                span: Span::default(),
                            })
                            .collect()
                    };
                    let operand = match val {
                        ExValue::Many(items) => Operand::List(lits(items)),
                        ExValue::One(item) if op.takes_list() => {
                            Operand::List(lits(std::slice::from_ref(item)))
                        }
                        ExValue::One(item) => {
                            Operand::Value(lits(std::slice::from_ref(item)).remove(0))
                        }
                    };
                    let check = AstCheck {
                        field: FieldExpr {
                            transformers: Vec::new(),
                            name: field.clone(),
                            span: Span::default(),
                        },
                        op: *op,
                        op_span: Span::default(),
                        operand,
                    };
                    match self.check(&check, &src, uses) {
                        Ok(n) => checks.push(n),
                        Err(()) => ok = false,
                    }
                }
                rows.push(Node::And(checks.into()));
            }
        }
        if !ok {
            return Err(());
        }
        Ok(if rows.is_empty() {
            None
        } else {
            Some(Node::Or(rows.into()))
        })
    }
}
