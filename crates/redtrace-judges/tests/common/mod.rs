//! What the judges' test files share.

use redtrace_judges::ReplyCache;
use std::collections::HashMap;
use std::sync::Mutex;

/// A judge-reply cache in memory, to see what a judge caches and serves again.
#[derive(Default)]
pub struct MemoryCache(Mutex<HashMap<String, String>>);

impl MemoryCache {
    /// Replies cached.
    #[allow(dead_code)] // not every test file counts them
    pub fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }
}

impl ReplyCache for MemoryCache {
    fn get(&self, key: &str) -> Option<String> {
        self.0.lock().unwrap().get(key).cloned()
    }
    fn put(&self, key: &str, reply: &str) {
        self.0.lock().unwrap().insert(key.into(), reply.into());
    }
}
