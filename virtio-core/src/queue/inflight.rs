//! Which chains the device holds, so a completion is accepted exactly once.
//!
//! A set of up to `S` buffer ids with open addressing: an id's home entry
//! is `id mod S`. A split ring's ids are head indices below the queue size
//! and a packed ring's are whatever the driver chose, which for every
//! driver known (Linux, DPDK, virtio-drivers) are below the queue size
//! too: then each id sits at its home entry and every operation is one
//! probe. Ids chosen to collide cost more probes, never more than `S`.
//!
//! The common path is one compare: `find` looks at the home entry first,
//! and while no entry sits away from its home (`displaced` is 0, always so
//! for ids below `S`) a removal clears its entry without looking at its
//! neighbours (it used to scan the whole run of occupied entries after it,
//! the whole ring when every buffer is in flight).

use core::fmt;

/// The in-flight table of one queue, for queues of up to `S` entries.
#[derive(Clone)]
pub(crate) struct InFlight<const S: usize> {
    ids: [u16; S],
    used: [bool; S],
    count: u16,
    /// Entries not at their home entry. While 0, no removal needs to move
    /// anything back.
    displaced: u16,
}

impl<const S: usize> fmt::Debug for InFlight<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InFlight")
            .field("capacity", &S)
            .field("count", &self.count)
            .finish()
    }
}

impl<const S: usize> InFlight<S> {
    pub(crate) const fn new() -> Self {
        Self {
            ids: [0; S],
            used: [false; S],
            count: 0,
            displaced: 0,
        }
    }

    /// Chains in flight.
    pub(crate) fn count(&self) -> u16 {
        self.count
    }

    #[inline]
    fn home(id: u16) -> usize {
        usize::from(id).checked_rem(S).unwrap_or(0)
    }

    #[inline]
    fn next(i: usize) -> usize {
        let n = i.wrapping_add(1);
        if n >= S { 0 } else { n }
    }

    /// Where `id` is, or `Err` with the free entry where it would go
    /// (`Err(None)` when the table is full).
    #[inline]
    pub(crate) fn find(&self, id: u16) -> Result<usize, Option<usize>> {
        let home = Self::home(id);
        // The common case, one probe: `id` at its home entry, or the home
        // entry free (a probe run never has a gap, so `id` is absent).
        match (self.used.get(home), self.ids.get(home)) {
            (Some(true), Some(&k)) if k == id => return Ok(home),
            (Some(false), _) => return Err(Some(home)),
            _ => {}
        }
        self.probe(id, home)
    }

    /// The rest of `find`: linear probing from `i`.
    #[cold]
    fn probe(&self, id: u16, mut i: usize) -> Result<usize, Option<usize>> {
        for _ in 0..S {
            match (self.used.get(i), self.ids.get(i)) {
                (Some(false), _) => return Err(Some(i)),
                (Some(true), Some(&k)) if k == id => return Ok(i),
                _ => i = Self::next(i),
            }
        }
        Err(None)
    }

    #[cfg(test)]
    pub(crate) fn contains(&self, id: u16) -> bool {
        self.find(id).is_ok()
    }

    /// Adds `id`; false if it is there already or the table is full.
    #[cfg(test)]
    pub(crate) fn insert(&mut self, id: u16) -> bool {
        let Err(Some(i)) = self.find(id) else {
            return false;
        };
        self.insert_at(i, id);
        true
    }

    /// Puts `id` at the free entry `i` that `find(id)` returned
    /// (`Err(Some(i))`, with no insert or remove since).
    #[inline]
    pub(crate) fn insert_at(&mut self, i: usize, id: u16) {
        if let (Some(u), Some(k)) = (self.used.get_mut(i), self.ids.get_mut(i)) {
            *u = true;
            *k = id;
            self.count = self.count.saturating_add(1);
            if i != Self::home(id) {
                self.displaced = self.displaced.saturating_add(1);
            }
        }
    }

    /// Removes `id`; false if it was not there. Later entries of the probe
    /// run move back (no tombstones), so lookups stay short.
    #[cfg(test)]
    pub(crate) fn remove(&mut self, id: u16) -> bool {
        let Ok(i) = self.find(id) else {
            return false;
        };
        self.remove_at(i);
        true
    }

    /// Removes the entry at `i`, where `find` found it (`Ok(i)`, with no
    /// insert or remove since).
    #[inline]
    pub(crate) fn remove_at(&mut self, i: usize) {
        if self.displaced == 0 {
            // Every entry is at home: nothing after `i` can move back.
            if let Some(u) = self.used.get_mut(i) {
                *u = false;
                self.count = self.count.saturating_sub(1);
            }
            return;
        }
        self.remove_shifting(i);
    }

    #[cold]
    fn remove_shifting(&mut self, mut hole: usize) {
        if self.ids.get(hole).is_some_and(|&k| Self::home(k) != hole) {
            self.displaced = self.displaced.saturating_sub(1);
        }
        let mut j = hole;
        for _ in 0..S {
            j = Self::next(j);
            let (Some(&true), Some(&k)) = (self.used.get(j), self.ids.get(j)) else {
                break;
            };
            // Move `k` into the hole unless its home lies cyclically in
            // (hole, j]: then it is already as close to home as it can be.
            let home = Self::home(k);
            let stays = if hole <= j {
                hole < home && home <= j
            } else {
                hole < home || home <= j
            };
            if !stays {
                if let Some(slot) = self.ids.get_mut(hole) {
                    *slot = k;
                }
                // `k` was displaced (an entry at home stays); it may be
                // home now.
                if home == hole {
                    self.displaced = self.displaced.saturating_sub(1);
                }
                hole = j;
            }
        }
        if let Some(u) = self.used.get_mut(hole) {
            *u = false;
        }
        self.count = self.count.saturating_sub(1);
    }

    pub(crate) fn clear(&mut self) {
        if self.count > 0 {
            self.used = [false; S];
            self.count = 0;
            self.displaced = 0;
        }
    }
}

#[cfg(test)]
#[allow(clippy::arithmetic_side_effects)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    // Against a model, with ids chosen to collide (multiples of S) and
    // ids in range, in and out of order.
    #[test]
    fn behaves_like_a_set_under_collisions() {
        let mut t = InFlight::<8>::new();
        let mut model = HashSet::new();
        let mut x: u32 = 12345;
        for _ in 0..if cfg!(miri) { 500 } else { 20_000 } {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            let id = match (x >> 8) % 3 {
                0 => ((x >> 12) % 8) as u16,
                1 => (((x >> 12) % 5) * 8) as u16,
                _ => (x >> 12) as u16,
            };
            if (x >> 4).is_multiple_of(2) {
                let fits = model.len() < 8 || model.contains(&id);
                let inserted = t.insert(id);
                assert_eq!(inserted, fits && model.insert(id));
            } else {
                assert_eq!(t.remove(id), model.remove(&id));
            }
            assert_eq!(usize::from(t.count()), model.len());
            let displaced = (0..8)
                .filter(|&i| t.used[i] && InFlight::<8>::home(t.ids[i]) != i)
                .count();
            assert_eq!(usize::from(t.displaced), displaced);
            for probe in [id, id ^ 8, 0, 8, 16] {
                assert_eq!(t.contains(probe), model.contains(&probe));
            }
        }
    }
}
