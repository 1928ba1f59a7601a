//! [`GroupOrder`]: the jobs of one FIFO `MessageGroupId` are worked in order, one at a time;
//! groups go in parallel.
//!
//! SQS already keeps a group's order between receives: while one of its messages is in flight (or
//! given back with a visibility delay), no later message of that group is delivered. But one
//! `ReceiveMessage` may return several messages of the same group, in order. So:
//!
//! - The receiver registers each received message of a group with [`GroupOrder::enter`] in the
//!   order SQS returned them (before any task runs), and the job waits for its turn
//!   ([`GroupPlace::turn`]) before anything else.
//! - When a job of the group is settled, the next one's turn comes.
//! - When a job goes back to SQS instead (capacity wait, transient retries spent, handoff,
//!   shutdown), every later job of its group held here must go back too, without being worked:
//!   their turn answers `false` and they are given back with visibility 0. SQS delivers them
//!   again after the one that went back, so the group's order holds.
//!
//! Messages without a group (a standard jobs queue) take no part.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

#[derive(Default)]
struct Group {
    /// Places in order; the front one has the turn.
    places: VecDeque<u64>,
    /// Places whose earlier job went back to SQS: they go back too.
    released: Vec<u64>,
}

/// See the module doc.
#[derive(Default)]
pub struct GroupOrder {
    groups: Mutex<HashMap<String, Group>>,
    changes: Mutex<Option<watch::Sender<u64>>>,
    next: std::sync::atomic::AtomicU64,
}

/// A job's place in its group; leaves the group when finished or dropped.
pub struct GroupPlace {
    order: Arc<GroupOrder>,
    group: String,
    id: u64,
    changes: watch::Receiver<u64>,
    done: bool,
}

impl GroupOrder {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Group>> {
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn subscribe(&self) -> watch::Receiver<u64> {
        let mut tx = self.changes.lock().unwrap_or_else(|e| e.into_inner());
        tx.get_or_insert_with(|| watch::channel(0).0).subscribe()
    }

    fn changed(&self) {
        if let Some(tx) = self
            .changes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
        {
            tx.send_modify(|n| *n = n.wrapping_add(1));
        }
    }

    /// Registers a received message of `group`, behind the ones registered before it.
    pub fn enter(self: &Arc<Self>, group: &str) -> GroupPlace {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.lock()
            .entry(group.to_owned())
            .or_default()
            .places
            .push_back(id);
        GroupPlace {
            order: self.clone(),
            group: group.to_owned(),
            id,
            changes: self.subscribe(),
            done: false,
        }
    }

    /// Groups with a job here (for tests and metrics).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn leave(&self, group: &str, id: u64, settled: bool) {
        let mut groups = self.lock();
        if let Some(g) = groups.get_mut(group) {
            let was_front = g.places.front() == Some(&id);
            g.places.retain(|p| *p != id);
            g.released.retain(|p| *p != id);
            if !settled && was_front {
                g.released = g.places.iter().copied().collect();
            }
            if g.places.is_empty() {
                groups.remove(group);
            }
        }
        drop(groups);
        self.changed();
    }
}

impl GroupPlace {
    /// Waits until this job is the group's first: `true` to go on, `false` when an earlier job
    /// of the group went back to SQS (this one must follow it, unworked).
    pub async fn turn(&mut self) -> bool {
        loop {
            {
                let groups = self.order.lock();
                match groups.get(&self.group) {
                    Some(g) if g.released.contains(&self.id) => return false,
                    Some(g) if g.places.front() == Some(&self.id) => return true,
                    Some(_) => {}
                    None => return true,
                }
            }
            if self.changes.changed().await.is_err() {
                return true;
            }
        }
    }

    /// The job is done with: `settled` when its result was published (the next job's turn
    /// comes), `false` when it went back to SQS (the later jobs here follow it back).
    pub fn finish(mut self, settled: bool) {
        self.done = true;
        self.order.leave(&self.group, self.id, settled);
    }
}

impl Drop for GroupPlace {
    fn drop(&mut self) {
        if !self.done {
            // Not settled: treat as gone back, the safe reading for the group's order.
            self.order.leave(&self.group, self.id, false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    async fn soon(place: &mut GroupPlace) -> Option<bool> {
        tokio::time::timeout(Duration::from_millis(50), place.turn())
            .await
            .ok()
    }

    #[tokio::test]
    async fn one_at_a_time_in_order_and_groups_in_parallel() {
        let order = Arc::new(GroupOrder::default());
        let mut a1 = order.enter("a");
        let mut a2 = order.enter("a");
        let mut b1 = order.enter("b");
        assert_eq!(soon(&mut a1).await, Some(true));
        assert_eq!(soon(&mut b1).await, Some(true), "groups in parallel");
        assert_eq!(soon(&mut a2).await, None, "waits for a1");
        a1.finish(true);
        assert_eq!(soon(&mut a2).await, Some(true));
        a2.finish(true);
        b1.finish(true);
        assert!(order.is_empty());
    }

    #[tokio::test]
    async fn a_job_that_goes_back_takes_the_later_ones_of_its_group_with_it() {
        let order = Arc::new(GroupOrder::default());
        let mut a1 = order.enter("a");
        let mut a2 = order.enter("a");
        let mut a3 = order.enter("a");
        let mut b1 = order.enter("b");
        assert_eq!(soon(&mut a1).await, Some(true));
        a1.finish(false);
        assert_eq!(soon(&mut a2).await, Some(false));
        assert_eq!(soon(&mut a3).await, Some(false));
        assert_eq!(soon(&mut b1).await, Some(true), "other groups go on");
        // A dropped place counts as gone back.
        drop(a2);
        drop(a3);
        let mut c1 = order.enter("c");
        let mut c2 = order.enter("c");
        assert_eq!(soon(&mut c1).await, Some(true));
        drop(c1);
        assert_eq!(soon(&mut c2).await, Some(false));
    }
}
