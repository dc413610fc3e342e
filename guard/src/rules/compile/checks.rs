//! One field check of a condition: field resolution, type checks, literals and lists into tests.

use super::*;

impl Compiler<'_> {
    pub(super) fn check(&mut self, c: &AstCheck, src: &SourceText, uses: &mut Uses) -> R<Node> {
        let (field, def) = match self.resolve(&c.field, src)? {
            Resolved::Field(f, d) => (f, d),
            Resolved::Unavailable(name) => {
                uses.unavailable.insert(name);
                let (file, pos) = src.locate(c.field.span.start);
                self.unavailable
                    .entry(name)
                    .or_insert((file, pos, BTreeSet::new()));
                return Ok(Node::Check(Box::new(Check {
                    field: FieldRef {
                        id: FieldId::EvtNum,
                        arg: FieldArg::None,
                    },
                    multi: false,
                    transformers: Box::new([]),
                    test: Test::Unavailable,
                    negate: false,
                })));
            }
        };
        let mut ty = def.ty;
        for t in c.field.transformers.iter().rev() {
            if ty != FieldType::Str {
                self.err(
                    src,
                    c.field.span,
                    format!(
                        "type mismatch: transformer '{}' needs a string, '{}' is a {}",
                        tname(*t),
                        def.name,
                        ty.name()
                    ),
                );
                return Err(());
            }
            if *t == Transformer::Len {
                ty = FieldType::Num;
            }
        }
        let transformers: Box<[Transformer]> = c.field.transformers.clone().into();
        if field.id == FieldId::EvtType
            && transformers.is_empty()
            && let Some(node) = self.type_check(c, src)?
        {
            return Ok(node);
        }
        if let Some(ip_field) = field.ip_of_name()
            && transformers.is_empty()
            && let Some(node) = self.name_check(c, ip_field, src)?
        {
            return Ok(node);
        }
        let mut negate = false;
        let test = match &c.operand {
            Operand::None => Test::Exists,
            Operand::Field(rhs) => {
                if !rhs.transformers.is_empty() {
                    self.err(
                        src,
                        rhs.span,
                        "val() takes a plain field, without transformers".into(),
                    );
                    return Err(());
                }
                let (rf, rdef) = match self.resolve(rhs, src)? {
                    Resolved::Field(f, d) => (f, d),
                    Resolved::Unavailable(name) => {
                        uses.unavailable.insert(name);
                        return Ok(Node::Const(false));
                    }
                };
                if rdef.ty != ty {
                    self.err(
                        src,
                        rhs.span,
                        format!(
                            "type mismatch: '{}' is a {} but '{}' is a {}",
                            c.field.name,
                            ty.name(),
                            rhs.name,
                            rdef.ty.name()
                        ),
                    );
                    return Err(());
                }
                let fop = match (c.op, ty) {
                    (Op::Contains, FieldType::Str) => FieldOp::Contains,
                    (Op::IContains, FieldType::Str) => FieldOp::IContains,
                    (Op::StartsWith, FieldType::Str) => FieldOp::StartsWith,
                    (Op::EndsWith, FieldType::Str) => FieldOp::EndsWith,
                    (op, FieldType::Str | FieldType::Num) if op_cmp(op).is_some() => {
                        let (cmp, neg) = op_cmp(op).unwrap_or((Cmp::Eq, false));
                        negate = neg;
                        FieldOp::Cmp(cmp)
                    }
                    (Op::Eq | Op::Ne, _) => {
                        negate = c.op == Op::Ne;
                        FieldOp::Cmp(Cmp::Eq)
                    }
                    (op, _) => {
                        self.err(
                            src,
                            c.op_span,
                            format!("operator '{}' cannot compare with val()", op.as_str()),
                        );
                        return Err(());
                    }
                };
                Test::Field(Box::new(rf), fop)
            }
            Operand::Value(lit) => {
                if c.op.takes_list() {
                    self.err(
                        src,
                        lit.span,
                        format!("'{}' needs a list in parentheses", c.op.as_str()),
                    );
                    return Err(());
                }
                let (t, n) = self.value_test(c, ty, def.name, lit, src)?;
                negate = n;
                t
            }
            Operand::List(items) => {
                let items = self.expand(items, src)?;
                self.list_test(c, ty, def.name, &items, src)?
            }
        };
        let multi = field.is_multi();
        Ok(Node::Check(Box::new(Check {
            field,
            multi,
            transformers,
            test,
            negate,
        })))
    }

    /// `fd.*ip.name = NAME`, `!= NAME`, `in (NAMES)`: as in Falco, true when the address is one
    /// NAME resolves to. The names are collected for the resolver; other operators compare
    /// the field's value (the name the address resolves to) as a string.
    pub(super) fn name_check(
        &mut self,
        c: &AstCheck,
        ip_field: FieldRef,
        src: &SourceText,
    ) -> R<Option<Node>> {
        let names: Vec<(String, Span)> = match (&c.op, &c.operand) {
            (Op::Eq | Op::Ne, Operand::Value(l)) => vec![(l.text.clone(), l.span)],
            (Op::In, Operand::List(items)) => self.expand(items, src)?,
            _ => return Ok(None),
        };
        let mut kept: Vec<Box<str>> = Vec::with_capacity(names.len());
        for (n, span) in names {
            if n.is_empty()
                || n.len() > fields::dns::MAX_NAME_LEN
                || n.bytes()
                    .any(|b| b.is_ascii_whitespace() || b.is_ascii_control())
            {
                self.err(
                    src,
                    span,
                    format!(
                        "'{}' compares with '{n}', which is not a host name (1 to {} characters, no spaces)",
                        c.field.name,
                        fields::dns::MAX_NAME_LEN
                    ),
                );
                return Err(());
            }
            if !self.dns_names.contains(n.as_str()) {
                self.warn_once(
                    format!("dns:{n}"),
                    src,
                    span,
                    format!(
                        "'{}' compares with host name '{n}': guard resolves it in the background \
                         (system resolver: /etc/hosts, then DNS) and refreshes it every {} s; \
                         while it does not resolve, the check is false",
                        c.field.name,
                        fields::dns::REFRESH_SECS
                    ),
                );
                self.dns_names.insert(n.as_str().into());
            }
            kept.push(n.into());
        }
        Ok(Some(Node::Check(Box::new(Check {
            field: ip_field,
            multi: false,
            transformers: Box::new([]),
            test: Test::Resolves(kept.into()),
            negate: c.op == Op::Ne,
        }))))
    }

    /// `evt.type` compared with names becomes a type-set node (cheap, and indexable).
    pub(super) fn type_check(&mut self, c: &AstCheck, src: &SourceText) -> R<Option<Node>> {
        let names: Vec<(String, Span)> = match (&c.op, &c.operand) {
            (Op::Eq | Op::Ne, Operand::Value(l)) => vec![(l.text.clone(), l.span)],
            (Op::In | Op::Intersects, Operand::List(items)) => self.expand(items, src)?,
            _ => return Ok(None),
        };
        let mut set: TypeSet = 0;
        for (n, span) in names {
            let id = fields::event_type_id(&n);
            if id == fields::OTHER_TYPE {
                self.warn_once(
                    format!("evtype:{n}"),
                    src,
                    span,
                    format!("event type '{n}' is not one guard captures; comparisons with it never match"),
                );
            } else {
                set |= 1u128 << id;
            }
        }
        Ok(Some(if c.op == Op::Ne {
            Node::Not(Box::new(Node::Types(set)))
        } else {
            Node::Types(set)
        }))
    }

    /// Expands list names in a literal list (recursively, bounded).
    pub(super) fn expand(&mut self, items: &[Lit], src: &SourceText) -> R<Vec<(String, Span)>> {
        let mut out = Vec::new();
        for lit in items {
            let item = ListItem {
                text: lit.text.clone(),
                quoted: lit.quoted,
            };
            let mut stack = Vec::new();
            let mut visits = 0;
            self.expand_item(&item, lit.span, src, &mut stack, &mut out, &mut visits)?;
        }
        Ok(out)
    }

    pub(super) fn expand_item(
        &mut self,
        item: &ListItem,
        span: Span,
        src: &SourceText,
        stack: &mut Vec<String>,
        out: &mut Vec<(String, Span)>,
        visits: &mut usize,
    ) -> R<()> {
        // Counts list references too: `l1: [l0, l0]`, `l2: [l1, l1]`, ... doubles per level
        // even when l0 is empty.
        *visits += 1;
        if *visits > MAX_LIST_ITEMS {
            if *visits == MAX_LIST_ITEMS + 1 {
                self.err(
                    src,
                    span,
                    format!("list too large: it expands to more than {MAX_LIST_ITEMS} items"),
                );
            }
            return Err(());
        }
        let defs = self.defs;
        match defs.lists.get(&item.text).filter(|_| !item.quoted) {
            None => out.push((item.text.clone(), span)),
            Some(l) => {
                if stack.contains(&l.name) {
                    self.err(
                        src,
                        span,
                        format!(
                            "circular list reference: {} -> {}",
                            stack.join(" -> "),
                            l.name
                        ),
                    );
                    return Err(());
                }
                if stack.len() >= MAX_MACRO_DEPTH {
                    self.err(
                        src,
                        span,
                        format!("lists nested deeper than {MAX_MACRO_DEPTH} levels"),
                    );
                    return Err(());
                }
                stack.push(l.name.clone());
                for i in &l.items {
                    self.expand_item(i, span, src, stack, out, visits)?;
                }
                stack.pop();
            }
        }
        Ok(())
    }

    pub(super) fn mismatch(
        &mut self,
        src: &SourceText,
        span: Span,
        c: &AstCheck,
        ty: FieldType,
        what: &str,
    ) {
        self.err(
            src,
            span,
            format!(
                "type mismatch: '{}' is a {}; {what}",
                c.field.name,
                ty.name()
            ),
        );
    }

    pub(super) fn parse_lit(
        &mut self,
        c: &AstCheck,
        ty: FieldType,
        text: &str,
        span: Span,
        src: &SourceText,
    ) -> R<LitVal> {
        let ok = match ty {
            FieldType::Str => return Ok(LitVal::Str(text.into())),
            FieldType::Num => parse_num(text).map(LitVal::Num),
            FieldType::Bool => match text.to_ascii_lowercase().as_str() {
                "true" => Some(LitVal::Bool(true)),
                "false" => Some(LitVal::Bool(false)),
                _ => None,
            },
            FieldType::Ip => text
                .parse::<IpNet>()
                .ok()
                .or_else(|| text.parse::<std::net::IpAddr>().ok().map(IpNet::from))
                .map(LitVal::Ip),
        };
        match ok {
            Some(v) => Ok(v),
            None => {
                let want = match ty {
                    FieldType::Num => "a number",
                    FieldType::Bool => "true or false",
                    _ => "an IP address or CIDR",
                };
                self.mismatch(src, span, c, ty, &format!("'{text}' is not {want}"));
                Err(())
            }
        }
    }

    pub(super) fn value_test(
        &mut self,
        c: &AstCheck,
        ty: FieldType,
        name: &str,
        lit: &Lit,
        src: &SourceText,
    ) -> R<(Test, bool)> {
        let op = c.op;
        if let Some((cmp, neg)) = op_cmp(op) {
            if cmp != Cmp::Eq && ty != FieldType::Num {
                self.mismatch(
                    src,
                    c.op_span,
                    c,
                    ty,
                    &format!("operator '{}' needs a number", op.as_str()),
                );
                return Err(());
            }
            let v = self.parse_lit(c, ty, &lit.text, lit.span, src)?;
            return Ok((
                match v {
                    LitVal::Str(s) => Test::StrEq(s),
                    LitVal::Num(n) => Test::Num(cmp, n),
                    LitVal::Bool(b) => Test::Bool(b),
                    LitVal::Ip(n) => Test::Ip(vec![n].into()),
                },
                neg,
            ));
        }
        if ty != FieldType::Str {
            self.mismatch(
                src,
                c.op_span,
                c,
                ty,
                &format!("operator '{}' needs a string field", op.as_str()),
            );
            return Err(());
        }
        let text = lit.text.as_str();
        let test = match op {
            Op::Contains => Test::Contains(text.into()),
            Op::IContains => Test::IContains(text.to_ascii_lowercase().into()),
            Op::StartsWith => Test::StartsWith(text.into()),
            Op::EndsWith => Test::EndsWith(text.into()),
            Op::Glob | Op::IGlob => {
                let g = GlobBuilder::new(text)
                    .literal_separator(false)
                    .backslash_escape(true)
                    .case_insensitive(op == Op::IGlob)
                    .build();
                match g {
                    Ok(g) => Test::Glob(Box::new(g.compile_matcher())),
                    Err(e) => {
                        self.err(src, lit.span, format!("invalid glob for {name}: {e}"));
                        return Err(());
                    }
                }
            }
            Op::Regex => match Regex::new(&format!("^(?:{text})$")) {
                Ok(r) => Test::Regex(Box::new(r)),
                Err(e) => {
                    self.err(src, lit.span, format!("invalid regex for {name}: {e}"));
                    return Err(());
                }
            },
            Op::BContains | Op::BStartsWith => match hex(text) {
                Some(b) if op == Op::BContains => Test::BContains(b.into()),
                Some(b) => Test::BStartsWith(b.into()),
                None => {
                    self.err(
                        src,
                        lit.span,
                        format!("'{}' needs hex bytes, not '{text}'", op.as_str()),
                    );
                    return Err(());
                }
            },
            other => {
                self.err(
                    src,
                    c.op_span,
                    format!("operator '{}' does not take a single value", other.as_str()),
                );
                return Err(());
            }
        };
        Ok((test, false))
    }

    pub(super) fn list_test(
        &mut self,
        c: &AstCheck,
        ty: FieldType,
        name: &str,
        items: &[(String, Span)],
        src: &SourceText,
    ) -> R<Test> {
        if c.op == Op::Pmatch {
            if ty != FieldType::Str {
                self.mismatch(src, c.op_span, c, ty, "pmatch needs a string (path) field");
                return Err(());
            }
            // Trailing slashes are trimmed here rather than on every event.
            return Ok(Test::Pmatch(
                items
                    .iter()
                    .map(|(s, _)| s.trim_end_matches('/').into())
                    .collect(),
            ));
        }
        let mut vals = Vec::with_capacity(items.len());
        let mut ok = true;
        for (text, span) in items {
            match self.parse_lit(c, ty, text, *span, src) {
                Ok(v) => vals.push(v),
                Err(()) => ok = false,
            }
        }
        if !ok {
            return Err(());
        }
        Ok(match ty {
            FieldType::Str => Test::StrIn(
                vals.into_iter()
                    .filter_map(|v| match v {
                        LitVal::Str(s) => Some(s),
                        _ => None,
                    })
                    .collect(),
            ),
            FieldType::Num => Test::NumIn(
                vals.into_iter()
                    .filter_map(|v| match v {
                        LitVal::Num(n) => Some(n),
                        _ => None,
                    })
                    .collect(),
            ),
            FieldType::Ip => Test::Ip(
                vals.into_iter()
                    .filter_map(|v| match v {
                        LitVal::Ip(n) => Some(n),
                        _ => None,
                    })
                    .collect(),
            ),
            FieldType::Bool => {
                self.mismatch(
                    src,
                    c.op_span,
                    c,
                    ty,
                    &format!("'{}' is not defined for booleans on {name}", c.op.as_str()),
                );
                return Err(());
            }
        })
    }
}

pub(super) enum LitVal {
    Str(Box<str>),
    Num(i64),
    Bool(bool),
    Ip(IpNet),
}

fn parse_num(s: &str) -> Option<i64> {
    let s = s.trim();
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => i64::from_str_radix(h, 16).ok(),
        None => s.parse().ok(),
    }
}

fn hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).ok())
        .collect()
}

fn tname(t: Transformer) -> &'static str {
    match t {
        Transformer::ToLower => "tolower",
        Transformer::ToUpper => "toupper",
        Transformer::Basename => "basename",
        Transformer::Len => "len",
        Transformer::B64 => "b64",
    }
}
