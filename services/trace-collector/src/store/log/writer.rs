//! The writer thread: the only writer of segment files once the store is open. It takes every
//! batch that queued up, writes them with one call, fsyncs once and only then acknowledges each
//! of them (group commit), adds what it committed to the index and starts the next segment when
//! one is full.
//!
//! Separate because it runs on its own thread and owns the file being written: the store only
//! hands it encoded batches through a bounded channel and waits for its answer.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, RwLock};

use helix_core::trace::Event;

use super::index::{Index, Pos};
use super::{pack_end, segment_path};

pub(super) struct Batch {
    pub(super) bytes: Vec<u8>,
    /// (relative offset, length, event) of each record in `bytes`.
    pub(super) records: Vec<(u64, u32, Event)>,
    pub(super) ack: std::sync::mpsc::Sender<Done>,
}

/// The writer's answer to one batch. It hands the batch's buffers back so that the appending
/// thread frees them: memory freed on the writer thread but allocated by another goes back to
/// that thread's malloc arena under its lock, and the two threads then contend on every batch
/// (measured: a fifth of the ingest bench's time went to that lock).
pub(super) struct Done {
    pub(super) result: Result<(), String>,
    _buffers: (Vec<u8>, Vec<(u64, u32, Event)>),
}

pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) segment: u32,
    pub(super) segment_bytes: u64,
    pub(super) segment_traces: usize,
    /// The segment holds `segment_traces` traces: the next commit starts a new one.
    pub(super) full: bool,
    pub(super) commit_delay: std::time::Duration,
    pub(super) queued: Arc<std::sync::atomic::AtomicUsize>,
    pub(super) end: Arc<std::sync::atomic::AtomicU64>,
    pub(super) current: Arc<std::sync::atomic::AtomicU32>,
    pub(super) file: File,
    pub(super) size: u64,
    pub(super) index: Arc<RwLock<Index>>,
    pub(super) sealer: std::sync::mpsc::Sender<u32>,
}

impl Writer {
    pub(super) fn run(mut self, rx: Receiver<Batch>) {
        while let Ok(first) = rx.recv() {
            let mut batches = vec![first];
            while let Ok(more) = rx.try_recv() {
                batches.push(more);
                if batches.len() >= 512 {
                    break;
                }
            }
            if !self.commit_delay.is_zero() {
                std::thread::sleep(self.commit_delay);
            }
            let result = self.commit(&batches);
            let done: usize = batches.iter().map(|b| b.bytes.len()).sum();
            self.queued.fetch_sub(done, std::sync::atomic::Ordering::AcqRel);
            for Batch { bytes, records, ack } in batches {
                let _ = ack.send(Done { result: result.clone(), _buffers: (bytes, records) });
            }
        }
        let _ = self.file.sync_data();
        // a clean shutdown seals the segment being written, so the next start replays nothing
        if self.size > 0 {
            let _ = self.sealer.send(self.segment);
        }
        // the sealer's channel closes with `self`: it finishes what it was given, then stops
    }

    fn commit(&mut self, batches: &[Batch]) -> Result<(), String> {
        if self.size >= self.segment_bytes || self.full {
            self.full = false;
            // a sealer gone (it cannot panic short of a bug) leaves the positions in memory
            let _ = self.sealer.send(self.segment);
            self.segment += 1;
            self.current.store(self.segment, std::sync::atomic::Ordering::Release);
            let path = segment_path(&self.dir, self.segment);
            self.file =
                OpenOptions::new().create(true).append(true).open(&path).map_err(|e| e.to_string())?;
            self.size = 0;
        }
        let start = self.size;
        // one write call; a lone batch (the common case under light load) is written as it is
        let joined;
        let buf: &[u8] = match batches {
            [one] => &one.bytes,
            _ => {
                joined = batches.iter().map(|b| b.bytes.as_slice()).collect::<Vec<&[u8]>>().concat();
                &joined
            }
        };
        if let Err(e) = self.file.write_all(buf).and_then(|()| self.file.sync_data()) {
            // what was partly written is cut at the next open; nothing was acknowledged
            tracing::error!(error = %e, "event log write failed");
            return Err(e.to_string());
        }
        self.size += buf.len() as u64;
        self.end.store(pack_end(self.segment, self.size), std::sync::atomic::Ordering::Release);
        let mut index = self.index.write().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut base = start;
        for b in batches {
            for (rel, len, e) in &b.records {
                index.add(e, self.segment, Pos::of(e, base + rel, *len));
            }
            base += b.bytes.len() as u64;
        }
        self.full = index.live_sums.get(&self.segment).is_some_and(|p| p.traces.len() >= self.segment_traces);
        Ok(())
    }
}
