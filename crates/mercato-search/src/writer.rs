//! The single writer: a dedicated thread that owns the `IndexWriter` and turns concurrent write
//! calls into few commits.
//!
//! Why: a Tantivy commit flushes a segment and fsyncs, and each commit leaves a segment for the
//! merger; one commit per product update would melt under a bulk price change. Callers instead
//! queue operations; the thread applies everything that arrived, commits at most once per
//! [`COMMIT_INTERVAL`], reloads the reader and only then answers every caller of that commit, so
//! "visible when the call returns" holds without a commit per call. The same shape as the SQLite
//! commit groups in `mercato-platform`.
//!
//! A plain thread, not a tokio task, because every step (indexing, commit, fsync) blocks.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::Receiver;
use std::time::{Duration, Instant};

use mercato_core::Error;
use tantivy::{IndexReader, IndexWriter, Term};
use tokio::sync::oneshot;

use crate::SearchDoc;
use crate::analysis;
use crate::schema::{self, Fields};

/// Minimum time between two commits. The first write after a quiet period commits at once;
/// under load, writes arriving within the interval share the next commit.
pub(crate) const COMMIT_INTERVAL: Duration = Duration::from_millis(50);

/// Bounds one commit's work (and the wait of its first caller) under a flood of writes.
const MAX_BATCH: usize = 10_000;

pub(crate) enum Op {
    Upsert(Vec<SearchDoc>),
    Delete(Vec<i64>),
    Clear,
}

pub(crate) type Reply = oneshot::Sender<Result<(), Error>>;

pub(crate) struct Request {
    pub op: Op,
    pub reply: Reply,
}

/// A caller waiting for the next commit, with the error its own operation hit, if any.
type Waiting = (Reply, Option<Error>);

pub(crate) struct Writer {
    pub writer: IndexWriter,
    pub reader: IndexReader,
    pub fields: Fields,
    pub commits: Arc<AtomicU64>,
}

impl Writer {
    pub(crate) fn run(mut self, rx: Receiver<Request>) {
        let mut last_commit: Option<Instant> = None;
        while let Ok(first) = rx.recv() {
            let mut batch = vec![first];
            let deadline = last_commit.map(|t| t + COMMIT_INTERVAL);
            while batch.len() < MAX_BATCH {
                let next = match deadline {
                    Some(d) if d > Instant::now() => {
                        rx.recv_timeout(d.saturating_duration_since(Instant::now())).map_err(|_| ())
                    }
                    _ => rx.try_recv().map_err(|_| ()),
                };
                // Err: the interval is over, nothing more is queued, or every sender is gone;
                // in each case commit what we have (the outer `recv` notices a shutdown).
                match next {
                    Ok(request) => batch.push(request),
                    Err(()) => break,
                }
            }
            self.process(batch);
            last_commit = Some(Instant::now());
        }
        // Let running merges finish so the next open of this directory finds a tidy index.
        if let Err(e) = self.writer.wait_merging_threads() {
            tracing::warn!(error = %e, "search index merge threads did not finish cleanly");
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let started = Instant::now();
        let ops = batch.len();
        let mut plain = analysis::plain();
        // Replies wait for the commit that contains their change.
        let mut pending: Vec<Waiting> = Vec::with_capacity(batch.len());
        let mut dirty = false;
        for Request { op, reply } in batch {
            match op {
                Op::Clear => {
                    // `delete_all_documents` drops committed segments only; commit what came
                    // before so the clear is ordered after it, and make the clear durable by itself.
                    if dirty {
                        self.commit(&mut pending);
                        dirty = false;
                    }
                    let result = self.writer.delete_all_documents().map(|_| ()).map_err(|e| internal("clear", e));
                    pending.push((reply, result.err()));
                    self.commit(&mut pending);
                }
                Op::Upsert(docs) => {
                    let mut failure = None;
                    for d in &docs {
                        self.writer.delete_term(Term::from_field_i64(self.fields.id, d.id));
                        if let Err(e) = self.writer.add_document(schema::to_document(&self.fields, &mut plain, d)) {
                            failure = Some(internal("add document", e));
                            break;
                        }
                    }
                    pending.push((reply, failure));
                    dirty = true;
                }
                Op::Delete(ids) => {
                    for id in ids {
                        self.writer.delete_term(Term::from_field_i64(self.fields.id, id));
                    }
                    pending.push((reply, None));
                    dirty = true;
                }
            }
        }
        if dirty {
            self.commit(&mut pending);
        }
        tracing::debug!(ops, elapsed_ms = started.elapsed().as_millis() as u64, "search index batch committed");
    }

    /// Commits, reloads the reader and answers everyone waiting.
    fn commit(&mut self, pending: &mut Vec<Waiting>) {
        let outcome = match self.writer.commit() {
            Ok(_) => {
                self.commits.fetch_add(1, Ordering::Relaxed);
                self.reader.reload().map_err(|e| internal("reload the search reader", e))
            }
            Err(e) => {
                let err = internal("commit the search index", e);
                tracing::error!(error = %err, "search index commit failed; rolling back the batch");
                if let Err(e) = self.writer.rollback() {
                    tracing::error!(error = %e, "search index rollback failed");
                }
                Err(err)
            }
        };
        for (reply, own_error) in pending.drain(..) {
            let result = match (own_error, &outcome) {
                (Some(e), _) => Err(e),
                (None, Err(e)) => Err(e.clone()),
                (None, Ok(())) => Ok(()),
            };
            // The caller may have gone away (request cancelled); its change is committed anyway.
            let _ = reply.send(result);
        }
    }
}

pub(crate) fn internal(context: &str, e: impl std::fmt::Display) -> Error {
    Error::internal(format!("search index: {context}: {e}"))
}
