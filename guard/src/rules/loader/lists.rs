//! `- list:` and `- macro:` items.

use serde_yaml::Mapping;

use super::*;

impl Definitions {
    pub(super) fn load_list(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &["list", "items", "append", "override"]) {
            return;
        }
        let Some(name) = self.name_of(ctx, map, "list") else {
            return;
        };
        let items: Vec<ListItem> = self
            .string_list(ctx, map, "items")
            .unwrap_or_default()
            .into_iter()
            .map(list_item)
            .collect();
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "list", &["items"], &["items"]);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("list '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let extend = append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        if (append || ov.is_some()) && !self.lists.contains_key(&name) {
            self.err(
                ctx,
                ctx.pos(),
                format!("list '{name}': append/override of a list that is not defined"),
            );
            return;
        }
        if !map.contains_key("items") {
            self.err(ctx, ctx.pos(), format!("list '{name}' has no 'items'"));
            return;
        }
        match self.lists.get_mut(&name) {
            Some(l) if extend => l.items.extend(items),
            _ => {
                self.lists.insert(
                    name.clone(),
                    ListDef {
                        name,
                        items,
                        file: ctx.file.clone(),
                        pos: ctx.pos(),
                    },
                );
            }
        }
    }

    pub(super) fn load_macro(&mut self, ctx: &ItemCtx<'_>, map: &Mapping) {
        if !self.check_keys(ctx, map, &["macro", "condition", "append", "override"]) {
            return;
        }
        let Some(name) = self.name_of(ctx, map, "macro") else {
            return;
        };
        let Some(cond) = self.cond_key(ctx, map, "condition") else {
            if !map.contains_key("condition") {
                self.err(ctx, ctx.pos(), format!("macro '{name}' has no 'condition'"));
            }
            return;
        };
        let append = self.bool_key(ctx, map, "append").unwrap_or(false);
        let ov = self.overrides(ctx, map, "macro", &["condition"], &["condition"]);
        if append && ov.is_some() {
            self.err(
                ctx,
                ctx.key_pos("append"),
                format!("macro '{name}': use either 'append' or 'override', not both"),
            );
            return;
        }
        let extend = append || ov.as_ref().is_some_and(|o| o.iter().any(|(_, a)| *a));
        if (append || ov.is_some()) && !self.macros.contains_key(&name) {
            self.err(
                ctx,
                ctx.pos(),
                format!("macro '{name}': append/override of a macro that is not defined"),
            );
            return;
        }
        match self.macros.get_mut(&name) {
            Some(m) if extend => m.cond.append(cond),
            _ => {
                if !self.macros.contains_key(&name) {
                    self.macro_order.push(name.clone());
                }
                self.macros.insert(
                    name.clone(),
                    MacroDef {
                        name,
                        cond,
                        file: ctx.file.clone(),
                        pos: ctx.pos(),
                    },
                );
            }
        }
    }
}
