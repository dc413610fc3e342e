//! Userspace decode cost per event: ring-buffer records of the common kinds into typed events.
//! Run: cargo bench -p guard --bench decode

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use guard::events::{Clock, decode};
use guard_ebpf::{EventHeader, EventKind, ExecBody, SyscallBody, syscalls as sc};

fn as_bytes<T>(v: &T) -> &[u8] {
    // SAFETY: viewing a plain repr(C) value as bytes.
    unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }
}

fn record<B>(kind: EventKind, body: &B, p0: &[u8], p1: &[u8]) -> Vec<u8> {
    // SAFETY: all-zero is a valid header.
    let mut h: EventHeader = unsafe { std::mem::zeroed() };
    h.kind = kind as u16;
    h.pid = 1234;
    h.tid = 1234;
    h.cgroup_id = 4242;
    h.comm[..4].copy_from_slice(b"nginx"[..4].as_ref());
    h.body_len = size_of::<B>() as u32;
    h.len0 = p0.len() as u16;
    h.len1 = p1.len() as u16;
    let mut v = as_bytes(&h).to_vec();
    v.extend_from_slice(as_bytes(body));
    v.extend_from_slice(p0);
    v.extend_from_slice(p1);
    v
}

fn bench(c: &mut Criterion) {
    let open = record(
        EventKind::Syscall,
        &SyscallBody {
            nr: sc::OPENAT,
            _pad: 0,
            args: [u64::MAX - 99, 0, 0o2101, 0o644, 0, 0],
        },
        b"/var/lib/app/data/segment-000123.log",
        b"",
    );
    let mut sa = vec![2u8, 0, 0x1f, 0x90, 127, 0, 0, 1];
    sa.resize(16, 0);
    let connect = record(
        EventKind::Syscall,
        &SyscallBody {
            nr: sc::CONNECT,
            _pad: 0,
            args: [3, 0, 16, 0, 0, 0],
        },
        &sa,
        b"",
    );
    let exec = record(
        EventKind::Exec,
        &ExecBody {
            args_total: 40,
            ..ExecBody::default()
        },
        b"/usr/bin/curl",
        b"curl\0-s\0http://127.0.0.1:8080/health\0",
    );
    let clock = Clock::with_offset(0);
    let mut g = c.benchmark_group("decode");
    g.throughput(Throughput::Elements(1));
    for (name, rec) in [("openat", &open), ("connect", &connect), ("exec", &exec)] {
        g.bench_function(name, |b| {
            b.iter(|| decode(std::hint::black_box(rec), &clock))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
