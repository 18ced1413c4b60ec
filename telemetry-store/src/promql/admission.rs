//! How many queries run at once. Each evaluation holds a blocking thread
//! and its samples in memory, so past `--query-max-concurrency` (as
//! Prometheus' `--query.max-concurrency`) queries wait in line for a slot
//! instead of all sharing the CPU and the memory, and a query that waits
//! until its own deadline fails the way a slow one does.

use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::QueryError;

pub(crate) struct Admission {
    slots: Arc<Semaphore>,
    max: usize,
}

/// A query slot, given back when dropped.
#[derive(Debug)]
pub(crate) struct Slot {
    _permit: OwnedSemaphorePermit,
}

impl Admission {
    pub(crate) fn new(max: usize) -> Self {
        let max = max.max(1);
        Self {
            slots: Arc::new(Semaphore::new(max)),
            max,
        }
    }

    /// Waits for a slot, first come first served, until `deadline`.
    pub(crate) async fn admit(&self, deadline: Instant) -> Result<Slot, QueryError> {
        let wait = self.slots.clone().acquire_owned();
        match tokio::time::timeout_at(deadline.into(), wait).await {
            Ok(Ok(permit)) => Ok(Slot { _permit: permit }),
            Ok(Err(_)) => Err(QueryError::Internal("the query slots are closed".into())),
            Err(_) => Err(QueryError::Timeout(format!(
                "query timed out in query queue: all {} query slots (--query-max-concurrency) stayed busy; retry later, or raise the limit if the store has CPU and memory to spare",
                self.max
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn waits_in_line_until_its_deadline() {
        let a = Admission::new(1);
        let first = a
            .admit(Instant::now() + Duration::from_secs(5))
            .await
            .unwrap();
        let soon = Instant::now() + Duration::from_millis(100);
        let err = a.admit(soon).await.unwrap_err();
        assert!(matches!(err, QueryError::Timeout(_)), "{err:?}");
        assert!(Instant::now() >= soon);
        // A freed slot goes to the one waiting.
        let waiting = a.admit(Instant::now() + Duration::from_secs(5));
        drop(first);
        waiting.await.unwrap();
    }
}
