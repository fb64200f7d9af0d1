//! How long the sender of a body may take: an idle bound on each read and, optionally, a minimum
//! rate over the whole body.

use std::io;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::net::TcpStream;

use super::read_some;

/// Room made while streaming a body.
const READ_CHUNK: usize = 64 * 1024;

/// How long the sender of a body may take: at most `idle` for each wait and, with a rate floor,
/// no more waiting in all than `grace` plus one second per `min_rate` bytes received (a client
/// that trickles a body cannot hold the connection by sending a byte now and then).
#[derive(Debug, Clone, Copy)]
pub struct Pace {
    idle: Duration,
    floor: Option<(Duration, u64)>,
}

impl Pace {
    /// Only the wait for each read is bounded.
    pub const fn idle(idle: Duration) -> Self {
        Self { idle, floor: None }
    }

    /// Each wait bounded by `idle`, and the whole body by the rate floor.
    pub const fn floor(idle: Duration, grace: Duration, min_rate: u64) -> Self {
        Self {
            idle,
            floor: Some((grace, min_rate)),
        }
    }
}

/// The waiting a body's sender has used so far under its [`Pace`].
pub(super) struct Clock {
    pace: Pace,
    waited: Duration,
    received: u64,
}

impl Clock {
    pub(super) fn new(pace: Pace) -> Self {
        Self {
            pace,
            waited: Duration::ZERO,
            received: 0,
        }
    }

    /// The bound on each single wait.
    pub(super) fn idle(&self) -> Duration {
        self.pace.idle
    }

    /// The longest the next read may wait, and whether that bound is the rate floor's.
    fn next_wait(&self) -> (Duration, bool) {
        let Some((grace, min_rate)) = self.pace.floor else {
            return (self.pace.idle, false);
        };
        let earned = Duration::from_secs(self.received / min_rate.max(1));
        let left = (grace + earned).saturating_sub(self.waited);
        if left < self.pace.idle {
            (left, true)
        } else {
            (self.pace.idle, false)
        }
    }

    fn took(&mut self, waited: Duration, bytes: usize) {
        self.waited += waited;
        self.received += bytes as u64;
    }
}

/// Read into `buf` under `clock`; `Ok(0)` is end of stream.
pub(super) async fn read_paced(
    from: &mut TcpStream,
    buf: &mut BytesMut,
    clock: &mut Clock,
) -> io::Result<usize> {
    buf.reserve(READ_CHUNK);
    let (wait, by_floor) = clock.next_wait();
    let started = Instant::now();
    match read_some(from, buf, wait).await {
        Ok(n) => {
            clock.took(started.elapsed(), n);
            Ok(n)
        }
        Err(e) if by_floor && e.kind() == io::ErrorKind::TimedOut => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the body arrived slower than the minimum rate",
        )),
        Err(e) => Err(e),
    }
}
