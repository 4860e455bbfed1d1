//! The judge-reply cache kept in the store, shared by every run of it.

use redtrace_judges::ReplyCache;
use redtrace_store::{Store, StoreError};
use std::path::Path;
use std::sync::Mutex;

/// Judge replies in the store's `judge_replies` table, through a connection of its own.
pub struct StoreReplyCache {
    // A mutex, not a pool: lookups and inserts are single-row and far rarer than judge calls
    // take time.
    store: Mutex<Store>,
}

impl StoreReplyCache {
    /// Opens the cache in the store at `db`.
    pub fn open(db: &Path) -> Result<Self, StoreError> {
        Ok(Self {
            store: Mutex::new(Store::open(db)?),
        })
    }
}

impl ReplyCache for StoreReplyCache {
    fn get(&self, key: &str) -> Option<String> {
        let store = self.store.lock().expect("reply cache lock");
        match store.judge_reply(key) {
            Ok(reply) => reply,
            Err(error) => {
                tracing::warn!(%error, "reading the judge-reply cache");
                None
            }
        }
    }

    fn put(&self, key: &str, reply: &str) {
        let store = self.store.lock().expect("reply cache lock");
        if let Err(error) = store.put_judge_reply(key, reply) {
            tracing::warn!(%error, "writing the judge-reply cache");
        }
    }
}
