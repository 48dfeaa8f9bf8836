//! One load at a time per key after a cache miss ("single flight").
//!
//! The request path keeps its reads in memory (token checks, key snapshots, balances) and goes to
//! the database only when an entry is missing or stale. Without coordination every request that
//! misses at the same moment — all of them, under load, when an entry expires or a change bumps
//! an invalidation — runs the same read: the pool grows to its limit, and on SQLite each connection is
//! a thread with its own page cache and allocator arena (measured: 16 worker threads and +40 MiB
//! resident during the benchmark's sweeps). With a [`SingleFlight`] the first task to miss loads
//! while the others wait for it and then find the entry it stored.
//!
//! The key space is striped over a fixed set of async mutexes (memory does not grow with keys;
//! two keys rarely share a stripe, and when they do one load waits for the other, which is still
//! correct). Written here rather than taken from a crate: it is a dozen lines over tokio's mutex,
//! and the callers keep their own caches (invalidation marks, ages) unchanged.

use std::hash::{BuildHasher, Hash};
use tokio::sync::{Mutex, MutexGuard};

const STRIPES: usize = 64;

pub struct SingleFlight {
    stripes: Box<[Mutex<()>]>,
    hasher: std::collections::hash_map::RandomState,
}

impl Default for SingleFlight {
    fn default() -> Self {
        SingleFlight {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            hasher: Default::default(),
        }
    }
}

impl std::fmt::Debug for SingleFlight {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SingleFlight").finish_non_exhaustive()
    }
}

impl SingleFlight {
    /// Waits for `key`'s turn to load. The caller checks its cache again after this returns
    /// (another task may have just filled it), loads only if it is still missing, stores the
    /// result, then drops the guard.
    pub async fn turn<K: Hash + ?Sized>(&self, key: &K) -> MutexGuard<'_, ()> {
        let stripe = (self.hasher.hash_one(key) as usize) % self.stripes.len();
        self.stripes[stripe].lock().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    /// 50 tasks miss the same key at once: exactly one loads, the rest read what it stored.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_misses_load_once() {
        let flight = Arc::new(SingleFlight::default());
        let cache = Arc::new(std::sync::Mutex::new(None::<u32>));
        let loads = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..50)
            .map(|_| {
                let (flight, cache, loads) = (flight.clone(), cache.clone(), loads.clone());
                tokio::spawn(async move {
                    if let Some(v) = *cache.lock().unwrap() {
                        return v;
                    }
                    let _turn = flight.turn("workspace").await;
                    if let Some(v) = *cache.lock().unwrap() {
                        return v;
                    }
                    loads.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    *cache.lock().unwrap() = Some(7);
                    7
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 7);
        }
        assert_eq!(loads.load(Ordering::SeqCst), 1);
    }

    /// Different keys in different stripes load at the same time.
    #[tokio::test]
    async fn other_keys_are_not_held_up() {
        let flight = SingleFlight::default();
        let a = flight.turn(&1u32).await;
        let other = (2u32..200)
            .find(|k| {
                flight.hasher.hash_one(k) as usize % STRIPES
                    != flight.hasher.hash_one(1u32) as usize % STRIPES
            })
            .unwrap();
        let b = tokio::time::timeout(Duration::from_secs(1), flight.turn(&other)).await;
        assert!(b.is_ok(), "a key in another stripe waited");
        assert!(
            tokio::time::timeout(Duration::from_millis(50), flight.turn(&1u32))
                .await
                .is_err(),
            "the same key got a second turn while the first was held"
        );
        drop(a);
    }
}
