//! What the mock received: the recorded requests, and the per-request tracker that fills in
//! the body and the outcome as the exchange progresses.

use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::{HeaderMap, Method, Version};
use tokio::sync::Notify;

/// One request as the mock received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    pub method: Method,
    /// Path and query exactly as received (`/v1/chat/completions?x=1`).
    pub path_and_query: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// Exact body bytes. Empty until the whole body arrived; if the body broke off, the
    /// bytes received until then (and `body_complete` stays false).
    pub body: Bytes,
    /// The whole request body arrived.
    pub body_complete: bool,
    /// The response body was fully handed over to the connection. False while in flight, and
    /// false for good if the client went away first (see `finished`).
    pub completed: bool,
    /// The exchange is over: either `completed`, or the client went away (or the connection
    /// was dropped) before the response finished.
    pub finished: bool,
}

impl RecordedRequest {
    /// The path without the query.
    pub fn path(&self) -> &str {
        match self.path_and_query.split_once('?') {
            Some((path, _)) => path,
            None => &self.path_and_query,
        }
    }

    /// The query string without `?`, if any.
    pub fn query(&self) -> Option<&str> {
        self.path_and_query.split_once('?').map(|(_, q)| q)
    }

    /// A header's value as text (the first one if repeated); `None` if absent or not text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// The body parsed as JSON, if it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Recorded requests plus the ids the trackers use to find theirs again after a `clear`.
#[derive(Debug, Default)]
struct Entries {
    next_id: u64,
    ids: Vec<u64>,
    list: Vec<RecordedRequest>,
}

/// The shared record. Never hold its lock across an await.
#[derive(Debug, Default)]
pub(crate) struct Recorder {
    entries: Mutex<Entries>,
    /// Woken at every change, for `wait_until`.
    pub(crate) notify: Notify,
}

impl Recorder {
    fn lock(&self) -> MutexGuard<'_, Entries> {
        // A panic elsewhere cannot leave the entries half-updated in a way that matters here.
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Record a request head; the returned tracker fills in the rest.
    pub(crate) fn start(self: &Arc<Self>, head: RecordedRequest) -> Tracker {
        let id = {
            let mut entries = self.lock();
            let id = entries.next_id;
            entries.next_id += 1;
            entries.ids.push(id);
            entries.list.push(head);
            id
        };
        self.notify.notify_waiters();
        Tracker {
            recorder: Arc::clone(self),
            id,
            done: false,
        }
    }

    fn update(&self, id: u64, f: impl FnOnce(&mut RecordedRequest)) {
        {
            let mut entries = self.lock();
            let Ok(index) = entries.ids.binary_search(&id) else {
                return; // cleared meanwhile
            };
            if let Some(entry) = entries.list.get_mut(index) {
                f(entry);
            }
        }
        self.notify.notify_waiters();
    }

    pub(crate) fn snapshot(&self) -> Vec<RecordedRequest> {
        self.lock().list.clone()
    }

    /// The snapshot if `done` holds for it, checked under the lock.
    pub(crate) fn snapshot_if<F>(&self, done: &F) -> Option<Vec<RecordedRequest>>
    where
        F: Fn(&[RecordedRequest]) -> bool,
    {
        let entries = self.lock();
        done(&entries.list).then(|| entries.list.clone())
    }

    pub(crate) fn len(&self) -> usize {
        self.lock().list.len()
    }

    pub(crate) fn clear(&self) {
        {
            let mut entries = self.lock();
            entries.ids.clear();
            entries.list.clear();
        }
        self.notify.notify_waiters();
    }
}

/// Follows one recorded request. Dropping it before [`Tracker::complete`] marks the exchange
/// finished but not completed: the client or the connection went away.
#[derive(Debug)]
pub(crate) struct Tracker {
    recorder: Arc<Recorder>,
    id: u64,
    done: bool,
}

impl Tracker {
    /// The request body ended: all of it (`complete`) or what arrived before it broke off.
    pub(crate) fn body(&self, body: Bytes, complete: bool) {
        self.recorder.update(self.id, |entry| {
            entry.body = body;
            entry.body_complete = complete;
        });
    }

    /// The response body was fully handed over.
    pub(crate) fn complete(mut self) {
        self.finish(true);
    }

    fn finish(&mut self, completed: bool) {
        if self.done {
            return;
        }
        self.done = true;
        self.recorder.update(self.id, |entry| {
            entry.completed = completed;
            entry.finished = true;
        });
    }
}

impl Drop for Tracker {
    fn drop(&mut self) {
        self.finish(false);
    }
}
