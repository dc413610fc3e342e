//! A small reader for the kernel's BTF (`/sys/kernel/btf/vmlinux`): enough to find the byte
//! offset of a struct member, including members of anonymous nested structs and unions.
//!
//! Rust eBPF gets no CO-RE relocations, so every kernel struct offset a program needs is looked
//! up here at start and passed to the programs as a load-time constant.
//!
//! The running kernel's BTF is parsed at most once per process by each of the two parsers
//! guard uses: [`kernel`] (this index, for the offsets) and [`kernel_aya`] (aya's, to load LSM
//! programs; exec, policy, self-protection and quarantine share it). aya keeps its parsed
//! types private, so the offsets cannot be read from its parse; and aya 0.14's
//! `EbpfLoader::new()` parses the kernel's BTF once more on its own, which guard cannot avoid.

use std::{collections::HashMap, sync::OnceLock};

/// Where the running kernel exposes its BTF.
pub const VMLINUX: &str = "/sys/kernel/btf/vmlinux";

const MAGIC: u16 = 0xeb9f;
const KIND_STRUCT: u32 = 4;
const KIND_UNION: u32 = 5;
const KIND_FUNC: u32 = 12;

#[derive(Debug, thiserror::Error)]
pub enum BtfError {
    #[error("cannot read BTF from {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("malformed BTF: {0}")]
    Malformed(&'static str),
    #[error("BTF has no struct `{0}`")]
    NoStruct(String),
    #[error("struct `{0}` has no member `{1}` in this kernel's BTF")]
    NoMember(String, String),
    #[error("aya cannot parse BTF: {0}")]
    Aya(#[from] aya::BtfError),
}

/// The running kernel's BTF as the offset index, read from [`VMLINUX`] on first use and kept
/// for the process.
pub fn kernel() -> Result<&'static Btf, &'static BtfError> {
    static BTF: OnceLock<Result<Btf, BtfError>> = OnceLock::new();
    BTF.get_or_init(|| {
        let data = std::fs::read(VMLINUX).map_err(|source| BtfError::Read {
            path: VMLINUX.to_owned(),
            source,
        })?;
        Btf::parse(&data)
    })
    .as_ref()
}

/// The running kernel's BTF as aya parses it (needed to load LSM programs), parsed on first
/// use and kept for the process.
pub fn kernel_aya() -> Result<&'static aya::Btf, &'static BtfError> {
    static BTF: OnceLock<Result<aya::Btf, BtfError>> = OnceLock::new();
    BTF.get_or_init(|| Ok(aya::Btf::from_sys_fs()?)).as_ref()
}

#[derive(Debug, Clone, Copy)]
struct Member {
    name_off: u32,
    type_id: u32,
    bit_offset: u32,
}

#[derive(Debug, Clone)]
enum Type {
    Composite {
        members: Vec<Member>,
        size: u32,
    },
    /// A function (`BTF_KIND_FUNC`): its name, for a kfunc call's id.
    Func {
        name_off: u32,
    },
    Other,
}

/// Parsed type section: composites keep their members; names index the structs.
pub struct Btf {
    types: Vec<Type>,
    strings: Vec<u8>,
    structs_by_name: HashMap<String, u32>,
}

impl Btf {
    /// Parses raw BTF. Bounds-checked throughout: bad input yields an error, never a panic.
    pub fn parse(data: &[u8]) -> Result<Self, BtfError> {
        let rd16 = |o: usize| -> Result<u16, BtfError> {
            data.get(o..o + 2)
                .map(|b| u16::from_le_bytes([b[0], b[1]]))
                .ok_or(BtfError::Malformed("short header"))
        };
        let rd32 = |o: usize| -> Result<u32, BtfError> {
            data.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Malformed("short header"))
        };
        if rd16(0)? != MAGIC {
            return Err(BtfError::Malformed("bad magic (not little-endian BTF)"));
        }
        let hdr_len = rd32(4)? as usize;
        let type_off = rd32(8)? as usize;
        let type_len = rd32(12)? as usize;
        let str_off = rd32(16)? as usize;
        let str_len = rd32(20)? as usize;
        let tstart = hdr_len
            .checked_add(type_off)
            .ok_or(BtfError::Malformed("type section offset overflows"))?;
        let tend = tstart
            .checked_add(type_len)
            .ok_or(BtfError::Malformed("type section length overflows"))?;
        let sstart = hdr_len
            .checked_add(str_off)
            .ok_or(BtfError::Malformed("string section offset overflows"))?;
        let send = sstart
            .checked_add(str_len)
            .ok_or(BtfError::Malformed("string section length overflows"))?;
        let tsec = data
            .get(tstart..tend)
            .ok_or(BtfError::Malformed("type section out of bounds"))?;
        let strings = data
            .get(sstart..send)
            .ok_or(BtfError::Malformed("string section out of bounds"))?
            .to_vec();

        let t32 = |o: usize| -> Result<u32, BtfError> {
            tsec.get(o..o + 4)
                .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .ok_or(BtfError::Malformed("type record runs past the section"))
        };

        // Type id 0 is void.
        let mut types = vec![Type::Other];
        let mut structs_by_name = HashMap::new();
        let mut pos = 0usize;
        while pos < tsec.len() {
            let name_off = t32(pos)?;
            let info = t32(pos + 4)?;
            pos += 12;
            let vlen = (info & 0xffff) as usize;
            let kind = (info >> 24) & 0x1f;
            let kind_flag = info >> 31 == 1;
            let extra = match kind {
                1 | 14 | 17 => 4,     // int, var, decl_tag
                3 => 12,              // array
                4 | 5 => 12 * vlen,   // struct, union
                6 | 13 => 8 * vlen,   // enum, func_proto
                15 | 19 => 12 * vlen, // datasec, enum64
                2 | 7..=12 | 16 | 18 => 0,
                _ => return Err(BtfError::Malformed("unknown type kind")),
            };
            let size = t32(pos - 4)?;
            let ty = if kind == KIND_STRUCT || kind == KIND_UNION {
                let mut members = Vec::with_capacity(vlen);
                for i in 0..vlen {
                    let m = pos + 12 * i;
                    let raw_off = t32(m + 8)?;
                    members.push(Member {
                        name_off: t32(m)?,
                        type_id: t32(m + 4)?,
                        bit_offset: if kind_flag {
                            raw_off & 0x00ff_ffff
                        } else {
                            raw_off
                        },
                    });
                }
                if name_off != 0
                    && let Some(name) = cstr_at(&strings, name_off)
                {
                    // Keep the first definition; duplicates are identical in vmlinux BTF.
                    structs_by_name
                        .entry(name.to_owned())
                        .or_insert(types.len() as u32);
                }
                Type::Composite { members, size }
            } else if kind == KIND_FUNC {
                // Not indexed: vmlinux has tens of thousands, and one is ever asked for.
                Type::Func { name_off }
            } else {
                Type::Other
            };
            if tsec.len() - pos < extra {
                return Err(BtfError::Malformed("type record runs past the section"));
            }
            pos += extra;
            types.push(ty);
        }
        Ok(Self {
            types,
            strings,
            structs_by_name,
        })
    }

    /// Byte offset of `member` in `struct name` (searching anonymous members too).
    pub fn member_offset(&self, name: &str, member: &str) -> Result<u32, BtfError> {
        let id = *self
            .structs_by_name
            .get(name)
            .ok_or_else(|| BtfError::NoStruct(name.to_owned()))?;
        self.find_in(id, member, 0)
            .map(|bits| bits / 8)
            .ok_or_else(|| BtfError::NoMember(name.to_owned(), member.to_owned()))
    }

    /// Like `member_offset`, but `None` when the struct or member does not exist.
    pub fn member_offset_opt(&self, name: &str, member: &str) -> Option<u32> {
        self.member_offset(name, member).ok()
    }

    /// The type id of `struct name`, if the kernel has one.
    pub fn struct_id(&self, name: &str) -> Option<u32> {
        self.structs_by_name.get(name).copied()
    }

    /// The type id of function `name` (a kfunc's, for a call to it), if the BTF has one.
    pub fn func_id(&self, name: &str) -> Option<u32> {
        self.types.iter().position(|t| {
            matches!(t, Type::Func { name_off } if cstr_at(&self.strings, *name_off) == Some(name))
        }).map(|i| i as u32)
    }

    /// Bytes from member `member` of `struct name` (a direct member) to the next member, or
    /// to the struct's end for the last: the room the member has.
    pub fn member_span_opt(&self, name: &str, member: &str) -> Option<u32> {
        let Type::Composite { members, size } =
            self.types.get(*self.structs_by_name.get(name)? as usize)?
        else {
            return None;
        };
        let i = members
            .iter()
            .position(|m| cstr_at(&self.strings, m.name_off) == Some(member))?;
        let end = members.get(i + 1).map_or(*size * 8, |next| next.bit_offset);
        end.checked_sub(members[i].bit_offset).map(|bits| bits / 8)
    }

    /// Size in bytes of `struct name` (the stride of an array of them); `None` when absent.
    pub fn struct_size_opt(&self, name: &str) -> Option<u32> {
        match self.types.get(*self.structs_by_name.get(name)? as usize)? {
            Type::Composite { size, .. } => Some(*size),
            Type::Func { .. } | Type::Other => None,
        }
    }

    fn find_in(&self, id: u32, member: &str, depth: u32) -> Option<u32> {
        // Anonymous nesting in vmlinux is shallow; the bound stops cycles in hostile input.
        if depth > 16 {
            return None;
        }
        let Type::Composite { members, .. } = self.types.get(id as usize)? else {
            return None;
        };
        for m in members {
            if m.name_off == 0 {
                if let Some(inner) = self.resolve_composite(m.type_id)
                    && let Some(off) = self.find_in(inner, member, depth + 1)
                {
                    return Some(m.bit_offset + off);
                }
            } else if cstr_at(&self.strings, m.name_off) == Some(member) {
                return Some(m.bit_offset);
            }
        }
        None
    }

    /// Anonymous members are referenced directly, but allow a few modifiers in between.
    fn resolve_composite(&self, id: u32) -> Option<u32> {
        match self.types.get(id as usize)? {
            Type::Composite { .. } => Some(id),
            Type::Func { .. } | Type::Other => None,
        }
    }
}

fn cstr_at(strings: &[u8], off: u32) -> Option<&str> {
    let tail = strings.get(off as usize..)?;
    let end = tail.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&tail[..end]).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds a tiny BTF blob: `struct outer { int a; union { int b; }; }` with b at byte 8.
    fn sample() -> Vec<u8> {
        let strings = b"\0outer\0a\0b\0int\0".to_vec();
        let mut types = Vec::new();
        let push = |v: &mut Vec<u8>, x: u32| v.extend_from_slice(&x.to_le_bytes());
        // [1] int
        push(&mut types, 11);
        push(&mut types, 1 << 24);
        push(&mut types, 4);
        push(&mut types, 32);
        // [2] anonymous union { b @ 0 }
        push(&mut types, 0);
        push(&mut types, (5 << 24) | 1);
        push(&mut types, 4);
        push(&mut types, 9);
        push(&mut types, 1);
        push(&mut types, 0);
        // [3] struct outer { a @ 0, <anon> @ 64 bits }
        push(&mut types, 1);
        push(&mut types, (4 << 24) | 2);
        push(&mut types, 12);
        push(&mut types, 7);
        push(&mut types, 1);
        push(&mut types, 0);
        push(&mut types, 0);
        push(&mut types, 2);
        push(&mut types, 64);
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC.to_le_bytes());
        out.push(1);
        out.push(0);
        push(&mut out, 24);
        push(&mut out, 0);
        push(&mut out, types.len() as u32);
        push(&mut out, types.len() as u32);
        push(&mut out, strings.len() as u32);
        out.extend_from_slice(&types);
        out.extend_from_slice(&strings);
        out
    }

    #[test]
    fn finds_direct_and_anonymous_members() {
        let btf = Btf::parse(&sample()).expect("parse");
        assert_eq!(btf.member_offset("outer", "a").expect("a"), 0);
        assert_eq!(btf.member_offset("outer", "b").expect("b"), 8);
        assert!(matches!(
            btf.member_offset("outer", "zz"),
            Err(BtfError::NoMember(_, _))
        ));
        assert!(matches!(
            btf.member_offset("nope", "a"),
            Err(BtfError::NoStruct(_))
        ));
        assert_eq!(btf.struct_size_opt("outer"), Some(12));
        assert_eq!(btf.struct_size_opt("nope"), None);
        // `a` has the bytes up to the union at 8; an anonymous member has no name to ask by.
        assert_eq!(btf.member_span_opt("outer", "a"), Some(8));
        assert_eq!(btf.member_span_opt("outer", "b"), None);
        assert_eq!(btf.struct_id("outer"), Some(3));
        assert_eq!(btf.func_id("outer"), None);
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let full = sample();
        for cut in 0..full.len() {
            let _ = Btf::parse(&full[..cut]);
        }
        assert!(Btf::parse(&full[..10]).is_err());
    }

    #[test]
    fn running_kernel_task_struct_offsets() {
        let btf = match kernel() {
            Ok(k) => k,
            Err(e) => {
                // No kernel BTF is possible in a build sandbox; the VM and host layers cover it.
                assert!(!std::path::Path::new(VMLINUX).exists(), "{e}");
                return;
            }
        };
        let tgid = btf.member_offset("task_struct", "tgid").expect("tgid");
        let pid = btf.member_offset("task_struct", "pid").expect("pid");
        assert_eq!(tgid, pid + 4, "pid and tgid are adjacent pid_t fields");
        // struct upid { int nr; struct pid_namespace *ns; }: 16 bytes on 64-bit.
        assert_eq!(btf.struct_size_opt("upid"), Some(16));
        assert_eq!(btf.member_offset_opt("upid", "ns"), Some(8));
        // Parsed once: a second call returns the same index.
        assert!(std::ptr::eq(kernel().expect("cached"), btf));
        // aya's parse, shared the same way, knows the hook an LSM program attaches to.
        let aya = kernel_aya().expect("aya parse");
        assert!(std::ptr::eq(kernel_aya().expect("cached"), aya));
        aya.id_by_type_name_kind("bpf_lsm_file_open", aya_obj::btf::BtfKind::Func)
            .expect("bpf_lsm_file_open in aya's parse");
        // The type ids the typed walk casts to, and the kfunc it calls, as aya reads them.
        for s in ["dentry", "file", "mount"] {
            let id = aya.id_by_type_name_kind(s, aya_obj::btf::BtfKind::Struct);
            assert_eq!(btf.struct_id(s), id.ok(), "struct {s}");
        }
        let cast = aya.id_by_type_name_kind("bpf_rdonly_cast", aya_obj::btf::BtfKind::Func);
        assert_eq!(btf.func_id("bpf_rdonly_cast"), cast.ok());
        // A short name's room: 32 bytes before Linux 6.14 (`d_iname`), 40 since (`d_shortname`).
        let span = btf
            .member_span_opt("dentry", "d_shortname")
            .or_else(|| btf.member_span_opt("dentry", "d_iname"));
        assert!(matches!(span, Some(32 | 40)), "{span:?}");
    }
}
