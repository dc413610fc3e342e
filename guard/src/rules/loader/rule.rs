//! `- rule:` items: definition, `append`, `override` and enable-only redefinitions.

use serde_yaml::Mapping;

use super::*;

impl Definitions {
    pub(super) fn load_rule(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &RULE_KEYS) {
            // The item is dropped, but report a bad priority too so one run shows both.
            if map.contains_key("priority") {
                self.priority(ctx, map);
            }
            return;
        }
        let Some(name) = self.name_of(ctx, map, "rule") else {
            return;
        };
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "rule", &RULE_APPENDABLE, &RULE_REPLACEABLE);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("rule '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let existing = self.rule_index.get(&name).copied();
        if let Some(ov) = ov {
            let Some(idx) = existing else {
                self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': override of a rule that is not defined"),
                );
                return;
            };
            for (key, is_append) in ov {
                self.apply_rule_key(ctx, map, idx, &key, is_append);
            }
            return;
        }
        if append {
            let Some(idx) = existing else {
                self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': append to a rule that is not defined"),
                );
                return;
            };
            for key in map.keys().filter_map(scalar) {
                match key.as_str() {
                    "rule" | "append" => {}
                    "condition" | "exceptions" | "output" | "desc" | "tags" => {
                        self.apply_rule_key(ctx, map, idx, &key, true)
                    }
                    other => self.err(
                        ctx,
                        ctx.key_pos(other),
                        format!("rule '{name}': '{other}' cannot be appended"),
                    ),
                }
            }
            return;
        }
        let only_enabled = map
            .keys()
            .filter_map(scalar)
            .all(|k| k == "rule" || k == "enabled");
        if only_enabled && map.contains_key("enabled") {
            match existing {
                Some(idx) => self.apply_rule_key(ctx, map, idx, "enabled", false),
                None => self.err(
                    ctx,
                    ctx.pos(),
                    format!("rule '{name}': enabled-only item for a rule that is not defined"),
                ),
            }
            return;
        }
        let mut missing = Vec::new();
        for k in ["condition", "output", "desc", "priority"] {
            if !map.contains_key(k) {
                missing.push(k);
            }
        }
        if !missing.is_empty() {
            self.err(
                ctx,
                ctx.pos(),
                format!(
                    "rule '{name}' is missing required key(s): {}",
                    missing.join(", ")
                ),
            );
            return;
        }
        let (Some(cond), Some(output), Some(desc), Some(priority)) = (
            self.cond_key(ctx, map, "condition"),
            self.string_key(ctx, map, "output"),
            self.string_key(ctx, map, "desc"),
            self.priority(ctx, map),
        ) else {
            return;
        };
        let rule = RuleDef {
            name: name.clone(),
            desc,
            cond,
            output: output.trim().to_string(),
            output_pos: ctx.key_pos("output"),
            priority,
            tags: self.string_list(ctx, map, "tags").unwrap_or_default(),
            enabled: self.bool_key(ctx, map, "enabled").unwrap_or(true),
            source: self
                .string_key(ctx, map, "source")
                .unwrap_or_else(|| "syscall".into()),
            exceptions: self.exceptions(ctx, map, None).unwrap_or_default(),
            skip_if_unknown_filter: self
                .bool_key(ctx, map, "skip-if-unknown-filter")
                .unwrap_or(false),
            file: ctx.file.clone(),
            pos: ctx.pos(),
        };
        if map.contains_key("warn_evttypes") {
            self.bool_key(ctx, map, "warn_evttypes");
        }
        match existing {
            Some(idx) => self.rules[idx] = rule,
            None => {
                self.rule_index.insert(name, self.rules.len());
                self.rules.push(rule);
            }
        }
    }

    pub(super) fn priority(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) -> Option<Priority> {
        let p = self.string_key(ctx, map, "priority")?;
        match Priority::parse(&p) {
            Some(p) => Some(p),
            None => {
                self.diagnostics.push(
                    Diagnostic::error(
                        &ctx.file,
                        ctx.key_pos("priority"),
                        format!(
                            "unknown priority '{p}' (expected one of {})",
                            Priority::ALL.map(|p| p.as_str()).join(", ")
                        ),
                    )
                    .with_text(p),
                );
                None
            }
        }
    }

    pub(super) fn apply_rule_key(
        &mut self,
        ctx: &ItemCtx<'_>,
        map: &Mapping,
        idx: usize,
        key: &str,
        append: bool,
    ) {
        match key {
            "condition" => {
                if let Some(c) = self.cond_key(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    if append { r.cond.append(c) } else { r.cond = c }
                }
            }
            "output" | "desc" => {
                if let Some(s) = self.string_key(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    let slot = if key == "output" {
                        &mut r.output
                    } else {
                        &mut r.desc
                    };
                    if append {
                        slot.push(' ');
                        slot.push_str(s.trim());
                    } else {
                        *slot = s.trim().to_string();
                    }
                }
            }
            "priority" => {
                if let Some(p) = self.priority(ctx, map) {
                    self.rules[idx].priority = p;
                }
            }
            "enabled" => {
                if let Some(b) = self.bool_key(ctx, map, key) {
                    self.rules[idx].enabled = b;
                }
            }
            "tags" => {
                if let Some(t) = self.string_list(ctx, map, key) {
                    let r = &mut self.rules[idx];
                    if append {
                        for x in t {
                            if !r.tags.contains(&x) {
                                r.tags.push(x);
                            }
                        }
                    } else {
                        r.tags = t;
                    }
                }
            }
            "exceptions" => {
                let prior = append.then(|| self.rules[idx].exceptions.clone());
                if let Some(ex) = self.exceptions(ctx, map, prior.as_deref()) {
                    let r = &mut self.rules[idx];
                    if !append {
                        r.exceptions = ex;
                        return;
                    }
                    for e in ex {
                        match r.exceptions.iter_mut().find(|x| x.name == e.name) {
                            Some(x) => x.values.extend(e.values),
                            None => r.exceptions.push(e),
                        }
                    }
                }
            }
            _ => {}
        }
    }
}
