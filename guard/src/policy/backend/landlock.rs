//! The Landlock ruleset of a policy's `enforce.open` and `enforce.exec` rules (`guard exec`
//! runs a command under it).
//!
//! Landlock only grants: every access right it handles is denied unless a rule grants it
//! beneath some directory. A deny rule is therefore turned into grants on everything *around*
//! the denied path: on each directory from `/` down to it, every sibling entry gets the right,
//! the entry leading to the denied path is descended into, and the denied path gets nothing.
//! Landlock decides on the real file hierarchy, so relative paths, `..` and symlinks do not
//! bypass it. Limits (docs/policies.md): entries created after the start in a directory on the
//! way to a denied path are not granted; symlinks are never granted (their targets are).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use anyhow::{Context, Result, bail};
use landlock::{
    ABI, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreated,
    RulesetCreatedAttr,
};

use super::{Coverage, Level::*, Op, Spec};
use crate::policy::{PathRule, Policy};

pub const SPEC: Spec = Spec {
    name: "landlock",
    when: "`guard exec --policy FILE [--name P] -- CMD`",
    hint: "",
    covers,
};

fn covers(op: Op) -> Coverage {
    let c = Coverage::new;
    match op {
        Op::Exec => c(
            Denied,
            "EACCES (Landlock's errno), exec deny or allow lists, on the real file",
        ),
        Op::OpenRead => c(Denied, "EACCES, deny_read"),
        Op::OpenWrite => c(Denied, "EACCES, deny_write"),
        Op::Truncate => c(
            Denied,
            "EACCES for deny_write paths (Landlock ABI 3, Linux 6.2)",
        ),
        Op::Link => c(
            Denied,
            "EACCES for deny_write paths (EXDEV across directories); under deny_read alone a link in the same directory is made, reads through it are refused",
        ),
        Op::Rename => c(
            Denied,
            "EACCES for deny_write paths (EXDEV across directories); under deny_read alone a rename in the same directory is made, reads of the new name are refused",
        ),
        Op::Connect => c(
            NotCovered,
            "Landlock ABI 3 has no network rights; `guard exec` prints a note",
        ),
        Op::Sendmsg => c(NotCovered, "Landlock ABI 3 has no network rights"),
        Op::NewBinaries => c(NotCovered, "`guard exec` prints a note"),
    }
}

/// The Landlock ABI rulesets are built for.
pub const ABI_WANTED: ABI = ABI::V3;
/// Bound on the number of grants, so a huge tree cannot blow up the ruleset.
const MAX_GRANTS: usize = 20_000;

/// Grants (path -> rights) that give `rights` everywhere except on `denied`.
pub fn grants_around(
    denied: &[PathRule],
    rights: BitFlags<AccessFs>,
    out: &mut BTreeMap<PathBuf, BitFlags<AccessFs>>,
) -> Result<()> {
    if denied.is_empty() {
        return Ok(());
    }
    walk(Path::new("/"), denied, rights, out)
}

fn is_denied(path: &str, denied: &[PathRule]) -> bool {
    denied.iter().any(|d| match d {
        PathRule::Exact(p) => p == path,
        PathRule::Below(p) => format!("{path}/").starts_with(p.as_str()),
    })
}

fn contains_denied(dir: &str, denied: &[PathRule]) -> bool {
    let prefix = if dir == "/" {
        "/".to_owned()
    } else {
        format!("{dir}/")
    };
    denied.iter().any(|d| match d {
        PathRule::Exact(p) | PathRule::Below(p) => p.starts_with(&prefix),
    })
}

fn walk(
    path: &Path,
    denied: &[PathRule],
    rights: BitFlags<AccessFs>,
    out: &mut BTreeMap<PathBuf, BitFlags<AccessFs>>,
) -> Result<()> {
    let s = path.to_string_lossy();
    if is_denied(&s, denied) {
        return Ok(());
    }
    if !contains_denied(&s, denied) {
        if out.len() >= MAX_GRANTS {
            bail!("the policy needs more than {MAX_GRANTS} Landlock rules");
        }
        *out.entry(path.to_path_buf()).or_default() |= rights;
        return Ok(());
    }
    let rd = std::fs::read_dir(path).with_context(|| format!("listing {}", path.display()))?;
    for e in rd.flatten() {
        let Ok(ft) = e.file_type() else { continue };
        if ft.is_symlink() {
            continue;
        }
        walk(&e.path(), denied, rights, out)?;
    }
    Ok(())
}

/// The rule on the real path: Landlock works on the file hierarchy, so a rule naming a path
/// through a symlink (`/bin/true` where `/bin -> usr/bin`) must name its target.
fn canonical(r: &PathRule) -> PathRule {
    let real = |p: &str| {
        std::fs::canonicalize(p)
            .ok()
            .and_then(|c| c.to_str().map(str::to_owned))
    };
    match r {
        PathRule::Exact(p) => PathRule::Exact(real(p).unwrap_or_else(|| p.clone())),
        PathRule::Below(p) => match real(p.trim_end_matches('/')) {
            Some(c) if c == "/" => PathRule::Below(c),
            Some(c) => PathRule::Below(format!("{c}/")),
            None => r.clone(),
        },
    }
}

fn canonical_all(rules: &[PathRule]) -> Vec<PathRule> {
    rules.iter().map(canonical).collect()
}

/// Path -> rights granted beneath it.
pub type Grants = BTreeMap<PathBuf, BitFlags<AccessFs>>;

/// The rights the ruleset handles, and every grant, for `p`.
pub fn ruleset_for(p: &Policy) -> Result<(BitFlags<AccessFs>, Grants)> {
    let write = AccessFs::from_write(ABI_WANTED);
    let read = AccessFs::ReadFile | AccessFs::ReadDir;
    let exec: BitFlags<AccessFs> = AccessFs::Execute.into();
    let mut handled = BitFlags::empty();
    let mut out = BTreeMap::new();
    if !p.open.deny_write.is_empty() {
        handled |= write;
        grants_around(&canonical_all(&p.open.deny_write), write, &mut out)?;
    }
    if !p.open.deny_read.is_empty() {
        handled |= read;
        grants_around(&canonical_all(&p.open.deny_read), read, &mut out)?;
    }
    if let Some(allow) = &p.exec.allow {
        handled |= exec;
        for r in &canonical_all(allow) {
            let path = match r {
                PathRule::Exact(p) => PathBuf::from(p),
                PathRule::Below(p) => PathBuf::from(p.trim_end_matches('/')),
            };
            if path.exists() {
                *out.entry(path).or_default() |= exec;
            }
        }
    } else if !p.exec.deny.is_empty() {
        handled |= exec;
        grants_around(&canonical_all(&p.exec.deny), exec, &mut out)?;
    }
    Ok((handled, out))
}

/// A ruleset handling `handled` with every grant added: a file gets only the rights that
/// apply to files; a path that does not exist (any more) is skipped.
pub fn create_ruleset(
    handled: BitFlags<AccessFs>,
    grants: &Grants,
    abi: ABI,
) -> Result<RulesetCreated> {
    let mut rs = Ruleset::default()
        .handle_access(handled)
        .context("Landlock ruleset")?
        .create()
        .context("creating the Landlock ruleset")?;
    for (path, rights) in grants {
        let Ok(fd) = PathFd::new(path) else { continue };
        let is_dir = std::fs::metadata(path).is_ok_and(|m| m.is_dir());
        let rights = if is_dir {
            *rights
        } else {
            *rights & AccessFs::from_file(abi)
        };
        if rights.is_empty() {
            continue;
        }
        rs = rs
            .add_rule(PathBeneath::new(fd, rights))
            .with_context(|| format!("Landlock rule for {}", path.display()))?;
    }
    Ok(rs)
}
