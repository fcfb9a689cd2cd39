//! The event log's tests, through the store's API and its internals: appends and reads across
//! reopens, sealing, recovery from torn and damaged records, retention, back-pressure, duplicate
//! spans and the formats of previous versions.
//!
//! Separate so that the store's code reads without six hundred lines of tests after it.

use std::collections::HashMap;
use std::io::Write;

use helix_core::trace::SpanStatus;

use super::index::PartialTrace;
use super::sealed::SUM_VERSION;
use super::*;

pub(crate) fn event(trace: u32, span: u32, parent: Option<u32>, start: u64) -> Event {
    serde_json::from_value(serde_json::json!({
        "trace_id": format!("{trace:032x}"),
        "span_id": format!("{span:016x}"),
        "parent_span_id": parent.map(|p| format!("{p:016x}")),
        "name": format!("span {span}"),
        "kind": if parent.is_none() { "run" } else { "tool_call" },
        "start_unix_nanos": start,
        "end_unix_nanos": start + 10,
        "project": "p",
        "phase": "build",
        "attributes": {"helix.cost_usd": 0.25}
    }))
    .expect("event")
}

#[test]
fn appends_reads_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let s = LogStore::open(dir.path()).expect("open");
        s.append(vec![event(1, 1, None, 100), event(1, 2, Some(1), 110)]).expect("append");
        s.append(vec![event(2, 1, None, 200)]).expect("append");
        assert_eq!(s.len(), 3);
        let t = s.trace(&format!("{:032x}", 1)).expect("trace");
        assert_eq!(t.len(), 2);
        assert_eq!(t[0].span_id, format!("{:016x}", 1));
    }
    let s = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(s.len(), 3);
    let list = s.traces(&TraceFilter::default(), None, 10);
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].trace_id, format!("{:032x}", 2), "newest first");
    assert_eq!(list[1].spans, 2);
    assert!((list[1].cost_usd - 0.5).abs() < 1e-9);
    let page =
        s.traces(&TraceFilter::default(), Some((list[0].start_unix_nanos, list[0].trace_id.clone())), 10);
    assert_eq!(page.len(), 1);
}

#[test]
fn a_trace_has_its_root_spans_status_once_the_root_arrived_across_sealed_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
    let with = |mut e: Event, status: SpanStatus| {
        e.status = status;
        e
    };
    let status = |s: &LogStore, filter: &TraceFilter| -> Vec<SpanStatus> {
        s.traces(filter, None, 10).into_iter().map(|t| t.status).collect()
    };
    {
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        // a failed attempt, then many ok spans (sealing segments), no root yet: error
        s.append(vec![with(event(1, 2, Some(1), 100), SpanStatus::Error)]).expect("append");
        for i in 0..30u32 {
            s.append(vec![with(event(1, i + 3, Some(1), 200), SpanStatus::Ok)]).expect("append");
        }
        assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Error]);
        // the run healed it: its root ends ok
        s.append(vec![with(event(1, 1, None, 50), SpanStatus::Ok)]).expect("root");
        assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Ok]);
    }
    let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
    assert_eq!(status(&s, &TraceFilter::default()), [SpanStatus::Ok]);
    let errors = TraceFilter { status: Some(SpanStatus::Error), ..TraceFilter::default() };
    assert!(status(&s, &errors).is_empty(), "a healed run is not listed as failed");
}

#[test]
fn a_segment_ends_at_its_trace_bound_and_a_clean_close_seals_it() {
    let dir = tempfile::tempdir().expect("tmp");
    let few = LogOptions { segment_traces: 10, ..LogOptions::default() };
    {
        let s = LogStore::open_with(dir.path(), few, &mut |_| {}).expect("open");
        for t in 0..35u32 {
            s.append(vec![event(t + 1, 1, None, u64::from(t))]).expect("append");
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.read_index().sealed.len() < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let index = s.read_index();
        assert_eq!(index.sealed.len(), 3, "a new segment every 10 traces");
        assert!(index.live_sums.values().all(|p| p.traces.len() <= 10));
    }
    let mut observed = 0;
    let s = LogStore::open_observed_from(dir.path(), few, Some((u32::MAX, 0)), &mut |_| observed += 1)
        .expect("reopen");
    assert_eq!(s.read_index().sealed.len(), 4, "the last one was sealed at close");
    assert!(s.read_index().live.is_empty(), "nothing replayed");
    assert_eq!(s.len(), 35);
    assert_eq!(s.traces(&TraceFilter::default(), None, 100).len(), 35);
    s.append(vec![event(99, 1, None, 99)]).expect("writing goes on in a new segment");
    assert_eq!(s.summary(&format!("{:032x}", 99)).expect("summary").spans, 1);
    assert_eq!(
        s.append(vec![event(3, 1, None, 2)]).expect("again").duplicates,
        1,
        "sealed spans still count"
    );
}

#[test]
fn torn_tail_is_cut_and_acknowledged_events_kept() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let s = LogStore::open(dir.path()).expect("open");
        s.append(vec![event(1, 1, None, 100), event(1, 2, Some(1), 110)]).expect("append");
    }
    let seg = segment_path(dir.path(), 1);
    let good = std::fs::metadata(&seg).expect("meta").len();
    let mut f = OpenOptions::new().append(true).open(&seg).expect("open");
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"']).expect("torn write");
    drop(f);
    let s = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(s.len(), 2);
    assert_eq!(std::fs::metadata(&seg).expect("meta").len(), good);
    s.append(vec![event(1, 3, Some(1), 120)]).expect("append after recovery");
    drop(s);
    assert_eq!(LogStore::open(dir.path()).expect("reopen").len(), 3);
}

#[test]
fn retention_removes_old_and_excess_segments_but_never_the_current_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = LogStore::open_with(
        dir.path(),
        LogOptions { segment_bytes: 2048, ..LogOptions::default() },
        &mut |_| {},
    )
    .expect("open");
    for t in 1..=20u32 {
        // one trace per batch, times growing with t; each batch ~600 bytes
        s.append(vec![event(t, 1, None, u64::from(t) * 1000), event(t, 2, Some(1), u64::from(t) * 1000 + 1)])
            .expect("append");
    }
    let segments = || std::fs::read_dir(dir.path()).expect("dir").count();
    let before = segments();
    assert!(before >= 4, "{before} segments");
    assert_eq!(s.len(), 40);
    // by age: everything that ended before trace 10's time goes
    let removed = s.retention(Some(10_000), None).expect("retention");
    assert!(removed >= 1);
    assert!(s.trace(&format!("{:032x}", 1)).expect("trace").is_empty(), "old trace gone");
    assert_eq!(s.trace(&format!("{:032x}", 20)).expect("trace").len(), 2, "new trace kept");
    assert!(s.len() < 40);
    // by size: down to about one segment, but the current one stays
    s.retention(None, Some(1)).expect("retention");
    assert!(segments() >= 1);
    assert_eq!(s.trace(&format!("{:032x}", 20)).expect("trace").len(), 2);
    let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
    let stored = s.len() as f64;
    assert!((costs[0].cost_usd - 0.25 * stored).abs() < 1e-9, "cost sums follow what is stored");
    drop(s);
    let reopened = LogStore::open(dir.path()).expect("reopen");
    assert_eq!(reopened.trace(&format!("{:032x}", 20)).expect("trace").len(), 2);
}

#[test]
fn sealed_segments_keep_positions_on_disk_and_a_damaged_index_is_rebuilt() {
    let dir = tempfile::tempdir().expect("tmp");
    let id = |t: u32| format!("{t:032x}");
    let spans_of = |s: &LogStore, t: u32| {
        s.trace(&id(t)).expect("trace").iter().map(|e| e.span_id.clone()).collect::<Vec<_>>()
    };
    let expected: Vec<Vec<String>>;
    {
        let s = LogStore::open_with(
            dir.path(),
            LogOptions { segment_bytes: 4096, ..LogOptions::default() },
            &mut |_| {},
        )
        .expect("open");
        // three long traces interleaved over many segments
        for i in 0..60u32 {
            let batch = (1..=3).map(|t| event(t, i + 2, Some(1), u64::from(1000 + i))).collect();
            s.append(batch).expect("append");
        }
        s.append(vec![event(1, 1, None, 1), event(2, 1, None, 1), event(3, 1, None, 1)]).expect("root");
        // full segments are sealed in the background, and reads work before and after
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while s.read_index().live.len() > 1 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let index = s.read_index();
        assert!(index.sealed.len() >= 3, "{} sealed segments", index.sealed.len());
        assert_eq!(index.live.len(), 1, "only the segment being written keeps positions in memory");
        drop(index);
        expected = (1..=3).map(|t| spans_of(&s, t)).collect();
        assert_eq!(expected[0].len(), 61);
        assert_eq!(s.summary(&id(2)).expect("summary").spans, 61);
    }
    let idx = index_path(dir.path(), 1);
    assert!(idx.exists());
    // damage one index: it is rebuilt from its segment at open, reads stay the same
    let mut bytes = std::fs::read(&idx).expect("read idx");
    bytes[20] ^= 0xff;
    std::fs::write(&idx, &bytes).expect("damage idx");
    let s = LogStore::open_with(
        dir.path(),
        LogOptions { segment_bytes: 4096, ..LogOptions::default() },
        &mut |_| {},
    )
    .expect("reopen");
    for t in 1..=3 {
        assert_eq!(spans_of(&s, t), expected[t as usize - 1]);
    }
    assert_ne!(std::fs::read(&idx).expect("read idx"), bytes, "the damaged index was rewritten");
    assert_eq!(s.read_index().live.len(), 0, "the last segment was sealed at close: nothing replayed");
}

#[test]
fn a_slow_disk_refuses_appends_beyond_the_queue_bound_and_keeps_what_it_acknowledged() {
    let dir = tempfile::tempdir().expect("tmp");
    let options = LogOptions {
        queue_bytes: 8 * 1024,
        commit_delay: std::time::Duration::from_millis(150),
        ..LogOptions::default()
    };
    let s = Arc::new(LogStore::open_with(dir.path(), options, &mut |_| {}).expect("open"));
    let peak = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let threads: Vec<_> = (0..16u32)
        .map(|t| {
            let (s, peak) = (s.clone(), peak.clone());
            std::thread::spawn(move || {
                let batch: Vec<Event> = (0..10).map(|i| event(t + 1, i + 1, None, u64::from(i))).collect();
                let r = s.append(batch);
                peak.fetch_max(
                    s.queued.load(std::sync::atomic::Ordering::Acquire),
                    std::sync::atomic::Ordering::AcqRel,
                );
                r
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().expect("join")).collect();
    let accepted = results.iter().filter(|r| r.is_ok()).count();
    let busy = results.iter().filter(|r| matches!(r, Err(StoreError::Busy))).count();
    assert_eq!(accepted + busy, 16, "{results:?}");
    assert!(busy > 0, "a slow disk must push back");
    assert!(accepted > 0);
    // one batch is ~3.5 KiB: the queue never held much more than its bound
    assert!(peak.load(std::sync::atomic::Ordering::Acquire) <= 8 * 1024 + 4096);
    assert_eq!(s.len(), accepted as u64 * 10);
    drop(s);
    assert_eq!(
        LogStore::open(dir.path()).expect("reopen").len(),
        accepted as u64 * 10,
        "acknowledged = durable"
    );
}

/// The listing over trace tables against a reference computed from every event: traces
/// spread over many segments, spans arriving out of order (a later batch with an earlier
/// start), three projects; every page of a cursor walk, with and without filters, before and
/// after a reopen and after retention.
#[test]
fn the_listing_over_sealed_tables_agrees_with_a_reference_across_pages_filters_and_reopens() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 8192, ..LogOptions::default() };
    let mut rng = 0x2545_f491_4f6c_dd1du64;
    let mut next = |n: u64| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng % n
    };
    let projects = ["alpha", "beta", "gamma"];
    let mut all: Vec<Event> = Vec::new();
    let mut span_no: HashMap<u32, u32> = HashMap::new();
    for _ in 0..120 {
        let batch: Vec<Event> = (0..6)
            .map(|_| {
                let t = next(60) as u32 + 1;
                let n = span_no.entry(t).or_insert(0);
                *n += 1;
                let mut e = event(t, *n, (*n > 1).then_some(1), 10_000 + next(5_000));
                e.project = Some(projects[(t % 3) as usize].to_owned());
                e
            })
            .collect();
        all.extend(batch.iter().cloned());
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        s.append(batch).expect("append");
    }
    // reference: per trace its earliest start, span count and project
    let mut reference: HashMap<String, (u64, u64, String)> = HashMap::new();
    for e in &all {
        let r = reference.entry(e.trace_id.clone()).or_insert((
            u64::MAX,
            0,
            e.project.clone().unwrap_or_default(),
        ));
        r.0 = r.0.min(e.start_unix_nanos);
        r.1 += 1;
    }
    let expected = |project: Option<&str>| {
        let mut v: Vec<(u64, String, u64)> = reference
            .iter()
            .filter(|(_, r)| project.is_none_or(|p| r.2 == p))
            .map(|(id, r)| (r.0, id.clone(), r.1))
            .collect();
        v.sort_by(|a, b| (b.0, &b.1).cmp(&(a.0, &a.1)));
        v
    };
    let walk = |s: &LogStore, project: Option<&str>| {
        let filter = TraceFilter { project: project.map(str::to_owned), ..TraceFilter::default() };
        let mut out = Vec::new();
        let mut after = None;
        loop {
            let page = s.traces(&filter, after.clone(), 7);
            if page.is_empty() {
                break;
            }
            after = page.last().map(|t| (t.start_unix_nanos, t.trace_id.clone()));
            out.extend(page.into_iter().map(|t| (t.start_unix_nanos, t.trace_id, t.spans)));
        }
        out
    };
    let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
    assert!(s.read_index().sealed.len() >= 5, "spread over sealed segments: {}", s.read_index().sealed.len());
    for project in [None, Some("beta")] {
        assert_eq!(walk(&s, project), expected(project), "project {project:?}");
    }
    for (id, r) in &reference {
        let sum = s.summary(id).expect("summary");
        assert_eq!((sum.start_unix_nanos, sum.spans, sum.project.as_deref()), (r.0, r.1, Some(r.2.as_str())));
    }
    drop(s);
    let s =
        LogStore::open_observed_from(dir.path(), small, Some((u32::MAX, 0)), &mut |_| {}).expect("reopen");
    assert_eq!(walk(&s, None), expected(None), "after a reopen from the tables");
    // retention of the oldest segments: the listing shrinks to what is left, nothing breaks
    let before = s.len();
    assert!(s.retention(None, Some(20_000)).expect("retention") > 0);
    assert!(s.len() < before);
    let left = walk(&s, None);
    assert!(!left.is_empty() && left.windows(2).all(|w| (w[0].0, &w[0].1) > (w[1].0, &w[1].1)));
    assert_eq!(left.iter().map(|t| t.2).sum::<u64>(), s.len(), "every event left is in one listed trace");
}

/// A store sealed before trace tables (a `.sum` JSON file per segment) opens without a
/// replay: each summary file becomes a trace table and is removed.
#[test]
fn summary_files_of_the_previous_version_become_trace_tables() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
    let view = |s: &LogStore| {
        let list = s.traces(&TraceFilter::default(), None, 100);
        let spans: Vec<usize> =
            (1..=3).map(|t| s.trace(&format!("{t:032x}")).expect("trace").len()).collect();
        (list, s.costs(crate::costs::GroupBy::Project, None, None, None), spans, s.len())
    };
    let before = {
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        for i in 0..30u32 {
            s.append((1..=3).map(|t| event(t, i + 1, (i > 0).then_some(1), u64::from(100 + i))).collect())
                .expect("append");
        }
        s.close();
        view(&s)
    };
    // what the previous version wrote for segment 1: its summary, no trace table
    let mut index = Index::default();
    let q = helix_wal::Quarantine::open(&dir.path().join("quarantine"));
    replay(&segment_path(dir.path(), 1), 1, &mut index, &q, (u32::MAX, 0), &mut |_| {}).expect("replay");
    let part = index.live_sums[&1].clone();
    let mut traces: Vec<PartialTrace> = part.traces.iter().map(|(k, t)| PartialTrace::of(*k, t)).collect();
    traces.sort_by_key(|p| trace_key(&p.trace_id));
    let sum = SegmentSummary {
        version: SUM_VERSION,
        events: part.events,
        newest_end: part.newest_end,
        traces,
        costs: part.costs.to_cells(),
    };
    std::fs::write(sum_path(dir.path(), 1), serde_json::to_vec(&sum).expect("json")).expect("write");
    std::fs::remove_file(super::super::table::table_path(dir.path(), 1)).expect("remove the table");
    let mut observed = 0;
    let s = LogStore::open_observed_from(dir.path(), small, Some((u32::MAX, 0)), &mut |_| observed += 1)
        .expect("open");
    assert_eq!(observed, 0, "nothing replayed");
    assert_eq!(view(&s), before);
    assert!(TraceTable::open(dir.path(), 1).is_some() && !sum_path(dir.path(), 1).exists());
}

#[test]
fn reopening_reads_sealed_summaries_instead_of_replaying_and_agrees_with_a_full_replay() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 4096, ..LogOptions::default() };
    let end;
    {
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        for i in 0..40u32 {
            let batch = (1..=4).map(|t| event(t, i + 2, Some(1), u64::from(1000 + i))).collect();
            s.append(batch).expect("append");
        }
        s.append((1..=4).map(|t| event(t, 1, None, 5)).collect()).expect("roots");
        end = s.end();
    }
    let view = |s: &LogStore| {
        let list = s.traces(&TraceFilter::default(), None, 100);
        let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
        let spans: Vec<usize> =
            (1..=4).map(|t| s.trace(&format!("{t:032x}")).expect("trace").len()).collect();
        (list, costs, spans, s.len())
    };
    // a full replay (no summaries) is the reference
    let mut observed = 0;
    let full = {
        let s = LogStore::open_with(dir.path(), small, &mut |_| observed += 1).expect("replay");
        view(&s)
    };
    assert_eq!(observed, 164);
    assert_eq!(full.2, [41, 41, 41, 41]);
    // from the saved end: sealed segments come from their summaries, nothing is observed
    let mut observed = 0;
    let fast =
        LogStore::open_observed_from(dir.path(), small, Some(end), &mut |_| observed += 1).expect("open");
    assert_eq!(observed, 0, "nothing stored after the saved position");
    assert_eq!(view(&fast), full);
    drop(fast);
    // a damaged trace table is ignored and rebuilt
    let table = super::super::table::table_path(dir.path(), 2);
    let mut data = std::fs::read(&table).expect("read");
    data[12] ^= 0x10;
    std::fs::write(&table, &data).expect("damage");
    assert!(TraceTable::open(dir.path(), 2).is_none(), "the damage is seen");
    let again = LogStore::open_observed_from(dir.path(), small, Some(end), &mut |_| {}).expect("open");
    assert_eq!(view(&again), full);
    assert!(TraceTable::open(dir.path(), 2).is_some(), "rewritten");
}

#[test]
fn concurrent_appends_share_fsyncs_and_all_land() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Arc::new(LogStore::open(dir.path()).expect("open"));
    let threads: Vec<_> = (0..8u32)
        .map(|t| {
            let s = s.clone();
            std::thread::spawn(move || {
                for i in 0..50u32 {
                    s.append(vec![event(t + 1, i + 1, None, u64::from(i))]).expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    assert_eq!(s.len(), 400);
    assert_eq!(s.trace(&format!("{:032x}", 3)).expect("trace").len(), 50);
}

fn stored_spans(s: &LogStore, traces: u32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for t in 1..=traces {
        for e in s.trace(&format!("{t:032x}")).expect("trace") {
            out.push((t, e.span_id));
        }
    }
    out
}

#[test]
fn every_flipped_byte_of_the_newest_segment_costs_exactly_the_record_it_hit() {
    let dir = tempfile::tempdir().expect("tmp");
    let events: Vec<Event> = (1..=5u32).map(|t| event(t, 1, None, u64::from(t) * 100)).collect();
    {
        let s = LogStore::open(dir.path()).expect("open");
        for e in &events {
            s.append(vec![e.clone()]).expect("append");
        }
    }
    let seg = segment_path(dir.path(), 1);
    let good = std::fs::read(&seg).expect("read");
    let starts: Vec<usize> = helix_wal::Scanner::new(&good, MAX_RECORD)
        .filter_map(|i| match i {
            helix_wal::Item::Record { offset, .. } => Some(offset),
            _ => None,
        })
        .collect();
    assert_eq!(starts.len(), 5);
    for pos in 0..good.len() {
        let hit = starts.iter().rposition(|s| *s <= pos).expect("owner") as u32 + 1;
        let copy = tempfile::tempdir().expect("tmp");
        let mut bad = good.clone();
        bad[pos] ^= 0x10;
        std::fs::write(segment_path(copy.path(), 1), &bad).expect("write");
        let s = LogStore::open(copy.path()).expect("open damaged");
        let expected: Vec<(u32, String)> =
            (1..=5).filter(|t| *t != hit).map(|t| (t, format!("{:016x}", 1))).collect();
        assert_eq!(stored_spans(&s, 5), expected, "byte {pos} (record of trace {hit})");
        assert_eq!(s.len(), 4, "byte {pos}");
        assert_eq!(s.damage().regions, 1, "the damage is reported (byte {pos})");
        // the log goes on after the damage, and the damage is not counted again
        s.append(vec![event(9, 1, None, 900)]).expect("append after damage");
        drop(s);
        let s = LogStore::open(copy.path()).expect("reopen");
        assert_eq!(s.len(), 5, "byte {pos}");
        assert_eq!(s.damage().regions, 1);
    }
}

#[test]
fn a_damaged_record_in_a_sealed_segment_is_never_served() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
    {
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        for i in 0..30u32 {
            s.append(vec![event(1, i + 1, None, u64::from(i))]).expect("append");
        }
    }
    // damage one record's payload in the first (sealed) segment, whose index stays intact
    let seg = segment_path(dir.path(), 1);
    let mut data = std::fs::read(&seg).expect("read");
    assert!(super::super::table::table_path(dir.path(), 1).exists());
    data[helix_wal::HEADER + 20] ^= 0x01;
    std::fs::write(&seg, &data).expect("damage");
    let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
    assert_eq!(s.damage().regions, 0, "a sealed segment is not replayed at open");
    let spans = s.trace(&format!("{:032x}", 1)).expect("trace");
    assert_eq!(spans.len(), 29, "the damaged span is left out");
    assert!(spans.iter().all(|e| e.span_id != format!("{:016x}", 1)));
    assert_eq!(s.damage().regions, 1, "and reported");
    let records = s.trace_records(&format!("{:032x}", 1)).expect("records");
    assert!(records.iter().all(|r| std::str::from_utf8(&r.json).is_ok()));
    // the forwarder's reader skips it too, and goes on to everything after it
    let (all, _) = s.read_from((1, 0), 1000).expect("read_from");
    assert_eq!(all.len(), 29);
}

#[test]
fn a_span_sent_again_is_stored_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let small = LogOptions { segment_bytes: 2048, ..LogOptions::default() };
    let batch: Vec<Event> = (1..=4u32).map(|i| event(1, i, (i > 1).then_some(1), u64::from(i))).collect();
    {
        let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("open");
        assert_eq!(s.append(batch.clone()).expect("first"), Appended { stored: 4, duplicates: 0 });
        assert_eq!(s.append(batch.clone()).expect("again"), Appended { stored: 0, duplicates: 4 });
        // a copy inside one batch, and a batch half old, half new
        let mut mixed = vec![event(1, 5, Some(1), 5), event(1, 5, Some(1), 5)];
        mixed.extend(batch.iter().take(2).cloned());
        assert_eq!(s.append(mixed).expect("mixed"), Appended { stored: 1, duplicates: 3 });
        // push the trace's spans into sealed segments, then send them again
        for i in 0..30u32 {
            s.append(vec![event(2, i + 1, None, 100 + u64::from(i))]).expect("filler");
        }
        assert_eq!(s.append(batch.clone()).expect("sealed"), Appended { stored: 0, duplicates: 4 });
        assert_eq!(s.summary(&format!("{:032x}", 1)).expect("summary").spans, 5);
    }
    let s = LogStore::open_with(dir.path(), small, &mut |_| {}).expect("reopen");
    assert_eq!(s.append(batch).expect("after reopen"), Appended { stored: 0, duplicates: 4 });
    assert_eq!(s.len(), 35);
    let costs = s.costs(crate::costs::GroupBy::Project, None, None, None);
    assert!((costs[0].cost_usd - 0.25 * 35.0).abs() < 1e-9, "cost counts every span once");
}

#[test]
fn concurrent_copies_of_a_batch_are_stored_once() {
    let dir = tempfile::tempdir().expect("tmp");
    let s = Arc::new(LogStore::open(dir.path()).expect("open"));
    let batch: Vec<Event> = (1..=50u32).map(|i| event(7, i, None, u64::from(i))).collect();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let (s, batch) = (s.clone(), batch.clone());
            std::thread::spawn(move || s.append(batch).expect("append"))
        })
        .collect();
    let results: Vec<Appended> = threads.into_iter().map(|t| t.join().expect("join")).collect();
    assert_eq!(results.iter().map(|r| r.stored).sum::<usize>(), 50, "{results:?}");
    assert_eq!(results.iter().map(|r| r.duplicates).sum::<usize>(), 350);
    assert_eq!(s.len(), 50);
}

#[test]
fn a_segment_of_the_previous_format_is_migrated() {
    let dir = tempfile::tempdir().expect("tmp");
    let mut old = Vec::new();
    for t in 1..=3u32 {
        let json = serde_json::to_vec(&event(t, 1, None, 10)).expect("json");
        old.extend_from_slice(&(json.len() as u32).to_le_bytes());
        old.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
        old.extend_from_slice(&json);
    }
    std::fs::write(segment_path(dir.path(), 1), &old).expect("write");
    let s = LogStore::open(dir.path()).expect("open");
    assert_eq!(s.len(), 3);
    assert_eq!(s.damage().regions, 0);
    assert_eq!(stored_spans(&s, 3).len(), 3);
    s.append(vec![event(4, 1, None, 10)]).expect("append");
    drop(s);
    assert_eq!(LogStore::open(dir.path()).expect("reopen").len(), 4);
}
