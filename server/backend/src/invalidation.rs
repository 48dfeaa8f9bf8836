//! Cache invalidation: the one owner of "this changed, forget what you cached".
//!
//! An [`Invalidation`] is held by the instance (in `AppState`) and handed to the caches that read
//! through it and to the services that change what they cache. There is no process-global state:
//! two instances in one process (tests) never see each other's changes.
//!
//! Every change gets the next number of one sequence and is recorded per [`Topic`], either for one
//! workspace or for everyone (platform keys, the catalogue, prices). A cache notes the sequence
//! number it [`saw`](Invalidation::seen) *before* it read the database; its entry stays fresh while
//! no change to its topic (for its workspace or for everyone) has a higher number. So a change that
//! commits while a load is reading can only make that load's result stale, never hide it, and one
//! tenant's change leaves every other tenant's entries warm.
//!
//! The seam for many instances: [`Invalidation::subscribe`] yields each change published here, for
//! a bus to carry to the other instances, which [`apply`](Invalidation::apply) it without
//! publishing it again.

use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use tokio::sync::broadcast;
use uuid::Uuid;

/// What a change is about: the cache that must forget it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Topic {
    /// Keys, BYOK switches and plans, provider overrides, failure policy, default provider
    /// (the key cache).
    Keys,
    /// API tokens and the chatbots they are bound to (the token cache).
    Tokens,
    /// Prices, the BYOK credit policy and balances (the credit book).
    Credits,
}

const TOPICS: usize = 3;

impl Topic {
    fn index(self) -> usize {
        match self {
            Topic::Keys => 0,
            Topic::Tokens => 1,
            Topic::Credits => 2,
        }
    }
}

/// Whose cached entries a change makes stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Reach {
    Workspace(Uuid),
    Everyone,
}

/// One committed change, as published to this instance's caches and to the bus.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Change {
    pub topic: Topic,
    pub reach: Reach,
}

impl Change {
    pub fn workspace(topic: Topic, workspace: Uuid) -> Self {
        Self {
            topic,
            reach: Reach::Workspace(workspace),
        }
    }

    pub fn everyone(topic: Topic) -> Self {
        Self {
            topic,
            reach: Reach::Everyone,
        }
    }
}

/// The sequence number a cache saw before loading an entry; kept beside the entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Seen(u64);

#[derive(Default)]
struct Marks {
    everyone: AtomicU64,
    workspaces: RwLock<HashMap<Uuid, u64>>,
}

struct Inner {
    sequence: AtomicU64,
    marks: [Marks; TOPICS],
    outbox: broadcast::Sender<Change>,
}

/// The instance's invalidation handle; cheap to clone (one `Arc`).
#[derive(Clone)]
pub struct Invalidation {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Invalidation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Invalidation")
            .field("sequence", &self.inner.sequence.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Invalidation {
    fn default() -> Self {
        Self::new()
    }
}

/// Changes a slow bus subscriber may fall behind by before it misses some (it then learns so
/// from `RecvError::Lagged` and should treat everything as changed).
const OUTBOX: usize = 1024;

impl Invalidation {
    pub fn new() -> Self {
        Self {
            inner: Arc::new(Inner {
                sequence: AtomicU64::new(0),
                marks: Default::default(),
                outbox: broadcast::channel(OUTBOX).0,
            }),
        }
    }

    /// The sequence number to keep beside an entry about to be loaded: call it before reading.
    pub fn seen(&self) -> Seen {
        Seen(self.inner.sequence.load(Ordering::Acquire))
    }

    /// Whether an entry loaded after `seen` is still current: no change of `topic` for
    /// `workspace` (when given) or for everyone came after it.
    pub fn fresh(&self, topic: Topic, workspace: Option<Uuid>, seen: Seen) -> bool {
        let marks = &self.inner.marks[topic.index()];
        if marks.everyone.load(Ordering::Acquire) > seen.0 {
            return false;
        }
        let Some(w) = workspace else {
            return true;
        };
        let map = marks.workspaces.read().unwrap_or_else(|p| p.into_inner());
        map.get(&w).is_none_or(|&at| at <= seen.0)
    }

    /// Records a change committed by this instance and hands it to the bus, if one listens.
    pub fn publish(&self, change: Change) {
        self.apply(change);
        // No subscriber (a single instance) is not an error.
        let _ = self.inner.outbox.send(change);
    }

    /// Records a change without publishing it: for changes another instance made.
    pub fn apply(&self, change: Change) {
        let at = self.inner.sequence.fetch_add(1, Ordering::AcqRel) + 1;
        let marks = &self.inner.marks[change.topic.index()];
        match change.reach {
            Reach::Everyone => {
                marks.everyone.fetch_max(at, Ordering::AcqRel);
            }
            Reach::Workspace(w) => {
                let mut map = marks.workspaces.write().unwrap_or_else(|p| p.into_inner());
                let mark = map.entry(w).or_default();
                *mark = (*mark).max(at);
            }
        }
    }

    /// Every change [`publish`](Self::publish)ed from now on: where a bus to other instances
    /// plugs in.
    pub fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.inner.outbox.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_workspace_change_leaves_other_workspaces_and_topics_fresh() {
        let inv = Invalidation::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let seen = inv.seen();
        inv.publish(Change::workspace(Topic::Keys, a));
        assert!(!inv.fresh(Topic::Keys, Some(a), seen));
        assert!(inv.fresh(Topic::Keys, Some(b), seen));
        assert!(inv.fresh(Topic::Tokens, Some(a), seen));
        assert!(inv.fresh(Topic::Keys, None, seen));
        // Loaded again after the change: fresh.
        assert!(inv.fresh(Topic::Keys, Some(a), inv.seen()));
    }

    #[test]
    fn an_everyone_change_makes_every_workspace_stale() {
        let inv = Invalidation::new();
        let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
        let seen = inv.seen();
        inv.publish(Change::everyone(Topic::Credits));
        for w in [Some(a), Some(b), None] {
            assert!(!inv.fresh(Topic::Credits, w, seen));
        }
        assert!(inv.fresh(Topic::Keys, Some(a), seen));
    }

    #[test]
    fn a_change_during_a_load_makes_that_load_stale() {
        let inv = Invalidation::new();
        let a = Uuid::new_v4();
        // The load notes the sequence, a change commits while it reads, the load stores.
        let seen = inv.seen();
        inv.publish(Change::workspace(Topic::Tokens, a));
        assert!(!inv.fresh(Topic::Tokens, Some(a), seen));
        // An older change does not make a newer load stale.
        let later = inv.seen();
        assert!(inv.fresh(Topic::Tokens, Some(a), later));
    }

    #[test]
    fn instances_do_not_share_changes() {
        let (one, two) = (Invalidation::new(), Invalidation::new());
        let a = Uuid::new_v4();
        let seen = two.seen();
        one.publish(Change::everyone(Topic::Keys));
        one.publish(Change::workspace(Topic::Keys, a));
        assert!(two.fresh(Topic::Keys, Some(a), seen));
    }

    #[tokio::test]
    async fn published_changes_reach_the_bus_and_applied_ones_do_not() {
        let inv = Invalidation::new();
        let mut bus = inv.subscribe();
        let (a, elsewhere) = (Uuid::new_v4(), Uuid::new_v4());
        let seen = inv.seen();
        inv.apply(Change::workspace(Topic::Keys, elsewhere));
        assert!(!inv.fresh(Topic::Keys, Some(elsewhere), seen));
        inv.publish(Change::workspace(Topic::Keys, a));
        assert_eq!(bus.recv().await.unwrap(), Change::workspace(Topic::Keys, a));
        assert!(
            bus.try_recv().is_err(),
            "an applied change is not sent again"
        );
        // The wire form a bus would carry.
        let json = serde_json::to_string(&Change::everyone(Topic::Credits)).unwrap();
        assert_eq!(
            serde_json::from_str::<Change>(&json).unwrap(),
            Change::everyone(Topic::Credits)
        );
    }
}
