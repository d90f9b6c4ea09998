//! A redb database whose writes go through one writer thread that groups
//! whatever is queued into a single transaction and commits it with one fsync
//! (group commit), so many concurrent writers share the cost of durability.
//! Checks made inside a write see every earlier write of the same batch.
//! Reads use their own read transactions and never wait for the writer.
//! The catalog and the small objects each keep one.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use redb::{Database, WriteTransaction};
use tokio::sync::{oneshot, Semaphore};

use crate::backend::PortError;

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 1024;
/// Most writes queued for (or in) the writer thread at once; more wait for
/// room (backpressure) instead of growing the queue.
pub const WRITE_QUEUE: usize = 4 * MAX_BATCH;

type Completion = Box<dyn FnOnce(Result<(), PortError>) + Send>;
/// A queued write: applies itself to the batch transaction and returns what
/// to call once the batch commits, plus whether the batch must abort.
type Job = Box<dyn FnOnce(&WriteTransaction) -> (Completion, bool) + Send>;

/// Work the writer thread does between batches, every so often.
pub struct Chore {
    /// How often it runs (and the longest the writer sleeps).
    pub every: Duration,
    /// What it does.
    pub run: Box<dyn FnMut(&Database) + Send>,
}

/// One database and its writer thread.
pub struct GroupCommit {
    what: &'static str,
    db: Arc<Database>,
    jobs: mpsc::Sender<Job>,
    /// Room in the writer's queue: a write holds a permit until answered.
    pub(super) room: Arc<Semaphore>,
    /// Writes handed to the writer thread so far.
    pub(super) submitted: Arc<AtomicU64>,
}

/// A storage error of the database named `what`.
pub fn storage_err(what: &'static str, err: impl Into<redb::Error>) -> PortError {
    PortError::unavailable(what).caused_by(err.into())
}

impl GroupCommit {
    /// Opens (creating if needed) the database at `path`, runs `setup` in a
    /// first transaction, and starts the writer thread. `what` names the
    /// database in errors ("embedded catalog").
    pub fn open(
        path: &Path,
        what: &'static str,
        cache_bytes: Option<usize>,
        queue: usize,
        setup: impl FnOnce(&WriteTransaction) -> Result<(), PortError>,
        chore: Option<Chore>,
    ) -> Result<Self, PortError> {
        let db = open_database(path, what, cache_bytes)?;
        let txn = db.begin_write().map_err(|e| storage_err(what, e))?;
        setup(&txn)?;
        txn.commit().map_err(|e| storage_err(what, e))?;
        let db = Arc::new(db);
        let (jobs, rx) = mpsc::channel::<Job>();
        let writer_db = db.clone();
        std::thread::Builder::new()
            .name(format!("{}-writer", what.replace(' ', "-")))
            .spawn(move || writer_loop(&writer_db, rx, what, chore))
            .map_err(|e| PortError::unavailable(what).caused_by(e))?;
        Ok(Self {
            what,
            db,
            jobs,
            room: Arc::new(Semaphore::new(queue.max(1))),
            submitted: Arc::default(),
        })
    }

    /// The database, for reads outside the writer.
    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Runs `f` in the next group-commit batch and answers once it is durable.
    /// `f` must write nothing when it returns a non-storage error.
    pub async fn write<T: Send + 'static>(
        &self,
        f: impl FnOnce(&WriteTransaction) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        let what = self.what;
        // Wait for room in the queue: a slow disk slows writers down
        // instead of queueing without bound.
        let room = (self.room.clone())
            .acquire_owned()
            .await
            .map_err(|_| PortError::unavailable(format!("{what}: closed")))?;
        let (tx, rx) = oneshot::channel();
        let job: Job = Box::new(move |txn| {
            let result = f(txn);
            let abort = matches!(result, Err(PortError::Unavailable { .. }));
            let completion: Completion = Box::new(move |commit| {
                drop(room);
                let _ = tx.send(commit.and(result));
            });
            (completion, abort)
        });
        self.jobs
            .send(job)
            .map_err(|_| PortError::unavailable(format!("{what}: the writer thread stopped")))?;
        self.submitted.fetch_add(1, Ordering::Relaxed);
        rx.await.map_err(|_| {
            PortError::unavailable(format!("{what}: the writer dropped the request"))
        })?
    }

    /// Runs `f` in a read transaction on a blocking thread.
    pub async fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(&redb::ReadTransaction) -> Result<T, PortError> + Send + 'static,
    ) -> Result<T, PortError> {
        let (db, what) = (self.db.clone(), self.what);
        tokio::task::spawn_blocking(move || {
            let txn = db.begin_read().map_err(|e| storage_err(what, e))?;
            f(&txn)
        })
        .await
        .map_err(|e| PortError::other(format!("{what}: a read task failed")).caused_by(e))?
    }
}

/// Opens the database file, waiting briefly while a previous one in this
/// process is still closing (its writer thread releases the file as it ends).
fn open_database(
    path: &Path,
    what: &'static str,
    cache_bytes: Option<usize>,
) -> Result<Database, PortError> {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut builder = Database::builder();
    if let Some(bytes) = cache_bytes {
        builder.set_cache_size(bytes);
    }
    loop {
        match builder.create(path) {
            Ok(db) => return Ok(db),
            Err(redb::DatabaseError::DatabaseAlreadyOpen) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(redb::DatabaseError::DatabaseAlreadyOpen) => {
                return Err(PortError::unavailable(format!(
                    "the {what} {} is in use by another gateway process: the \
                     embedded backend serves one process per data directory (give each \
                     gateway its own TG_DATA_DIR, or run several on S3 and DynamoDB)",
                    path.display()
                )))
            }
            Err(e) => return Err(storage_err(what, e)),
        }
    }
}

fn writer_loop(db: &Database, rx: mpsc::Receiver<Job>, what: &str, mut chore: Option<Chore>) {
    let mut last_chore: Option<Instant> = None;
    let idle = chore
        .as_ref()
        .map_or(Duration::from_secs(3600), |c| c.every);
    loop {
        if let Some(chore) = chore.as_mut() {
            if last_chore.is_none_or(|t| t.elapsed() >= chore.every) {
                (chore.run)(db);
                last_chore = Some(Instant::now());
            }
        }
        let first = match rx.recv_timeout(idle) {
            Ok(job) => job,
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return,
        };
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let txn = match db.begin_write() {
            Ok(txn) => txn,
            Err(e) => {
                // Nothing ran; each job's sender drops and its caller sees an error.
                tracing::error!(error = %crate::domain::error_chain(&e), "{what}: cannot begin a write transaction");
                continue;
            }
        };
        let mut completions = Vec::with_capacity(jobs.len());
        let mut abort = false;
        for job in jobs {
            let (completion, failed) = job(&txn);
            completions.push(completion);
            abort |= failed;
        }
        let outcome = if abort {
            let _ = txn.abort();
            Err(PortError::unavailable(format!(
                "{what}: batch aborted after a storage error"
            )))
        } else {
            txn.commit()
                .map_err(|e| PortError::unavailable(what.to_string()).caused_by(e))
        };
        // Every write of the batch gets the outcome; a failure is shared as
        // the source of each one's error.
        let shared = outcome.err().map(Arc::new);
        for completion in completions {
            completion(match &shared {
                None => Ok(()),
                Some(err) => {
                    Err(PortError::unavailable(format!("{what}: commit failed"))
                        .caused_by(err.clone()))
                }
            });
        }
    }
}
