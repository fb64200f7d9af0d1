//! File descriptors of the proxy: the soft `RLIMIT_NOFILE` is raised to the hard limit at start
//! (as nginx's `worker_rlimit_nofile` does), and the limit is shared out between client
//! connections and idle backend connections, so that running short is met by refusing new
//! clients rather than by failing requests to healthy backends.

use nix::sys::resource::{getrlimit, setrlimit, Resource};

/// Descriptors kept for everything else (listeners, the bus, logging, the state file, metrics).
const RESERVED: u64 = 64;

/// How the descriptor limit is shared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The soft limit in force.
    pub limit: u64,
    /// Open client connections allowed (each may hold one backend connection too).
    pub clients: usize,
    /// Idle backend connections kept over the whole process.
    pub idle_backends: usize,
}

impl Budget {
    /// A quarter of what is left after [`RESERVED`] goes to idle backend connections; the rest is
    /// shared by client connections, two descriptors each (the client's and its backend's).
    pub fn from_limit(limit: u64) -> Self {
        let usable = limit.saturating_sub(RESERVED).max(8);
        let idle = usable / 4;
        let clients = (usable - idle) / 2;
        Self {
            limit,
            clients: usize::try_from(clients).unwrap_or(usize::MAX).max(1),
            idle_backends: usize::try_from(idle).unwrap_or(usize::MAX),
        }
    }

    /// The budget for `max_clients` client connections set by the operator (or derived).
    pub fn with_clients(self, max_clients: Option<usize>) -> Self {
        match max_clients {
            Some(n) => Self {
                clients: n.max(1),
                ..self
            },
            None => self,
        }
    }
}

/// Raise the soft descriptor limit to the hard one (when it is lower) and return the limits
/// (soft, hard) in force; logs them.
pub fn raise_limit() -> (u64, u64) {
    let (soft, hard) = match getrlimit(Resource::RLIMIT_NOFILE) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "Could not read the file descriptor limit; assuming 1024");
            return (1024, 1024);
        }
    };
    if soft >= hard {
        tracing::info!(soft, hard, "File descriptor limit");
        return (soft, hard);
    }
    match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
        Ok(()) => {
            tracing::info!(soft = hard, hard, was = soft, "File descriptor limit raised");
            (hard, hard)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "Could not raise the file descriptor limit");
            (soft, hard)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budget_shares_the_limit() {
        let b = Budget::from_limit(1024);
        assert_eq!(b.idle_backends, 240);
        assert_eq!(b.clients, 360);
        assert!(b.clients * 2 + b.idle_backends + RESERVED as usize <= 1024);
        let tiny = Budget::from_limit(10);
        assert!(tiny.clients >= 1);
        assert_eq!(Budget::from_limit(1024).with_clients(Some(5)).clients, 5);
        let huge = Budget::from_limit(u64::MAX);
        assert!(huge.clients > 1_000_000);
    }

    #[test]
    fn raising_leaves_soft_at_most_hard() {
        let (soft, hard) = raise_limit();
        assert!(soft <= hard);
        let (s, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        assert_eq!(s, soft);
    }
}
