//! A short-lived cache of product-detail responses (the storefront's hottest read). Entries
//! live one second and the writing process drops them at once on update; other instances
//! may serve a product up to a second stale.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use uuid::Uuid;

pub struct ProductCache {
    ttl: Duration,
    entries: Mutex<HashMap<Uuid, (Instant, Bytes)>>,
}

impl Default for ProductCache {
    fn default() -> Self {
        ProductCache {
            ttl: Duration::from_secs(1),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl ProductCache {
    pub fn get(&self, id: Uuid) -> Option<Bytes> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(&id)
            .filter(|(at, _)| at.elapsed() < self.ttl)
            .map(|(_, b)| b.clone())
    }

    pub fn put(&self, id: Uuid, body: Bytes) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= 50_000 {
            let ttl = self.ttl;
            map.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        map.insert(id, (Instant::now(), body));
    }

    pub fn forget(&self, id: Uuid) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }
}
