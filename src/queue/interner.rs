//! Shared copies of the strings a large queue repeats: the destination of each recipient and
//! the last reply and relay of each deferred one. A million recipients deferred for one dead
//! destination hold one `451 4.4.1 …` between them, not a million.

use std::collections::HashSet;
use std::sync::Arc;

/// Entries below this count are never pruned (pruning a few is not worth a pass).
const PRUNE_FLOOR: usize = 1024;

#[derive(Debug, Default)]
pub struct Interner {
    strings: HashSet<Arc<str>>,
    /// Prune when the set has grown past this: twice what the last prune left.
    prune_at: usize,
}

impl Interner {
    pub fn intern(&mut self, text: &str) -> Arc<str> {
        if let Some(shared) = self.strings.get(text) {
            return Arc::clone(shared);
        }
        if self.strings.len() >= self.prune_at.max(PRUNE_FLOOR) {
            self.prune();
        }
        let shared: Arc<str> = Arc::from(text);
        self.strings.insert(Arc::clone(&shared));
        shared
    }

    /// Replaces `text` with its shared copy.
    pub fn share(&mut self, text: &mut Option<Arc<str>>) {
        if let Some(own) = text.as_deref() {
            *text = Some(self.intern(own));
        }
    }

    /// Forgets the strings nobody else holds any more (the replies of recipients since
    /// delivered), so the set tracks what the queue holds, not everything it ever saw.
    /// Amortised: the set must double before the next pass.
    fn prune(&mut self) {
        self.strings.retain(|shared| Arc::strong_count(shared) > 1);
        self.prune_at = self.strings.len() * 2;
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.strings.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_strings_share_one_copy() {
        let mut interner = Interner::default();
        let a = interner.intern("451 4.4.1 no answer");
        let mut b = Some(Arc::from("451 4.4.1 no answer"));
        interner.share(&mut b);
        assert!(Arc::ptr_eq(&a, b.as_ref().unwrap()));
        assert_eq!(interner.len(), 1);
    }

    #[test]
    fn strings_nobody_holds_are_forgotten_as_the_set_grows() {
        let mut interner = Interner::default();
        let kept = interner.intern("kept");
        for n in 0..10 * PRUNE_FLOOR {
            interner.intern(&format!("250 2.0.0 queued as {n}"));
        }
        assert!(interner.len() <= 2 * PRUNE_FLOOR, "{}", interner.len());
        assert!(Arc::ptr_eq(&kept, &interner.intern("kept")));
    }
}
