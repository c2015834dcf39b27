//! Concurrent-connection limits over all services and per client address.
//!
//! ```text
//!   accept ──try_acquire(ip)──▶ Ok(ConnectionPermit) ── held by the Connection ── Drop: release
//!                          └──▶ Err(LimitHit::Total | LimitHit::PerIp) ──▶ refusal, close
//! ```
//!
//! One `Mutex` guards the total and the per-address counts together, held only for a counter
//! update and a map lookup, so the two can never disagree. Invariant: the map holds exactly the
//! addresses with at least one permit alive (an entry is removed when its count reaches zero),
//! so a scan from many addresses cannot grow it beyond `max_total` entries.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// Counts live connections; shared by every listener (clones share the counts).
#[derive(Clone)]
pub struct ConnectionLimiter {
    inner: Arc<Inner>,
}

struct Inner {
    max_total: usize,
    max_per_ip: u32,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, u32>,
}

/// Which limit refused a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LimitHit {
    /// `limits.max_connections`: the server as a whole is full.
    Total,
    /// `limits.max_connections_per_ip`: this client address has too many connections open.
    PerIp,
}

impl LimitHit {
    /// What a refused client is told (each protocol wraps it in its own reply syntax).
    pub fn reason(self) -> &'static str {
        match self {
            LimitHit::Total => "Too many connections",
            LimitHit::PerIp => "Too many connections from your address",
        }
    }
}

impl ConnectionLimiter {
    /// At most `max_total` connections at once, at most `max_per_ip` from one address. Zero
    /// refuses everything (config validation rejects zero).
    pub fn new(max_total: u32, max_per_ip: u32) -> Self {
        Self {
            inner: Arc::new(Inner {
                max_total: usize::try_from(max_total).unwrap_or(usize::MAX),
                max_per_ip,
                counts: Mutex::new(Counts::default()),
            }),
        }
    }

    /// Takes a slot for a connection from `ip`, or says which limit is reached. IPv4-mapped
    /// IPv6 addresses (`::ffff:192.0.2.1`, what a dual-stack socket reports) count as their
    /// IPv4 address; other IPv6 addresses count one by one.
    pub fn try_acquire(&self, ip: IpAddr) -> Result<ConnectionPermit, LimitHit> {
        let ip = ip.to_canonical();
        let mut counts = self.inner.lock();
        if counts.total >= self.inner.max_total {
            return Err(LimitHit::Total);
        }
        let per_ip = counts.per_ip.entry(ip).or_insert(0);
        if *per_ip >= self.inner.max_per_ip {
            if *per_ip == 0 {
                // Only possible with max_per_ip == 0; keep the invariant (no zero entries).
                counts.per_ip.remove(&ip);
            }
            return Err(LimitHit::PerIp);
        }
        *per_ip += 1;
        counts.total += 1;
        Ok(ConnectionPermit {
            limiter: Arc::clone(&self.inner),
            ip,
        })
    }

    /// Connections holding a permit now.
    pub fn active(&self) -> usize {
        self.inner.lock().total
    }

    /// Client addresses holding at least one permit now (the size of the per-address map).
    pub fn active_addresses(&self) -> usize {
        self.inner.lock().per_ip.len()
    }
}

impl Inner {
    /// A panic while holding the lock cannot leave the counts half-updated (each update is a
    /// couple of integer writes), so a poisoned lock is used as is.
    fn lock(&self) -> MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl fmt::Debug for ConnectionLimiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let counts = self.inner.lock();
        f.debug_struct("ConnectionLimiter")
            .field("max_total", &self.inner.max_total)
            .field("max_per_ip", &self.inner.max_per_ip)
            .field("active", &counts.total)
            .field("addresses", &counts.per_ip.len())
            .finish()
    }
}

/// One connection's slot; dropping it releases the slot (total and per address).
pub struct ConnectionPermit {
    limiter: Arc<Inner>,
    ip: IpAddr,
}

impl ConnectionPermit {
    /// The address this permit counts against (IPv4-mapped addresses as IPv4).
    pub fn ip(&self) -> IpAddr {
        self.ip
    }
}

impl fmt::Debug for ConnectionPermit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectionPermit")
            .field("ip", &self.ip)
            .finish()
    }
}

impl Drop for ConnectionPermit {
    fn drop(&mut self) {
        let mut counts = self.limiter.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(count) = counts.per_ip.get_mut(&self.ip) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.per_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn v4(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    #[test]
    fn per_ip_then_total() {
        let limiter = ConnectionLimiter::new(3, 2);
        let a1 = limiter.try_acquire(v4(1)).expect("a1");
        let a2 = limiter.try_acquire(v4(1)).expect("a2");
        assert_eq!(limiter.try_acquire(v4(1)).err(), Some(LimitHit::PerIp));
        let b1 = limiter.try_acquire(v4(2)).expect("b1");
        assert_eq!(limiter.try_acquire(v4(3)).err(), Some(LimitHit::Total));
        assert_eq!(limiter.active(), 3);
        assert_eq!(limiter.active_addresses(), 2);

        drop(a1);
        assert_eq!(limiter.active(), 2);
        let a3 = limiter.try_acquire(v4(1)).expect("a slot was released");
        drop((a2, a3, b1));
        assert_eq!(limiter.active(), 0);
        assert_eq!(limiter.active_addresses(), 0, "the map empties");
    }

    #[test]
    fn ipv4_mapped_counts_as_ipv4() {
        let limiter = ConnectionLimiter::new(10, 1);
        let _v4 = limiter.try_acquire(v4(7)).expect("v4");
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 7).to_ipv6_mapped());
        assert_eq!(limiter.try_acquire(mapped).err(), Some(LimitHit::PerIp));
        let v6 = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7));
        let permit = limiter
            .try_acquire(v6)
            .expect("a real IPv6 address is its own");
        assert_eq!(permit.ip(), v6);
    }

    #[test]
    fn zero_limits_refuse_and_leave_no_entry() {
        let limiter = ConnectionLimiter::new(5, 0);
        assert_eq!(limiter.try_acquire(v4(1)).err(), Some(LimitHit::PerIp));
        assert_eq!(limiter.active_addresses(), 0);
        let limiter = ConnectionLimiter::new(0, 5);
        assert_eq!(limiter.try_acquire(v4(1)).err(), Some(LimitHit::Total));
    }

    #[test]
    fn concurrent_acquire_and_release_balance() {
        let limiter = ConnectionLimiter::new(1000, 1000);
        std::thread::scope(|scope| {
            for thread in 0..8u8 {
                let limiter = limiter.clone();
                scope.spawn(move || {
                    for round in 0..2000u32 {
                        let ip = v4(thread.wrapping_mul(31).wrapping_add((round % 7) as u8));
                        let permit = limiter.try_acquire(ip).expect("under the limits");
                        drop(permit);
                    }
                });
            }
        });
        assert_eq!(limiter.active(), 0);
        assert_eq!(limiter.active_addresses(), 0);
    }
}
