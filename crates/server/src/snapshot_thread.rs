//! The server's snapshot writer: each snapshot is streamed to its file on a thread of its own, so the
//! node loop pauses only for the O(1) frozen view of the state machine, never for the write (issue 6).

use std::sync::mpsc;

use node::{SnapshotJob, SnapshotWorker};
use storage::FinishedSnapshot;

/// Runs each [`SnapshotJob`] on a new thread; the node loop polls for the result after every batch.
#[derive(Default)]
pub struct ThreadWorker {
    running: Option<mpsc::Receiver<storage::Result<FinishedSnapshot>>>,
}

impl SnapshotWorker for ThreadWorker {
    fn start(&mut self, job: SnapshotJob) {
        assert!(self.running.is_none(), "a snapshot job started before the previous result was taken");
        let (done, result) = mpsc::channel();
        let spawned = std::thread::Builder::new().name("raftkv-snapshot".into()).spawn(move || {
            let started = std::time::Instant::now();
            let index = job.state.applied_index();
            let outcome = job.run();
            tracing::info!(
                index,
                ms = started.elapsed().as_millis() as u64,
                ok = outcome.is_ok(),
                "wrote a snapshot"
            );
            let _ = done.send(outcome);
        });
        if let Err(error) = spawned {
            // No thread: report the failure through the same channel, so the node stops loudly.
            let (done, failed) = mpsc::channel();
            let _ = done.send(Err(storage::Error::io("spawn a thread for", "snapshot", error)));
            self.running = Some(failed);
            return;
        }
        self.running = Some(result);
    }

    fn poll(&mut self) -> Option<storage::Result<FinishedSnapshot>> {
        let outcome = match self.running.as_ref()?.try_recv() {
            Ok(outcome) => outcome,
            Err(mpsc::TryRecvError::Empty) => return None,
            Err(mpsc::TryRecvError::Disconnected) => Err(storage::Error::io(
                "write",
                "snapshot",
                std::io::Error::other("the snapshot thread died"),
            )),
        };
        self.running = None;
        Some(outcome)
    }
}
