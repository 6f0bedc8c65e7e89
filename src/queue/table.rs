//! The queue's message index: values in a dense slab, found through a small hash map from the
//! queue id's `u64` to a slot. A `HashMap<u64, Message>` keeps every value in its hash table,
//! which grows by doubling and is written all over; at a million messages it sits just past a
//! doubling, so half its 2^21 buckets of 80 bytes are resident and empty. Here the table holds
//! 16-byte entries, and the slab only the values (each with its key, for iterating), with freed
//! slots reused.

use std::collections::HashMap;
use std::ops::Index;

#[derive(Debug)]
pub struct Table<V> {
    slots: HashMap<u64, u32>,
    values: Vec<Option<(u64, V)>>,
    /// Slots of removed values, reused before the slab grows.
    free: Vec<u32>,
}

impl<V> Default for Table<V> {
    fn default() -> Self {
        Table {
            slots: HashMap::new(),
            values: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V> Table<V> {
    pub fn insert(&mut self, key: u64, value: V) {
        if let Some(&slot) = self.slots.get(&key) {
            self.values[slot as usize] = Some((key, value));
            return;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                self.values[slot as usize] = Some((key, value));
                slot
            }
            None => {
                self.values.push(Some((key, value)));
                // A queue of four billion messages would have run out of memory long before.
                u32::try_from(self.values.len() - 1).expect("fewer than 2^32 messages")
            }
        };
        self.slots.insert(key, slot);
    }

    pub fn remove(&mut self, key: &u64) -> Option<V> {
        let slot = self.slots.remove(key)?;
        self.free.push(slot);
        let value = self.values[slot as usize].take();
        self.shrink_when_empty();
        value.map(|(_, value)| value)
    }

    /// An emptied queue gives its memory back (a burst of a million messages, all delivered).
    fn shrink_when_empty(&mut self) {
        if self.slots.is_empty() && self.values.capacity() > 1024 {
            *self = Table::default();
        }
    }

    pub fn get(&self, key: &u64) -> Option<&V> {
        let slot = *self.slots.get(key)?;
        self.values[slot as usize].as_ref().map(|(_, value)| value)
    }

    pub fn get_mut(&mut self, key: &u64) -> Option<&mut V> {
        let slot = *self.slots.get(key)?;
        self.values[slot as usize].as_mut().map(|(_, value)| value)
    }

    pub fn contains_key(&self, key: &u64) -> bool {
        self.slots.contains_key(key)
    }

    pub fn len(&self) -> usize {
        self.slots.len()
    }

    pub fn keys(&self) -> impl Iterator<Item = &u64> {
        self.iter().map(|(key, _)| key)
    }

    pub fn values(&self) -> impl Iterator<Item = &V> {
        self.iter().map(|(_, value)| value)
    }

    /// Every key with its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&u64, &V)> {
        self.values
            .iter()
            .flatten()
            .map(|(key, value)| (key, value))
    }

    /// Every key with its value, mutable, in no particular order.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (&u64, &mut V)> {
        self.values
            .iter_mut()
            .flatten()
            .map(|(key, value)| (&*key, value))
    }
}

impl<V> Index<&u64> for Table<V> {
    type Output = V;

    fn index(&self, key: &u64) -> &V {
        self.get(key).expect("a key in the table")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_found_replaced_removed_and_their_slots_reused() {
        let mut table = Table::default();
        for key in 0..100u64 {
            table.insert(key << 32, key);
        }
        assert_eq!(table.len(), 100);
        assert_eq!(table[&(7 << 32)], 7);
        table.insert(7 << 32, 70);
        assert_eq!(table.get(&(7 << 32)), Some(&70));
        assert_eq!(table.len(), 100);
        assert_eq!(table.remove(&(3 << 32)), Some(3));
        assert_eq!(table.remove(&(3 << 32)), None);
        assert!(!table.contains_key(&(3 << 32)));
        table.insert(1000, 1000);
        assert_eq!(table.values.len(), 100, "the freed slot was reused");
        *table.get_mut(&1000).unwrap() += 1;
        let mut seen: Vec<(u64, u64)> = table.iter_mut().map(|(k, v)| (*k, *v)).collect();
        seen.sort();
        assert_eq!(seen.len(), 100);
        assert!(seen.contains(&(1000, 1001)) && seen.contains(&(7 << 32, 70)));
        let mut values: Vec<u64> = table.values().copied().collect();
        values.sort();
        let mut from_iter: Vec<u64> = table.iter().map(|(_, v)| *v).collect();
        from_iter.sort();
        assert_eq!(values, from_iter);
        assert_eq!(table.keys().count(), 100);
    }

    #[test]
    fn an_emptied_table_gives_its_memory_back() {
        let mut table = Table::default();
        for key in 0..5000u64 {
            table.insert(key, key);
        }
        for key in 0..5000u64 {
            table.remove(&key);
        }
        assert_eq!(table.values.capacity(), 0);
        assert!(table.free.is_empty());
    }
}
