//! Configurations by IDCODE, shared cheaply (`Arc`) with decoded data frames and bindings.

use std::collections::HashMap;
use std::sync::Arc;

use super::config::Config;

/// The configurations a decoder knows, keyed by the IDCODE of their data stream.
#[derive(Debug, Clone, Default)]
pub struct ConfigStore {
    by_id: HashMap<u16, Arc<Config>>,
}

impl ConfigStore {
    pub fn new() -> Self {
        Self::default()
    }
    /// Add or replace the configuration for `cfg.idcode`; returns the shared handle.
    pub fn insert(&mut self, cfg: Config) -> Arc<Config> {
        let a = Arc::new(cfg);
        self.by_id.insert(a.idcode, Arc::clone(&a));
        a
    }
    pub fn insert_arc(&mut self, cfg: Arc<Config>) {
        self.by_id.insert(cfg.idcode, cfg);
    }
    /// The configuration for `idcode` (a hash lookup; no allocation).
    #[inline]
    pub fn get(&self, idcode: u16) -> Option<&Config> {
        self.by_id.get(&idcode).map(|a| &**a)
    }
    pub fn get_arc(&self, idcode: u16) -> Option<Arc<Config>> {
        self.by_id.get(&idcode).cloned()
    }
    pub fn remove(&mut self, idcode: u16) -> Option<Arc<Config>> {
        self.by_id.remove(&idcode)
    }
    pub fn len(&self) -> usize {
        self.by_id.len()
    }
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }
    pub fn idcodes(&self) -> impl Iterator<Item = u16> + '_ {
        self.by_id.keys().copied()
    }
}
