//! `guard.yaml`: every `guard run` flag (and the global `--log`) has a config key.
//!
//! The keys are not a second table: they are the long flags of the `run` command, read from
//! clap at run time (`--ring-bytes` is the key `ring_bytes`), so a new flag is a new key and
//! a removed flag can no longer be configured. Precedence: a flag given on the command line
//! (or through its environment variable) beats the file, which beats the default. clap's
//! `ArgMatches::value_source` tells which values were given; the file's values are added to
//! the command line for the other keys only, and the whole is parsed again by the same parser,
//! so a file value is checked exactly as the same flag would be.
//!
//! File: `--config PATH` (or `$GUARD_CONFIG`; an error if missing), else
//! [`DEFAULT_PATH`] when present. Unknown keys and values of the wrong type are errors with
//! `file:line:col` (and, for an unknown key, the closest valid one). A key set to `null` (or
//! an empty list) is not set. `guard config show` prints the effective configuration, with the
//! source of each value; its output, used as a config file, gives the same configuration.

use std::{
    collections::BTreeSet,
    ffi::OsString,
    fmt,
    path::{Path, PathBuf},
};

use clap::{Arg, ArgAction, ArgMatches, Parser, parser::ValueSource};
use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};

mod run_args;

pub use run_args::{CaptureArgs, PrintEvents, RecordArgs, RunArgs, default_responses};

/// Read when `--config` is not given and the file exists.
pub const DEFAULT_PATH: &str = "/etc/guard/guard.yaml";
/// Environment variable naming the config file (like `--config`).
pub const ENV: &str = "GUARD_CONFIG";
/// Long flags that are not config keys.
pub(crate) const NOT_KEYS: &[&str] = &["config", "help", "version"];
/// The subcommands whose flags are `guard run`'s (they flatten [`RunArgs`], and so read the
/// config file): `guard run` and `guard config show`.
pub const RUN_LIKE: &[&[&str]] = &[&["run"], &["config", "show"]];

/// How a key takes its value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A flag without a value (`--detect-only`): `true` or `false`.
    Switch,
    /// One value.
    One,
    /// A repeatable flag: a list (a single value is a list of one).
    Many,
}

/// One config key.
#[derive(Debug, Clone)]
pub struct Key {
    /// The YAML key: the long flag with `_` for `-`.
    pub name: String,
    /// clap's argument id.
    pub id: String,
    pub long: String,
    pub kind: Kind,
    pub help: String,
}

fn kind_of(arg: &Arg) -> Kind {
    match arg.get_action() {
        ArgAction::SetTrue => Kind::Switch,
        ArgAction::Append => Kind::Many,
        _ => Kind::One,
    }
}

/// The built command line `C` (global flags propagated into subcommands).
pub(crate) fn built<C: Parser>() -> clap::Command {
    let mut root = C::command();
    root.build();
    root
}

pub(crate) fn find_sub<'a>(root: &'a clap::Command, path: &[&str]) -> Option<&'a clap::Command> {
    path.iter()
        .try_fold(root, |c, name| c.find_subcommand(name))
}

/// The config keys of the command line `C`, in the order of `guard run --help`.
pub fn keys<C: Parser>() -> Vec<Key> {
    let root = built::<C>();
    match find_sub(&root, &["run"]) {
        Some(run) => keys_of(run),
        None => Vec::new(),
    }
}

pub(crate) fn keys_of(cmd: &clap::Command) -> Vec<Key> {
    cmd.get_arguments()
        .filter(|a| !a.is_positional())
        .filter_map(|a| {
            let long = a.get_long()?;
            if NOT_KEYS.contains(&long) {
                return None;
            }
            Some(Key {
                name: long.replace('-', "_"),
                id: a.get_id().as_str().to_owned(),
                long: long.to_owned(),
                kind: kind_of(a),
                help: a.get_help().map(|h| h.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// A config file error.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Command-line usage (clap prints it and exits 2).
    #[error("{0}")]
    Usage(clap::Error),
    /// The file: reading, syntax, keys, types, or values that conflict.
    #[error("{0}")]
    File(String),
}

/// Values read from a config file: per argument id, the values (as they would be written on
/// the command line; a switch set to true has one value `true`, one set to false none).
#[derive(Debug, Clone, Default)]
pub struct FileValues {
    pub path: PathBuf,
    pub values: Vec<(String, Vec<String>)>,
}

/// Reads and checks a config file against the keys of `cmd` (the built `run` command).
pub fn load_file(path: &Path, cmd: &clap::Command) -> Result<FileValues, ConfigError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| ConfigError::File(format!("{}: {e}", path.display())))?;
    parse_text(&text, cmd)
        .map(|values| FileValues {
            path: path.to_path_buf(),
            values,
        })
        .map_err(|e| {
            let file: std::sync::Arc<str> = path.display().to_string().into();
            ConfigError::File(crate::yaml::Diagnostic::from_yaml(&file, &e).to_string())
        })
}

pub(crate) fn parse_text(
    text: &str,
    cmd: &clap::Command,
) -> Result<Vec<(String, Vec<String>)>, serde_yaml::Error> {
    let keys = keys_of(cmd);
    let de = serde_yaml::Deserializer::from_str(text);
    FileSeed { cmd, keys: &keys }.deserialize(de)
}

struct FileSeed<'a> {
    cmd: &'a clap::Command,
    keys: &'a [Key],
}

impl<'de> DeserializeSeed<'de> for FileSeed<'_> {
    type Value = Vec<(String, Vec<String>)>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FileSeed<'_> {
    type Value = Vec<(String, Vec<String>)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a mapping of guard config keys")
    }

    /// An empty file (or one with only comments).
    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Vec::new())
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out: Vec<(String, Vec<String>)> = Vec::new();
        let mut seen = BTreeSet::new();
        while let Some(key) = map.next_key_seed(KeySeed(self.keys))? {
            if !seen.insert(key.name.clone()) {
                return Err(de::Error::custom(format!(
                    "key `{}` is given twice",
                    key.name
                )));
            }
            let arg = self
                .cmd
                .get_arguments()
                .find(|a| a.get_id().as_str() == key.id)
                .ok_or_else(|| de::Error::custom(format!("key `{}`: no such flag", key.name)))?;
            let values = match key.kind {
                Kind::Switch => match map.next_value::<Option<bool>>()? {
                    Some(true) => vec!["true".to_owned()],
                    Some(false) => Vec::new(),
                    None => continue,
                },
                Kind::One => match map.next_value_seed(ValueSeed {
                    cmd: self.cmd,
                    arg,
                    key: &key.name,
                    many: false,
                })? {
                    Some(v) => v,
                    None => continue,
                },
                Kind::Many => match map.next_value_seed(ValueSeed {
                    cmd: self.cmd,
                    arg,
                    key: &key.name,
                    many: true,
                })? {
                    Some(v) if !v.is_empty() => v,
                    _ => continue,
                },
            };
            out.push((key.id.clone(), values));
        }
        Ok(out)
    }
}

/// A key, checked against the known ones (so the error points at the key).
struct KeySeed<'a>(&'a [Key]);

impl<'de> DeserializeSeed<'de> for KeySeed<'_> {
    type Value = Key;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Key, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de> Visitor<'de> for KeySeed<'_> {
    type Value = Key;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a config key")
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Key, E> {
        if let Some(k) = self.0.iter().find(|k| k.name == v) {
            return Ok(k.clone());
        }
        let hint = closest(v, self.0.iter().map(|k| k.name.as_str()))
            .map(|c| format!(" (did you mean `{c}`?)"))
            .unwrap_or_default();
        Err(E::custom(format!("unknown key `{v}`{hint}")))
    }
}

/// A value of key `key`: a scalar, or for `many` a list of scalars; each checked by the flag's
/// own value parser. `None` for null.
struct ValueSeed<'a> {
    cmd: &'a clap::Command,
    arg: &'a Arg,
    key: &'a str,
    many: bool,
}

impl ValueSeed<'_> {
    fn check<E: de::Error>(&self, s: String) -> Result<String, E> {
        let Some(long) = self.arg.get_long() else {
            return Ok(s);
        };
        let mut flag = OsString::from(format!("--{long}="));
        flag.push(&s);
        // The flag's own parser, through the command (its checks need the command).
        match self
            .cmd
            .clone()
            .try_get_matches_from([OsString::from("guard"), flag])
        {
            Ok(_) => Ok(s),
            Err(e) => {
                // clap's message without its "error: " prefix and usage lines.
                let text = e.to_string();
                let first = text.lines().next().unwrap_or_default();
                let first = first.strip_prefix("error: ").unwrap_or(first);
                Err(E::custom(format!("key `{}`: {first}", self.key)))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for ValueSeed<'_> {
    type Value = Option<Vec<String>>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for ValueSeed<'_> {
    type Value = Option<Vec<String>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.many {
            write!(f, "a value or a list of values for `{}`", self.key)
        } else {
            write!(f, "a single value (string or number) for `{}`", self.key)
        }
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        self.check(v.to_owned()).map(|s| Some(vec![s]))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        self.check(v.to_string()).map(|s| Some(vec![s]))
    }
    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        self.check(v.to_string()).map(|s| Some(vec![s]))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        self.check(v.to_string()).map(|s| Some(vec![s]))
    }
    fn visit_bool<E: de::Error>(self, v: bool) -> Result<Self::Value, E> {
        self.check(v.to_string()).map(|s| Some(vec![s]))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        if !self.many {
            return Err(de::Error::invalid_type(de::Unexpected::Seq, &self));
        }
        let mut out = Vec::new();
        while let Some(v) = seq.next_element_seed(ValueSeed {
            many: false,
            cmd: self.cmd,
            arg: self.arg,
            key: self.key,
        })? {
            if let Some(v) = v {
                out.extend(v);
            }
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
use crate::yaml::levenshtein as distance;

/// The closest key, if reasonably close.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    crate::yaml::closest(word, candidates, |c| {
        if c.contains(word) || word.contains(c) {
            usize::MAX
        } else {
            (c.len() / 2).max(2)
        }
    })
}

/// The parsed command line `C` with the config file applied.
#[derive(Debug)]
pub struct Parsed<C> {
    pub cli: C,
    /// The final matches (after the file's values were added).
    pub matches: ArgMatches,
    /// The file read, if any.
    pub file: Option<PathBuf>,
    /// Argument ids whose value came from the file.
    pub from_file: BTreeSet<String>,
}

fn given(m: &ArgMatches, id: &str) -> bool {
    matches!(
        m.value_source(id),
        Some(ValueSource::CommandLine | ValueSource::EnvVariable)
    )
}

fn sub_matches<'a>(m: &'a ArgMatches, path: &[&str]) -> Option<&'a ArgMatches> {
    path.iter().try_fold(m, |m, name| match m.subcommand() {
        Some((n, sm)) if n == *name => Some(sm),
        _ => None,
    })
}

/// Parses `argv` (with the program name); for `run` and `config show`, applies the config file
/// (`default` is the path read when none is given and it exists).
pub fn parse_from<C: Parser>(
    argv: Vec<OsString>,
    default: Option<&Path>,
) -> Result<Parsed<C>, ConfigError> {
    let root = built::<C>();
    let m = root
        .clone()
        .try_get_matches_from(&argv)
        .map_err(ConfigError::Usage)?;
    let Some((path, sm)) = RUN_LIKE
        .iter()
        .find_map(|p| sub_matches(&m, p).map(|sm| (*p, sm)))
    else {
        let cli = C::from_arg_matches(&m).map_err(ConfigError::Usage)?;
        return Ok(Parsed {
            cli,
            matches: m,
            file: None,
            from_file: BTreeSet::new(),
        });
    };
    let file = match sm.get_one::<PathBuf>("config") {
        Some(p) => {
            if !p.is_file() {
                return Err(ConfigError::File(format!(
                    "config file {} not found (from {})",
                    p.display(),
                    if given(sm, "config")
                        && sm.value_source("config") == Some(ValueSource::EnvVariable)
                    {
                        ENV
                    } else {
                        "--config"
                    }
                )));
            }
            Some(p.clone())
        }
        None => default.filter(|p| p.is_file()).map(Path::to_path_buf),
    };
    let Some(file) = file else {
        let cli = C::from_arg_matches(&m).map_err(ConfigError::Usage)?;
        return Ok(Parsed {
            cli,
            matches: m,
            file: None,
            from_file: BTreeSet::new(),
        });
    };
    let sub = find_sub(&root, path)
        .ok_or_else(|| ConfigError::File("internal: run command missing".into()))?;
    let values = load_file(&file, sub)?;
    let mut argv2 = argv.clone();
    let mut from_file = BTreeSet::new();
    for (id, vals) in &values.values {
        let Some(arg) = sub.get_arguments().find(|a| a.get_id().as_str() == id) else {
            continue;
        };
        if given(sm, id) {
            continue;
        }
        // A flag given on the command line also beats the file's values that conflict with
        // it (`--no-responses` on the command line, `responses:` in the file).
        let conflicts = |a: &Arg, b: &Arg| {
            sub.get_arg_conflicts_with(a)
                .iter()
                .any(|c| c.get_id() == b.get_id())
        };
        if sub
            .get_arguments()
            .filter(|o| given(sm, o.get_id().as_str()))
            .any(|o| conflicts(arg, o) || conflicts(o, arg))
        {
            continue;
        }
        let Some(long) = arg.get_long() else { continue };
        from_file.insert(id.clone());
        if kind_of(arg) == Kind::Switch {
            if vals.iter().any(|v| v == "true") {
                argv2.push(format!("--{long}").into());
            }
            continue;
        }
        for v in vals {
            let mut a = OsString::from(format!("--{long}="));
            a.push(v);
            argv2.push(a);
        }
    }
    let m2 = root.try_get_matches_from(&argv2).map_err(|e| {
        let text = e.to_string();
        let first = text.lines().next().unwrap_or_default().to_owned();
        ConfigError::File(format!(
            "{}: with the command line: {}",
            file.display(),
            first.strip_prefix("error: ").unwrap_or(&first)
        ))
    })?;
    let cli = C::from_arg_matches(&m2).map_err(ConfigError::Usage)?;
    Ok(Parsed {
        cli,
        matches: m2,
        file: Some(file),
        from_file,
    })
}

/// Where an effective value came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    Flag,
    Env,
    File,
    Default,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Flag => "flag",
            Self::Env => "env",
            Self::File => "file",
            Self::Default => "default",
        }
    }
}

/// One effective value: the key, its values (raw, as on the command line; a switch is
/// `true`/`false`; empty when unset) and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Effective {
    pub key: Key,
    pub values: Vec<String>,
    pub source: Source,
}

impl PartialEq for Key {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name
    }
}
impl Eq for Key {}

/// The effective configuration of a parsed `run` or `config show` command line.
pub fn effective<C: Parser>(p: &Parsed<C>) -> Vec<Effective> {
    let root = built::<C>();
    let Some((path, sm)) = RUN_LIKE
        .iter()
        .find_map(|path| sub_matches(&p.matches, path).map(|sm| (*path, sm)))
    else {
        return Vec::new();
    };
    let Some(sub) = find_sub(&root, path) else {
        return Vec::new();
    };
    keys_of(sub)
        .into_iter()
        .map(|key| {
            let values = if key.kind == Kind::Switch {
                vec![sm.get_flag(&key.id).to_string()]
            } else {
                sm.get_raw(&key.id)
                    .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
                    .unwrap_or_default()
            };
            let source = match sm.value_source(&key.id) {
                Some(ValueSource::CommandLine) if p.from_file.contains(&key.id) => Source::File,
                Some(ValueSource::CommandLine) => Source::Flag,
                Some(ValueSource::EnvVariable) => Source::Env,
                _ if p.from_file.contains(&key.id) => Source::File,
                _ => Source::Default,
            };
            Effective {
                key,
                values,
                source,
            }
        })
        .collect()
}

/// A YAML scalar that reads back as `s` (plain when that is unambiguous, quoted otherwise).
fn scalar(s: &str) -> String {
    let plain = match serde_yaml::from_str::<serde_yaml::Value>(s) {
        Ok(serde_yaml::Value::String(t)) => t == s,
        Ok(serde_yaml::Value::Number(n)) => n.to_string() == s,
        _ => false,
    };
    if plain && !s.contains(['#', '\n', '"', '\'']) && s.trim() == s && !s.is_empty() {
        return s.to_owned();
    }
    serde_yaml::to_string(&serde_yaml::Value::String(s.to_owned()))
        .map(|t| t.trim_end().to_owned())
        .unwrap_or_else(|_| format!("{s:?}"))
}

/// `guard config show`'s YAML: every key with its effective value and, as a comment, its
/// source.
pub fn render<C: Parser>(p: &Parsed<C>) -> String {
    let mut out = String::from("# guard effective configuration (guard config show)\n");
    match &p.file {
        Some(f) => out.push_str(&format!("# config file: {}\n", f.display())),
        None => out.push_str("# config file: none\n"),
    }
    out.push_str("# each value's source: flag (command line), env, file or default\n");
    for e in effective(p) {
        let src = e.source.as_str();
        let name = &e.key.name;
        match e.key.kind {
            Kind::Switch => {
                let v = e.values.first().map_or("false", String::as_str);
                out.push_str(&format!("{name}: {v}  # {src}\n"));
            }
            Kind::One => match e.values.first() {
                Some(v) => out.push_str(&format!("{name}: {}  # {src}\n", scalar(v))),
                None => out.push_str(&format!("{name}: null  # {src} (unset)\n")),
            },
            Kind::Many if e.values.is_empty() => {
                out.push_str(&format!("{name}: []  # {src} (unset)\n"));
            }
            Kind::Many => {
                out.push_str(&format!("{name}:  # {src}\n"));
                for v in &e.values {
                    out.push_str(&format!("  - {}\n", scalar(v)));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn closest_key() {
        let keys = ["ring_bytes", "rules", "audit_dir", "no_audit"];
        assert_eq!(closest("rule", keys.iter().copied()), Some("rules"));
        assert_eq!(
            closest("audit-dir", keys.iter().copied()),
            Some("audit_dir")
        );
        assert_eq!(closest("zzzzzzzzzzzzzz", keys.iter().copied()), None);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
