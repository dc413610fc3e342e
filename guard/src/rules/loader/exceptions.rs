//! A rule's `exceptions:`: names, fields, comparison operators and value tuples.

use serde_yaml::{Mapping, Value};

use super::*;
use crate::yaml::Seg::{Index, Key};

impl Definitions {
    /// Parses `exceptions:`. `prior` is the rule's current exceptions when they are being
    /// appended to: then, as in Falco, an entry that names an existing exception carries only
    /// `values` (its fields and comps are the existing ones), and a new entry needs `values`.
    pub(super) fn exceptions(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        prior: Option<&[ExceptionDef]>,
    ) -> Option<Vec<ExceptionDef>> {
        let v = map.get("exceptions")?;
        let pos = ctx.key_pos("exceptions");
        let Value::Sequence(list) = v else {
            self.err(ctx, pos, "'exceptions' must be a list".into());
            return None;
        };
        let mut out = Vec::new();
        for (i, e) in list.iter().enumerate() {
            let Value::Mapping(m) = e else {
                self.err(
                    ctx,
                    ctx.value_pos(&[Key("exceptions"), Index(i)]),
                    "each exception must be a mapping with name, fields, comps, values".into(),
                );
                continue;
            };
            let mut bad = false;
            for k in m.keys() {
                let k = scalar(k).unwrap_or_default();
                if !["name", "fields", "comps", "values"].contains(&k.as_str()) {
                    self.diagnostics.push(
                        Diagnostic::error(
                            &ctx.file,
                            ctx.path_pos(&[Key("exceptions"), Index(i), Key(&k)]),
                            format!(
                                "unknown exception key '{k}' (allowed: name, fields, comps, values)"
                            ),
                        )
                        .with_text(k),
                    );
                    bad = true;
                }
            }
            let Some(name) = m.get("name").and_then(scalar) else {
                let at = ctx.value_pos(&[Key("exceptions"), Index(i)]);
                self.err(ctx, at, "exception needs a 'name'".into());
                continue;
            };
            let existing = prior.and_then(|p| p.iter().find(|x| x.name == name));
            let Some((fields, single, comps)) = (match existing {
                Some(x) => self.appended_exception_shape(ctx, i, m, x),
                None => self.exception_shape(ctx, i, m, &name),
            }) else {
                continue;
            };
            if comps.len() != fields.len() {
                self.err(
                    ctx,
                    ctx.path_pos(&[Key("exceptions"), Index(i), Key("comps")]),
                    format!(
                        "exception '{name}': {} fields but {} comps",
                        fields.len(),
                        comps.len()
                    ),
                );
                continue;
            }
            let mut values = Vec::new();
            match m.get("values") {
                None | Some(Value::Null) => {}
                Some(Value::Sequence(rows)) if single => {
                    let row: Vec<ListItem> =
                        rows.iter().filter_map(scalar).map(list_item).collect();
                    values.push(vec![ExValue::Many(row)]);
                }
                Some(Value::Sequence(rows)) => {
                    for (r, row) in rows.iter().enumerate() {
                        let row_pos =
                            ctx.value_pos(&[Key("exceptions"), Index(i), Key("values"), Index(r)]);
                        let Value::Sequence(cells) = row else {
                            self.err(ctx, row_pos, format!("exception '{name}': each value must be a list with one entry per field"));
                            bad = true;
                            break;
                        };
                        if cells.len() != fields.len() {
                            self.err(
                                ctx,
                                row_pos,
                                format!(
                                    "exception '{name}': value has {} entries for {} fields",
                                    cells.len(),
                                    fields.len()
                                ),
                            );
                            bad = true;
                            break;
                        }
                        let row = cells
                            .iter()
                            .map(|c| match c {
                                Value::Sequence(s) => ExValue::Many(
                                    s.iter().filter_map(scalar).map(list_item).collect(),
                                ),
                                other => ExValue::One(list_item(scalar(other).unwrap_or_default())),
                            })
                            .collect();
                        values.push(row);
                    }
                }
                Some(_) => {
                    self.err(
                        ctx,
                        ctx.value_pos(&[Key("exceptions"), Index(i), Key("values")]),
                        format!("exception '{name}': 'values' must be a list"),
                    );
                    bad = true;
                }
            }
            if !bad && prior.is_some() && existing.is_none() && values.is_empty() {
                self.err(
                    ctx,
                    ctx.path_pos(&[Key("exceptions"), Index(i), Key("name")]),
                    format!("exception '{name}': an appended exception needs 'values'"),
                );
                bad = true;
            }
            if !bad {
                out.push(ExceptionDef {
                    name,
                    fields,
                    single,
                    comps,
                    values,
                    pos,
                    file: ctx.file.clone(),
                });
            }
        }
        Some(out)
    }

    /// `fields` and `comps` of a new exception: Falco's defaults are `=` per field, or `in` when
    /// `fields` is a single string (which then allows only `in`, `pmatch` and `intersects`).
    pub(super) fn exception_shape(
        &mut self,
        ctx: &ItemCtx<'_>,
        i: usize,
        m: &Mapping,
        name: &str,
    ) -> Option<(Vec<String>, bool, Vec<String>)> {
        let at = |k| ctx.value_pos(&[Key("exceptions"), Index(i), Key(k)]);
        let (fields, single) = match m.get("fields") {
            Some(Value::Sequence(s)) => (s.iter().filter_map(scalar).collect::<Vec<_>>(), false),
            Some(v) => match scalar(v) {
                Some(f) => (vec![f], true),
                None => {
                    self.err(
                        ctx,
                        at("fields"),
                        format!("exception '{name}': 'fields' must be a string or a list"),
                    );
                    return None;
                }
            },
            None => {
                let pos = ctx.path_pos(&[Key("exceptions"), Index(i)]);
                self.err(ctx, pos, format!("exception '{name}' needs 'fields'"));
                return None;
            }
        };
        let comps: Vec<String> = match m.get("comps") {
            Some(Value::Sequence(s)) => s.iter().filter_map(scalar).collect(),
            Some(v) => scalar(v).into_iter().collect(),
            None if single => vec!["in".to_string()],
            None => vec!["=".to_string(); fields.len()],
        };
        if single
            && !comps
                .iter()
                .all(|c| ["in", "pmatch", "intersects"].contains(&c.as_str()))
        {
            self.err(
                ctx,
                at("comps"),
                format!(
                    "exception '{name}': when 'fields' is a single field, 'comps' must be in, pmatch or intersects"
                ),
            );
            return None;
        }
        Some((fields, single, comps))
    }

    /// Appending to an existing exception adds values only, as in Falco.
    pub(super) fn appended_exception_shape(
        &mut self,
        ctx: &ItemCtx<'_>,
        i: usize,
        m: &Mapping,
        existing: &ExceptionDef,
    ) -> Option<(Vec<String>, bool, Vec<String>)> {
        for key in ["fields", "comps"] {
            if m.contains_key(key) {
                self.err(
                    ctx,
                    ctx.path_pos(&[Key("exceptions"), Index(i), Key(key)]),
                    format!(
                        "exception '{}': cannot append '{key}' to an existing exception, only values",
                        existing.name
                    ),
                );
                return None;
            }
        }
        Some((
            existing.fields.clone(),
            existing.single,
            existing.comps.clone(),
        ))
    }
}
