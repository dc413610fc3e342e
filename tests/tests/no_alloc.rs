//! The evaluate path does not allocate: after one warm-up pass over the corpus (which grows the
//! Matcher's reusable buffers), further passes make zero heap allocations on this thread.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

use guard::{model::Event, rules::Matcher};
use guard_tests::corpus;

struct Counting;

thread_local! {
    static ALLOCS: Cell<usize> = const { Cell::new(0) };
}

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.with(|c| c.set(c.get() + 1));
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn evaluation_makes_no_allocations_after_warmup() {
    let (engine, _) = corpus::engine(&[corpus::falco_rules_path(), corpus::policies_path()], &[]);
    let mut events: Vec<Event> = Vec::new();
    for c in corpus::cases() {
        let text = std::fs::read_to_string(c.path()).expect("trace");
        for line in text.lines() {
            events.push(Event::from_json_line(line).expect("event"));
        }
    }
    // Exercise transformers, evt.arg rendering and val() too.
    let (extra, _) = corpus::engine(
        &[],
        &[(
            "extra.yaml",
            "- rule: x\n  desc: d\n  condition: tolower(proc.name) = bash and evt.arg.newfd = 0 or basename(proc.exepath) = val(proc.name) or len(b64(proc.name)) > 3\n  output: o\n  priority: INFO\n",
        )],
    );
    let mut m = Matcher::default();
    let mut matches = 0;
    for e in &events {
        matches += engine.matches(e, &mut m).len() + extra.matches(e, &mut m).len();
    }
    assert!(
        matches > 50,
        "corpus should match plenty of rules: {matches}"
    );
    let before = ALLOCS.with(Cell::get);
    let mut again = 0;
    for _ in 0..3 {
        for e in &events {
            again += engine.matches(e, &mut m).len() + extra.matches(e, &mut m).len();
        }
    }
    let allocs = ALLOCS.with(Cell::get) - before;
    assert_eq!(again, 3 * matches);
    assert_eq!(allocs, 0, "evaluation allocated {allocs} times");
}

/// The agent's workload summaries (`guard policy learn`): an event whose entry is already in
/// the summary costs no allocation.
#[test]
fn workload_summaries_allocate_only_for_new_entries() {
    let c = r#""container":{"id":"0123456789ab","name":"web-1","image":"busybox"}"#;
    let lines = [
        format!(
            r#"{{"v":1,"type":"execve","time":5,"res":0,"proc":{{"pid":7,"name":"cat","exepath":"/bin/cat"}},{c}}}"#
        ),
        format!(
            r#"{{"v":1,"type":"openat","time":6,"res":3,"args":{{"flags":"O_WRONLY|O_CREAT"}},"proc":{{"pid":7,"name":"cat"}},"fd":{{"type":"file","name":"/tmp/out"}},{c}}}"#
        ),
        format!(
            r#"{{"v":1,"type":"connect","time":7,"res":0,"proc":{{"pid":7,"name":"nc"}},"fd":{{"type":"ipv4","sip":"127.0.0.1","sport":9999,"cip":"127.0.0.1","cport":40000}},{c}}}"#
        ),
        format!(
            r#"{{"v":1,"type":"openat","time":8,"res":3,"args":{{"flags":"O_RDONLY"}},"proc":{{"pid":7,"name":"cat"}},"fd":{{"type":"file","name":"/etc/passwd"}},{c}}}"#
        ),
    ];
    let events: Vec<Event> = lines
        .iter()
        .map(|l| Event::from_json_line(l).expect("event"))
        .collect();
    let mut s = guard::learn::Summaries::new(guard::learn::Sensitive::default());
    for e in &events {
        s.observe(e);
    }
    let before = ALLOCS.with(Cell::get);
    for _ in 0..100 {
        for e in &events {
            s.observe(e);
        }
    }
    let allocs = ALLOCS.with(Cell::get) - before;
    assert_eq!(allocs, 0, "observe allocated {allocs} times");
    let r = s.take();
    assert_eq!(r[0].events, 303, "every summarised event counted: {r:?}");
}
