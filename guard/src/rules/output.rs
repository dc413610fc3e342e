//! Rule outputs: `%field` (or `%(field)`) substitution, compiled once per rule. Rendering
//! builds strings, so it runs only for rules that matched.

use std::collections::BTreeMap;

use serde_json::Value as Json;

use super::{
    eval::Scratch,
    fields::{self, Ctx, FieldArg, FieldId, FieldRef, Resolved, Val},
};
use crate::{
    alert::{Alert, GuardInfo, Priority, rfc3339_ns},
    model::Event,
};

#[derive(Debug, Clone, Default)]
pub struct OutputFormat {
    segs: Vec<Seg>,
    /// Output fields guard cannot provide (rendered `<NA>`).
    pub unavailable: Vec<&'static str>,
}

#[derive(Debug, Clone)]
enum Seg {
    Lit(String),
    /// `name` as written is the key in `output_fields`; `None` = unavailable field.
    Field(String, Option<FieldRef>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputError {
    pub msg: String,
    pub text: String,
}

fn field_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '.'
}

impl OutputFormat {
    pub fn compile(fmt: &str) -> Result<Self, OutputError> {
        let mut out = OutputFormat::default();
        let mut lit = String::new();
        let chars: Vec<char> = fmt.chars().collect();
        let mut i = 0;
        while i < chars.len() {
            let c = chars[i];
            if c != '%' {
                lit.push(c);
                i += 1;
                continue;
            }
            let mut j = i + 1;
            let name: String;
            if chars.get(j) == Some(&'%') {
                lit.push('%');
                i += 2;
                continue;
            } else if chars.get(j) == Some(&'(') {
                let Some(close) = chars[j..].iter().position(|&c| c == ')') else {
                    return Err(OutputError {
                        msg: "unclosed %( in output".into(),
                        text: chars[i..].iter().collect(),
                    });
                };
                name = chars[j + 1..j + close]
                    .iter()
                    .collect::<String>()
                    .trim()
                    .to_string();
                j += close + 1;
            } else {
                while j < chars.len() && field_char(chars[j]) {
                    j += 1;
                }
                // An argument in brackets: proc.aname[2], container.label[app].
                if chars.get(j) == Some(&'[')
                    && let Some(close) = chars[j..].iter().position(|&c| c == ']')
                {
                    j += close + 1;
                }
                name = chars[i + 1..j]
                    .iter()
                    .collect::<String>()
                    .trim_end_matches('.')
                    .to_string();
                j = i + 1 + name.chars().count();
            }
            if name.is_empty() {
                lit.push('%');
                i += 1;
                continue;
            }
            let field = match fields::resolve(&name) {
                Ok((Resolved::Field(f, _), _)) => Some(f),
                Ok((Resolved::Unavailable(u), _)) => {
                    if !out.unavailable.contains(&u) {
                        out.unavailable.push(u);
                    }
                    None
                }
                Err(e) => {
                    return Err(OutputError {
                        msg: e.msg,
                        text: format!("%{name}"),
                    });
                }
            };
            if !lit.is_empty() {
                out.segs.push(Seg::Lit(std::mem::take(&mut lit)));
            }
            out.segs.push(Seg::Field(name, field));
            i = j;
        }
        if !lit.is_empty() {
            out.segs.push(Seg::Lit(lit));
        }
        Ok(out)
    }

    /// Renders the message and the `output_fields` map.
    pub fn render(&self, ev: &Event, ctx: &Ctx) -> (String, BTreeMap<String, Json>) {
        let mut msg = String::new();
        let mut fields_out = BTreeMap::new();
        let mut buf = String::new();
        for seg in &self.segs {
            match seg {
                Seg::Lit(l) => msg.push_str(l),
                Seg::Field(name, f) => {
                    let v = f
                        .as_ref()
                        .map_or(Val::Na, |f| f.extract(ev, 0, ctx, &mut buf));
                    let json = match v {
                        Val::Str(b) if f.as_ref().is_some_and(is_buffer) => {
                            Json::from(printable(b))
                        }
                        v => to_json(v),
                    };
                    match &json {
                        Json::String(s) => msg.push_str(s),
                        Json::Null => msg.push_str("<NA>"),
                        other => msg.push_str(&other.to_string()),
                    }
                    fields_out.insert(name.clone(), json);
                }
            }
        }
        (msg, fields_out)
    }
}

/// The container fields appended to alerts of containerized processes, as Falco's
/// `append_output` does: the key in `output_fields`, the field, and the `name=` label in the
/// message (`None`: `output_fields` only, the message has the image already).
const CONTAINER_FIELDS: [(&str, FieldId, Option<&str>); 5] = [
    ("container.id", FieldId::ContainerId, Some("container_id")),
    (
        "container.name",
        FieldId::ContainerName,
        Some("container_name"),
    ),
    (
        "container.image",
        FieldId::ContainerImage,
        Some("container_image"),
    ),
    (
        "container.image.repository",
        FieldId::ContainerImageRepository,
        None,
    ),
    ("container.image.tag", FieldId::ContainerImageTag, None),
];

/// A field holding a read or written buffer (`evt.buffer`, `evt.arg.data`).
fn is_buffer(f: &FieldRef) -> bool {
    match (&f.id, &f.arg) {
        (FieldId::EvtBuffer, _) => true,
        (FieldId::EvtArg, FieldArg::Key(k)) => &**k == "data",
        _ => false,
    }
}

/// A buffer as Falco prints it: printable ASCII as is, any other character `.`.
fn printable(b: &str) -> String {
    b.chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() {
                c
            } else {
                '.'
            }
        })
        .collect()
}

fn to_json(v: Val<'_>) -> Json {
    match v {
        Val::Str(s) => Json::from(s),
        Val::Num(n) => Json::from(n),
        Val::Bool(b) => Json::from(b),
        Val::Ip(ip) => Json::from(ip.to_string()),
        Val::Na => Json::Null,
    }
}

/// Appends the container fields the rule's output lacks, to the message (`container_id=…`)
/// and to `output_fields`; nothing for host processes or with `--no-container-fields`.
fn append_container(
    ev: &Event,
    ctx: &Ctx,
    msg: &mut String,
    fields_out: &mut BTreeMap<String, Json>,
) {
    if ctx.no_container_fields || ev.container.is_none() {
        return;
    }
    let mut buf = String::new();
    for (key, id, label) in CONTAINER_FIELDS {
        if fields_out.contains_key(key) {
            continue;
        }
        let f = FieldRef {
            id,
            arg: FieldArg::None,
        };
        let json = to_json(f.extract(ev, 0, ctx, &mut buf));
        if let Some(label) = label {
            msg.push(' ');
            msg.push_str(label);
            msg.push('=');
            // An unknown value, or an empty one (no image known), prints as Falco's `<NA>`.
            match &json {
                Json::String(s) if !s.is_empty() => msg.push_str(s),
                _ => msg.push_str("<NA>"),
            }
        }
        fields_out.insert(key.to_string(), json);
    }
}

/// `HH:MM:SS.nnnnnnnnn` in UTC, as Falco prefixes its output lines.
fn clock(epoch_ns: u64) -> String {
    let full = rfc3339_ns(epoch_ns);
    full.get(11..29).unwrap_or("").to_string()
}

/// Builds the alert for a matched rule.
pub fn alert(
    rule: &str,
    priority: Priority,
    tags: &[String],
    fmt: &OutputFormat,
    ev: &Event,
    ctx: &Ctx,
    _scratch: &mut Scratch,
) -> Alert {
    let (mut msg, mut output_fields) = fmt.render(ev, ctx);
    append_container(ev, ctx, &mut msg, &mut output_fields);
    output_fields.insert("evt.time".into(), Json::from(ev.time));
    Alert {
        time: rfc3339_ns(ev.time),
        rule: rule.to_string(),
        priority,
        source: "syscall".into(),
        hostname: ctx.hostname.clone(),
        output: format!("{}: {} {}", clock(ev.time), priority, msg),
        tags: tags.to_vec(),
        output_fields,
        guard: GuardInfo::default(),
    }
}

/// The plain-text form for terminals: Falco's output line, then the rule name.
pub fn text_line(a: &Alert) -> String {
    format!("{} (rule: {})", a.output, a.rule)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev() -> Event {
        let mut e = Event {
            v: 1,
            time: 1_000_000_123,
            evt_type: "execve".into(),
            ..Default::default()
        };
        e.proc.name = "bash".into();
        e.proc.uid = 0;
        e.prepare().expect("prepare");
        e
    }

    #[test]
    fn substitution_forms() {
        let f = OutputFormat::compile("shell %proc.name (uid=%user.uid) in %(container.name) 100%% %proc.aname[2] sid=%proc.sid.")
            .expect("compiles");
        assert_eq!(f.unavailable, vec!["proc.sid"]);
        let (msg, fields) = f.render(&ev(), &Ctx::default());
        assert_eq!(msg, "shell bash (uid=0) in host 100% <NA> sid=<NA>.");
        assert_eq!(fields["user.uid"], Json::from(0));
        assert_eq!(fields["proc.aname[2]"], Json::Null);
        assert!(fields.contains_key("container.name"));
    }

    #[test]
    fn unknown_output_field_is_an_error_with_hint() {
        let e = OutputFormat::compile("x=%proc.nme").expect_err("unknown");
        assert!(e.msg.contains("did you mean 'proc.name'"), "{}", e.msg);
        assert_eq!(e.text, "%proc.nme");
    }

    #[test]
    fn alert_has_falco_shape() {
        let f = OutputFormat::compile("hello %proc.name").expect("compiles");
        let a = alert(
            "r",
            Priority::Warning,
            &["t".into()],
            &f,
            &ev(),
            &Ctx {
                hostname: "h".into(),
                ..Ctx::default()
            },
            &mut Scratch::default(),
        );
        assert_eq!(a.output, "00:00:01.000000123: Warning hello bash");
        assert_eq!(a.time, "1970-01-01T00:00:01.000000123Z");
        assert_eq!(a.output_fields["evt.time"], Json::from(1_000_000_123u64));
        assert!(text_line(&a).ends_with("(rule: r)"));
        assert!(
            !a.output_fields.contains_key("container.id"),
            "host: nothing appended"
        );
    }

    /// A containerized process's alert carries the container fields its output lacks, in the
    /// message and in `output_fields`; those the output has are not repeated; the switch
    /// turns it off.
    #[test]
    fn container_fields_appended() {
        let mut e = ev();
        e.container = Some(crate::model::Container {
            id: "0123456789ab".into(),
            name: "web".into(),
            image: "docker.io/library/nginx:1.25".into(),
            ..Default::default()
        });
        e.prepare().expect("prepare");
        let f = OutputFormat::compile("shell %proc.name in %container.name").expect("compiles");
        let mut ctx = Ctx::default();
        let a = alert(
            "r",
            Priority::Warning,
            &[],
            &f,
            &e,
            &ctx,
            &mut Scratch::default(),
        );
        assert_eq!(
            a.output,
            "00:00:01.000000123: Warning shell bash in web container_id=0123456789ab container_image=docker.io/library/nginx:1.25"
        );
        assert_eq!(a.output_fields["container.id"], Json::from("0123456789ab"));
        assert_eq!(a.output_fields["container.name"], Json::from("web"));
        assert_eq!(
            a.output_fields["container.image.repository"],
            Json::from("docker.io/library/nginx")
        );
        assert_eq!(a.output_fields["container.image.tag"], Json::from("1.25"));
        ctx.no_container_fields = true;
        let a = alert(
            "r",
            Priority::Warning,
            &[],
            &f,
            &e,
            &ctx,
            &mut Scratch::default(),
        );
        assert_eq!(a.output, "00:00:01.000000123: Warning shell bash in web");
        assert!(!a.output_fields.contains_key("container.id"));
    }
}
