//! An in-process resolver for tests (here, in integration tests and in the queue's tests).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Mutex, MutexGuard};

use super::{DnsError, DnsFuture, MxRecord, Resolver, normalize};

/// One question the fake was asked, in the order asked, so tests can assert that a lookup
/// did not happen (e.g. no address lookup after a null MX).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Lookup {
    Mx(String),
    Addresses(String),
}

#[derive(Default)]
struct Zone {
    mx: HashMap<String, Result<Vec<MxRecord>, DnsError>>,
    addresses: HashMap<String, Result<Vec<IpAddr>, DnsError>>,
}

/// A resolver answering from tables. Like real DNS, a name with some records but none of the
/// type asked for answers empty (NODATA), and a name it knows nothing about answers NXDOMAIN.
/// Names are compared case-insensitively and without the final dot.
#[derive(Default)]
pub struct FakeResolver {
    zone: Mutex<Zone>,
    log: Mutex<Vec<Lookup>>,
}

// A panic in another test thread must not hide this fake's state from the rest of the test.
fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl FakeResolver {
    pub fn new() -> Self {
        Self::default()
    }

    /// MX records of `domain` as (preference, exchange); an empty slice makes it exist without MX.
    pub fn with_mx(self, domain: &str, records: &[(u16, &str)]) -> Self {
        let records = records.iter().map(|&(p, e)| MxRecord::new(p, e)).collect();
        lock(&self.zone).mx.insert(normalize(domain), Ok(records));
        self
    }

    /// A and AAAA addresses of `host`; an empty slice makes it exist without addresses.
    pub fn with_addresses(self, host: &str, addresses: &[IpAddr]) -> Self {
        let addresses = addresses.to_vec();
        lock(&self.zone)
            .addresses
            .insert(normalize(host), Ok(addresses));
        self
    }

    /// `name` does not exist: both lookups answer NXDOMAIN.
    pub fn with_nxdomain(self, name: &str) -> Self {
        self.with_mx_error(name, DnsError::NxDomain)
            .with_address_error(name, DnsError::NxDomain)
    }

    /// Both lookups for `name` fail temporarily (a timeout or SERVFAIL).
    pub fn with_temporary(self, name: &str, reason: &str) -> Self {
        let error = DnsError::Temporary(reason.to_string());
        self.with_mx_error(name, error.clone())
            .with_address_error(name, error)
    }

    pub fn with_mx_error(self, name: &str, error: DnsError) -> Self {
        lock(&self.zone).mx.insert(normalize(name), Err(error));
        self
    }

    pub fn with_address_error(self, name: &str, error: DnsError) -> Self {
        lock(&self.zone)
            .addresses
            .insert(normalize(name), Err(error));
        self
    }

    /// Every lookup so far, in order.
    pub fn lookups(&self) -> Vec<Lookup> {
        lock(&self.log).clone()
    }

    pub fn address_lookups(&self) -> usize {
        lock(&self.log)
            .iter()
            .filter(|l| matches!(l, Lookup::Addresses(_)))
            .count()
    }

    pub fn mx_lookups(&self) -> usize {
        lock(&self.log)
            .iter()
            .filter(|l| matches!(l, Lookup::Mx(_)))
            .count()
    }

    fn answer_mx(&self, domain: &str) -> Result<Vec<MxRecord>, DnsError> {
        let name = normalize(domain);
        lock(&self.log).push(Lookup::Mx(name.clone()));
        let zone = lock(&self.zone);
        match zone.mx.get(&name) {
            Some(answer) => answer.clone(),
            None if matches!(zone.addresses.get(&name), Some(Ok(_))) => Ok(Vec::new()),
            None => Err(DnsError::NxDomain),
        }
    }

    fn answer_addresses(&self, host: &str) -> Result<Vec<IpAddr>, DnsError> {
        let name = normalize(host);
        lock(&self.log).push(Lookup::Addresses(name.clone()));
        let zone = lock(&self.zone);
        match zone.addresses.get(&name) {
            Some(answer) => answer.clone(),
            None if matches!(zone.mx.get(&name), Some(Ok(_))) => Ok(Vec::new()),
            None => Err(DnsError::NxDomain),
        }
    }
}

impl Resolver for FakeResolver {
    fn mx<'a>(&'a self, domain: &'a str) -> DnsFuture<'a, Vec<MxRecord>> {
        let answer = self.answer_mx(domain);
        Box::pin(async move { answer })
    }

    fn addresses<'a>(&'a self, host: &'a str) -> DnsFuture<'a, Vec<IpAddr>> {
        let answer = self.answer_addresses(host);
        Box::pin(async move { answer })
    }
}
