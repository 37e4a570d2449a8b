//! The search port for the embedded mode: the core's exact search over the tantivy index
//! and the SQLite source, run on tokio's blocking pool with a cap on concurrent searches.

use std::sync::Arc;

use async_trait::async_trait;
use chatd_core::error::StoreResult;
use chatd_core::search::{self, CandidateIndex, MessageSource, SearchRequest};
use chatd_core::{AppToken, ChatNumber, Message, Search, StoreError};
use tokio::sync::Semaphore;

/// Searches off the async workers; at most `permits` at once, so a burst of searches
/// cannot take every blocking thread.
pub struct BlockingSearch {
    source: Arc<dyn MessageSource>,
    index: Arc<dyn CandidateIndex>,
    /// Held by the blocking task, so a disconnecting client does not free its slot early.
    permits: Arc<Semaphore>,
}

impl std::fmt::Debug for BlockingSearch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingSearch").field("available", &self.permits.available_permits()).finish()
    }
}

impl BlockingSearch {
    pub fn new(source: Arc<dyn MessageSource>, index: Arc<dyn CandidateIndex>, concurrency: usize) -> Self {
        BlockingSearch { source, index, permits: Arc::new(Semaphore::new(concurrency.max(1))) }
    }
}

#[async_trait]
impl Search for BlockingSearch {
    async fn search(
        &self,
        token: AppToken,
        chat: ChatNumber,
        request: SearchRequest,
    ) -> StoreResult<Vec<Message>> {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| StoreError::Unavailable("closed".into()))?;
        let (source, index) = (self.source.clone(), self.index.clone());
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            search::search(source.as_ref(), index.as_ref(), &token, chat, &request)
        })
        .await
        .map_err(StoreError::internal)?
    }
}
