//! The record of a run's batches kept in the store, so that a killed run resumes them
//! ([`redtrace_providers::BatchLedger`]).

use redtrace_providers::{BatchLedger, LedgerBatch};
use redtrace_store::{RunId, Store, StoreError};
use std::path::Path;
use std::sync::Mutex;

/// A run's batches in the store's `batches` tables, through a connection of its own.
pub struct StoreBatchLedger {
    store: Mutex<Store>,
    run: RunId,
}

impl StoreBatchLedger {
    /// The ledger of `run` in the store at `db`.
    pub fn open(db: &Path, run: RunId) -> Result<Self, StoreError> {
        Ok(Self {
            store: Mutex::new(Store::open(db)?),
            run,
        })
    }

    fn with<T>(&self, f: impl FnOnce(&mut Store) -> Result<T, StoreError>) -> Result<T, String> {
        let mut store = self.store.lock().expect("batch ledger lock");
        f(&mut store).map_err(|error| error.to_string())
    }
}

impl BatchLedger for StoreBatchLedger {
    fn open(&self, endpoint: &str) -> Result<Vec<LedgerBatch>, String> {
        let batches = self.with(|store| store.open_batches(self.run, endpoint))?;
        Ok(batches
            .into_iter()
            .map(|(id, remote_id, requests)| LedgerBatch {
                id,
                remote_id,
                requests,
            })
            .collect())
    }

    fn form(&self, endpoint: &str, api: &str, keys: &[String]) -> Result<i64, String> {
        self.with(|store| store.form_batch(self.run, endpoint, api, keys))
    }

    fn submitted(&self, id: i64, remote_id: &str) -> Result<(), String> {
        self.with(|store| store.set_batch(id, Some(remote_id), "submitted"))
    }

    fn state(&self, id: i64, state: &str) -> Result<(), String> {
        self.with(|store| store.set_batch(id, None, state))
    }

    fn result(&self, id: i64, key: &str, line: &str) -> Result<(), String> {
        self.with(|store| store.batch_result(id, key, line))
    }

    fn stored_result(&self, key: &str) -> Result<Option<String>, String> {
        self.with(|store| store.stored_batch_result(self.run, key))
    }
}
