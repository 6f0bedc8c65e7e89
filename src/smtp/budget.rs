//! The memory budget for message data held by all sessions at once (`[limits]
//! max_memory_in_flight`). A session reserves the most its message can occupy when DATA
//! starts and holds the reservation until the message is spooled or refused, so the sum of
//! all message buffers never exceeds the budget, however many clients send at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

#[derive(Debug)]
pub struct MemoryBudget {
    capacity: usize,
    reserved: AtomicUsize,
}

/// Octets taken from a [`MemoryBudget`]; given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    octets: usize,
}

impl MemoryBudget {
    pub fn new(capacity: usize) -> Arc<MemoryBudget> {
        Arc::new(MemoryBudget {
            capacity,
            reserved: AtomicUsize::new(0),
        })
    }

    /// Takes `octets`, or `None` when that would exceed the budget.
    pub fn try_reserve(self: &Arc<Self>, octets: usize) -> Option<Reservation> {
        self.reserved
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |reserved| {
                reserved
                    .checked_add(octets)
                    .filter(|&total| total <= self.capacity)
            })
            .ok()?;
        Some(Reservation {
            budget: Arc::clone(self),
            octets,
        })
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn reserved(&self) -> usize {
        self.reserved.load(Ordering::Acquire)
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        self.budget
            .reserved
            .fetch_sub(self.octets, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_beyond_the_capacity_are_refused() {
        let budget = MemoryBudget::new(100);
        let first = budget.try_reserve(60);
        assert!(first.is_some());
        assert!(budget.try_reserve(41).is_none());
        assert!(budget.try_reserve(40).is_some());
        assert_eq!(budget.reserved(), 60);
    }

    #[test]
    fn a_dropped_reservation_gives_its_octets_back() {
        let budget = MemoryBudget::new(100);
        let whole = budget.try_reserve(100);
        assert!(budget.try_reserve(1).is_none());
        drop(whole);
        assert_eq!(budget.reserved(), 0);
        assert!(budget.try_reserve(100).is_some());
    }

    #[test]
    fn an_overflowing_request_is_refused() {
        let budget = MemoryBudget::new(usize::MAX);
        let _most = budget.try_reserve(usize::MAX - 1);
        assert!(budget.try_reserve(2).is_none());
    }
}
