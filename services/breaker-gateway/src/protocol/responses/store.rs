//! Recent responses, for `previous_response_id`.
//!
//! A client continuing a conversation sends only the new input and the id of the last response;
//! the gateway has to replay the earlier turns to a Chat deployment, which keeps no state. Each
//! stored response keeps only its own turn (its input items and its output) and the id it
//! continued, so a conversation of n turns takes O(n) memory, not O(n²); a lookup walks the
//! chain back. The store is bounded in entries and bytes, oldest out first; a conversation whose
//! earlier turn was evicted can no longer be continued (the client gets a clear 400 and can send
//! the whole conversation instead). Entries belong to a project: another project's id is unknown.
//! Turns are kept serialized (one JSON array each), so the byte bound is what they take, not a
//! fraction of it (a `serde_json::Value` tree is several times its JSON); a lookup parses them
//! back. In memory only: a restart forgets them, as the docs say.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use serde_json::Value;

/// Stored responses at most.
pub const MAX_ENTRIES: usize = 10_000;
/// Bytes of stored items at most (their JSON size).
pub const MAX_BYTES: usize = 64 * 1024 * 1024;
/// Turns followed back at most (a cycle cannot form, but a bound keeps a lookup's cost known).
const MAX_CHAIN: usize = 10_000;

#[derive(Debug)]
struct Entry {
    project: Arc<str>,
    parent: Option<String>,
    /// The turn's items as one JSON array.
    items: Arc<[u8]>,
    bytes: usize,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<String, Entry>,
    order: VecDeque<String>,
    bytes: usize,
}

/// One turn was too large to keep at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreFull;

#[derive(Debug)]
pub struct ResponseStore {
    inner: Mutex<Inner>,
    max_entries: usize,
    max_bytes: usize,
}

impl Default for ResponseStore {
    fn default() -> ResponseStore {
        ResponseStore::new(MAX_ENTRIES, MAX_BYTES)
    }
}

impl ResponseStore {
    pub fn new(max_entries: usize, max_bytes: usize) -> ResponseStore {
        ResponseStore { inner: Mutex::new(Inner::default()), max_entries: max_entries.max(1), max_bytes }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Keeps response `id` of `project`: the turn's `items` (input, then output), continuing
    /// `parent`. Evicts the oldest responses to stay within bounds.
    pub fn put(
        &self,
        project: &str,
        id: &str,
        parent: Option<&str>,
        items: Vec<Value>,
    ) -> Result<(), StoreFull> {
        let json = match serde_json::to_vec(&items) {
            Ok(j) => j,
            Err(_) => return Err(StoreFull),
        };
        let bytes = json.len() + id.len() + parent.map_or(0, str::len) + project.len();
        if bytes > self.max_bytes {
            return Err(StoreFull);
        }
        let mut inner = self.lock();
        while inner.map.len() >= self.max_entries || inner.bytes + bytes > self.max_bytes {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(e) = inner.map.remove(&old) {
                inner.bytes -= e.bytes;
            }
        }
        let entry = Entry {
            project: Arc::from(project),
            parent: parent.map(str::to_owned),
            items: Arc::from(json),
            bytes,
        };
        if let Some(old) = inner.map.insert(id.to_owned(), entry) {
            inner.bytes -= old.bytes;
        } else {
            inner.order.push_back(id.to_owned());
        }
        inner.bytes += bytes;
        Ok(())
    }

    /// Every item of the conversation up to and including response `id` of `project`, oldest
    /// first; `None` when it (or a turn before it) is not stored.
    pub fn conversation(&self, project: &str, id: &str) -> Option<Vec<Value>> {
        let inner = self.lock();
        let mut turns = Vec::new();
        let mut next = Some(id);
        while let Some(id) = next {
            if turns.len() >= MAX_CHAIN {
                return None;
            }
            let e = inner.map.get(id).filter(|e| &*e.project == project)?;
            turns.push(e.items.clone());
            next = e.parent.as_deref();
        }
        drop(inner);
        let mut out = Vec::new();
        for turn in turns.iter().rev() {
            out.extend(serde_json::from_slice::<Vec<Value>>(turn).ok()?);
        }
        Some(out)
    }

    pub fn len(&self) -> usize {
        self.lock().map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
