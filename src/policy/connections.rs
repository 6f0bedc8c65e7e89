//! Connection policy: caps on connections in total and per client address, and a count of
//! what is open so that shutdown can wait for it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

pub struct ConnectionLimiter {
    max_total: usize,
    max_per_ip: usize,
    state: Mutex<Counts>,
    all_closed: Notify,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Why a connection was turned away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    TooManyInTotal,
    TooManyFromAddress,
}

/// Holds one connection's place; dropping it frees the place.
pub struct ConnectionSlot {
    limiter: Arc<ConnectionLimiter>,
    ip: IpAddr,
}

impl ConnectionLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnectionLimiter> {
        Arc::new(ConnectionLimiter {
            max_total,
            max_per_ip,
            state: Mutex::new(Counts::default()),
            all_closed: Notify::new(),
        })
    }

    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Result<ConnectionSlot, Refusal> {
        let ip = network_of(ip);
        let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if counts.total >= self.max_total {
            return Err(Refusal::TooManyInTotal);
        }
        let from_ip = counts.per_ip.entry(ip).or_insert(0);
        if *from_ip >= self.max_per_ip {
            return Err(Refusal::TooManyFromAddress);
        }
        *from_ip += 1;
        counts.total += 1;
        Ok(ConnectionSlot {
            limiter: Arc::clone(self),
            ip,
        })
    }

    pub fn open_connections(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).total
    }

    /// Resolves when no connection is open.
    pub async fn wait_until_idle(&self) {
        loop {
            let notified = self.all_closed.notified();
            if self.open_connections() == 0 {
                return;
            }
            notified.await;
        }
    }

    fn release(&self, ip: IpAddr) {
        let mut counts = self.state.lock().unwrap_or_else(|p| p.into_inner());
        counts.total -= 1;
        if let Some(from_ip) = counts.per_ip.get_mut(&ip) {
            *from_ip -= 1;
            if *from_ip == 0 {
                counts.per_ip.remove(&ip);
            }
        }
        if counts.total == 0 {
            self.all_closed.notify_waiters();
        }
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        self.limiter.release(self.ip);
    }
}

/// What the per-address cap counts: the IPv4 address, or the IPv6 /64 (one customer's network:
/// counting single IPv6 addresses would give anyone 2^64 of them).
fn network_of(ip: IpAddr) -> IpAddr {
    match canonical(ip) {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// An IPv4 client on a dual-stack socket shows up as ::ffff:a.b.c.d; count it as a.b.c.d.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_per_address_and_in_total() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let first = limiter.admit(a).unwrap();
        let _second = limiter.admit(a).unwrap();
        assert_eq!(limiter.admit(a).err(), Some(Refusal::TooManyFromAddress));
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(
            limiter.admit(mapped).err(),
            Some(Refusal::TooManyFromAddress)
        );
        let _third = limiter.admit(b).unwrap();
        assert_eq!(limiter.admit(b).err(), Some(Refusal::TooManyInTotal));
        drop(first);
        let _again = limiter.admit(a).unwrap();
        assert_eq!(limiter.open_connections(), 3);
    }

    #[test]
    fn ipv6_clients_are_capped_per_64() {
        let limiter = ConnectionLimiter::new(10, 1);
        let _first = limiter.admit("2001:db8:1:2::1".parse().unwrap()).unwrap();
        assert_eq!(
            limiter.admit("2001:db8:1:2::ffff".parse().unwrap()).err(),
            Some(Refusal::TooManyFromAddress)
        );
        assert!(limiter.admit("2001:db8:1:3::1".parse().unwrap()).is_ok());
    }

    #[tokio::test]
    async fn waits_until_every_connection_is_closed() {
        let limiter = ConnectionLimiter::new(10, 10);
        let slot = limiter.admit("127.0.0.1".parse().unwrap()).unwrap();
        let waiter = tokio::spawn({
            let limiter = Arc::clone(&limiter);
            async move { limiter.wait_until_idle().await }
        });
        tokio::task::yield_now().await;
        assert!(!waiter.is_finished());
        drop(slot);
        waiter.await.unwrap();
    }
}
