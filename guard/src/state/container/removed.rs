//! Containers removed lately, so that a late event, a queued lookup or Podman's events log
//! read behind the API stream cannot bring one back into the table (where nothing would
//! remove it again). Bounded: the oldest is forgotten first.

use std::{
    collections::{HashMap, VecDeque},
    sync::Arc,
};

use super::{ContainerId, ContainerMeta};

/// How many removed containers are remembered.
pub(super) const MAX_REMOVED: usize = 1024;

#[derive(Default)]
pub(super) struct Removed {
    order: VecDeque<ContainerId>,
    /// The metadata it had (exited), for the late events of a container removed meanwhile.
    meta: HashMap<ContainerId, Option<Arc<ContainerMeta>>>,
}

impl Removed {
    /// Remembers `id` as removed; a second removal (the API stream's after the events log's)
    /// keeps the metadata the first one had.
    pub(super) fn insert(&mut self, id: ContainerId, meta: Option<Arc<ContainerMeta>>) {
        if let Some(old) = self.meta.get_mut(&id) {
            if meta.is_some() {
                *old = meta;
            }
            return;
        }
        self.meta.insert(id.clone(), meta);
        self.order.push_back(id);
        if self.order.len() > MAX_REMOVED
            && let Some(old) = self.order.pop_front()
        {
            self.meta.remove(&old);
        }
    }

    /// `None` when `id` was not removed lately; else what it had.
    pub(super) fn get(&self, id: &ContainerId) -> Option<&Option<Arc<ContainerMeta>>> {
        self.meta.get(id)
    }

    /// The runtime itself reports `id` again (an id reused, e.g. by `ctr`): forget it here.
    /// O(n) over at most [`MAX_REMOVED`], and only for such an id.
    pub(super) fn revive(&mut self, id: &ContainerId) {
        if self.meta.remove(id).is_some() {
            self.order.retain(|o| o != id);
        }
    }

    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.meta.len()
    }
}
