//! Making the paths that syscalls receive absolute and lexically normal.
//!
//! Rules:
//! - Paths are bytes. Linux file names are not text; a lossy conversion before resolution could
//!   merge distinct names. [`to_text`] converts for the rule engine at the very end, replacing
//!   invalid UTF-8 with U+FFFD (`String::from_utf8_lossy`).
//! - A relative path is joined to a base: the process's cwd for `AT_FDCWD`, or the directory the
//!   dirfd refers to. Without a known absolute base the result stays relative and is marked
//!   incomplete, so a rule never mistakes it for an absolute path.
//! - Normalisation is lexical: empty and `.` components are dropped, `..` drops the previous
//!   component, `..` at the root stays at the root, repeated and trailing slashes collapse.
//!
//! Symlinks are NOT resolved. Detection sees the lexical path:
//! - `/tmp/link` (a symlink to `/etc/shadow`) stays `/tmp/link`;
//! - `/tmp/dirlink/../x` becomes `/tmp/x`, while the kernel follows `dirlink` first and opens
//!   `<target of dirlink>/../x`.
//!
//! This is the documented limit for detection: resolving symlinks here would need the target
//! process's mount namespace and root, and would race with the syscall anyway. Kernel
//! enforcement (LSM) decides on the real inode, so a symlink cannot bypass a deny there.
//! The same holds for the kernel's own `//` and `/proc/self/...` magic links.

/// The longest path the kernel accepts, including the terminating NUL.
pub const PATH_MAX: usize = 4096;

/// A path made absolute (when a base was known) and lexically normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub path: Vec<u8>,
    /// The path is absolute. False when it was relative and no absolute base was known.
    pub absolute: bool,
    /// The result is longer than PATH_MAX; the kernel would have failed with ENAMETOOLONG.
    pub too_long: bool,
}

impl Resolved {
    pub fn text(&self) -> String {
        to_text(&self.path)
    }
}

/// Converts path bytes to text for rules and output: invalid UTF-8 becomes U+FFFD.
pub fn to_text(path: &[u8]) -> String {
    String::from_utf8_lossy(path).into_owned()
}

/// Normalises `path` lexically. An absolute path stays absolute; a relative one stays relative
/// (leading `..` that cannot be resolved are kept). Never fails.
pub fn normalize(path: &[u8]) -> Vec<u8> {
    let absolute = path.first() == Some(&b'/');
    // Slices into `path`; at most one per component, so bounded by the input.
    let mut parts: Vec<&[u8]> = Vec::new();
    for comp in path.split(|&b| b == b'/') {
        match comp {
            b"" | b"." => {}
            b".." => match parts.last() {
                Some(&last) if last != b".." => {
                    parts.pop();
                }
                // `/..` is `/`.
                _ if absolute => {}
                _ => parts.push(comp),
            },
            _ => parts.push(comp),
        }
    }
    let mut out = Vec::with_capacity(path.len().min(PATH_MAX) + 1);
    if absolute {
        out.push(b'/');
    }
    for (i, comp) in parts.iter().enumerate() {
        if i > 0 {
            out.push(b'/');
        }
        out.extend_from_slice(comp);
    }
    if out.is_empty() {
        // A relative path that normalised to nothing is the base itself.
        out.push(b'.');
    }
    out
}

/// Resolves `path` against `base` (the cwd, or the dirfd's directory).
///
/// - `path` absolute: `base` is ignored.
/// - `path` empty: the base itself (the `AT_EMPTY_PATH` case; without that flag the kernel
///   fails with ENOENT, and the event's result says so).
/// - `base` missing or relative: the result is relative and `absolute` is false.
pub fn resolve(base: Option<&[u8]>, path: &[u8]) -> Resolved {
    let joined: Vec<u8>;
    let input: &[u8] = if path.first() == Some(&b'/') {
        path
    } else {
        match base {
            Some(base) if base.first() == Some(&b'/') => {
                let mut j = Vec::with_capacity(base.len() + 1 + path.len());
                j.extend_from_slice(base);
                j.push(b'/');
                j.extend_from_slice(path);
                joined = j;
                &joined
            }
            _ => path,
        }
    };
    let path = normalize(input);
    Resolved {
        absolute: path.first() == Some(&b'/'),
        too_long: path.len() >= PATH_MAX,
        path,
    }
}

/// Splits a normalised absolute path into (directory, file name), as Falco's `fd.directory`
/// and `fd.filename`. The root is (`/`, ``).
pub fn split_dir_file(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(0) => (&path[..1], &path[1..]),
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(base: Option<&str>, path: &str) -> String {
        resolve(base.map(str::as_bytes), path.as_bytes()).text()
    }

    #[test]
    fn normalisation_table() {
        let cases: &[(Option<&str>, &str, &str)] = &[
            // `cd /etc && cat shadow`
            (Some("/etc"), "shadow", "/etc/shadow"),
            // `cat /tmp/../etc/shadow`
            (Some("/home/u"), "/tmp/../etc/shadow", "/etc/shadow"),
            (Some("/tmp"), "../etc/shadow", "/etc/shadow"),
            (Some("/tmp"), "./a/./b/", "/tmp/a/b"),
            (Some("/"), "../../../../etc/passwd", "/etc/passwd"),
            (None, "/..", "/"),
            (None, "/", "/"),
            (None, "//etc///shadow//", "/etc/shadow"),
            (None, "/etc/./shadow/.", "/etc/shadow"),
            (None, "/a/b/../../..", "/"),
            (Some("/etc/"), "", "/etc"),
            (Some("/a/b"), "..", "/a"),
            (Some("/a/b"), ".", "/a/b"),
            (Some("/usr/lib/../bin"), "sh", "/usr/bin/sh"),
            // Base unknown or relative: stays relative, `..` kept.
            (None, "shadow", "shadow"),
            (None, "../x/./y", "../x/y"),
            (None, "a/../..", ".."),
            (None, "a/..", "."),
            (Some("rel/dir"), "x", "x"),
            (None, "", "."),
        ];
        for (base, path, want) in cases {
            assert_eq!(r(*base, path), *want, "base {base:?} path {path:?}");
        }
    }

    #[test]
    fn absolute_flag() {
        assert!(resolve(Some(b"/etc"), b"shadow").absolute);
        assert!(!resolve(None, b"shadow").absolute);
        assert!(resolve(None, b"/x").absolute);
    }

    #[test]
    fn non_utf8_bytes_are_kept_until_text() {
        let got = resolve(Some(b"/tmp/\xff\xfe"), b"../\xc3(x");
        assert_eq!(got.path, b"/tmp/\xc3(x");
        assert_eq!(got.text(), "/tmp/\u{fffd}(x");
    }

    #[test]
    fn path_max_lengths_do_not_panic() {
        let comp = "a".repeat(255);
        let long: String = std::iter::repeat_n(comp.as_str(), 16)
            .collect::<Vec<_>>()
            .join("/");
        let got = resolve(Some(b"/"), long.as_bytes());
        assert!(got.too_long);
        assert_eq!(got.path.len(), 1 + long.len());
        // Just under PATH_MAX.
        let fits = format!("/{}", "b".repeat(PATH_MAX - 2));
        let got = resolve(None, fits.as_bytes());
        assert!(!got.too_long);
        // Pathological inputs: many `..` and many slashes.
        let dots = "../".repeat(100_000);
        assert_eq!(r(Some("/x"), &dots), "/");
        let slashes = "/".repeat(100_000);
        assert_eq!(r(None, &slashes), "/");
    }

    #[test]
    fn split_dir_file_cases() {
        assert_eq!(
            split_dir_file(b"/etc/shadow"),
            (&b"/etc"[..], &b"shadow"[..])
        );
        assert_eq!(split_dir_file(b"/shadow"), (&b"/"[..], &b"shadow"[..]));
        assert_eq!(split_dir_file(b"/"), (&b"/"[..], &b""[..]));
        assert_eq!(split_dir_file(b"x"), (&b""[..], &b"x"[..]));
    }

    /// Shows the documented symlink limit against the real filesystem: the lexical result and
    /// the file the kernel opens differ, and the test pins both.
    #[test]
    fn symlinks_are_not_resolved() {
        let dir = std::env::temp_dir().join(format!("guard-path-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let real = dir.join("real/sub");
        std::fs::create_dir_all(&real).expect("mkdir");
        std::fs::write(dir.join("real/secret"), b"s").expect("write");
        std::os::unix::fs::symlink(&real, dir.join("dirlink")).expect("symlink");
        std::os::unix::fs::symlink(dir.join("real/secret"), dir.join("filelink")).expect("symlink");
        let base = dir.to_str().expect("utf-8 temp dir");

        // A file symlink: detection sees the link's own path, not its target.
        assert_eq!(r(Some(base), "filelink"), format!("{base}/filelink"));

        // `..` after a directory symlink: lexically `<dir>/secret`, which does not exist;
        // the kernel follows the link and reaches `<dir>/real/secret`.
        let lexical = r(Some(base), "dirlink/../secret");
        assert_eq!(lexical, format!("{base}/secret"));
        assert!(!std::path::Path::new(&lexical).exists());
        let kernel = std::fs::canonicalize(dir.join("dirlink/../secret")).expect("kernel path");
        assert_eq!(
            kernel,
            std::fs::canonicalize(dir.join("real/secret")).expect("real")
        );

        let _ = std::fs::remove_dir_all(&dir);
    }
}
