//! Who called a D-Bus method: the caller's uid, asked of the bus daemon, checked against the
//! callers a method admits (a second line behind the bus policy in `io.dewy.conf`).

use std::sync::OnceLock;

use zbus::message::Header;
use zbus::names::BusName;
use zbus::{fdo, Connection};

/// The system user the watcher and the proxy run as (`packaging/sysusers.d/dewy.conf`).
pub const WATCHER_USER: &str = "dewy";

/// Who may call a method.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// Root or the daemon's own user: operator commands and the deployer's calls.
    Operator,
    /// Also the watcher's user ([`WATCHER_USER`]): the deployer's `Offer`.
    Watcher,
}

/// The uid of the watcher's user, when it exists on this host.
fn watcher_uid() -> Option<u32> {
    static UID: OnceLock<Option<u32>> = OnceLock::new();
    *UID.get_or_init(|| {
        nix::unistd::User::from_name(WATCHER_USER)
            .ok()
            .flatten()
            .map(|u| u.uid.as_raw())
    })
}

/// Whether `uid` may call a method open to `who`, in a daemon running as `own`.
pub fn admits(who: Caller, uid: u32, own: u32, watcher: Option<u32>) -> bool {
    uid == 0 || uid == own || (who == Caller::Watcher && watcher == Some(uid))
}

/// Refuse the call (`AccessDenied`) unless its sender's uid is admitted for `who`. The uid comes
/// from the bus daemon (`GetConnectionUnixUser`), which read it from the socket; a caller that
/// cannot be identified is refused.
pub async fn require(
    conn: &Connection,
    header: &Header<'_>,
    who: Caller,
    method: &str,
) -> super::error::BusResult<()> {
    let Some(sender) = header.sender() else {
        // A peer-to-peer connection has no bus daemon in between: only the peer that opened it.
        return Ok(());
    };
    let bus = fdo::DBusProxy::new(conn).await.map_err(|e| {
        super::error::BusError::AccessDenied(format!("{method}: cannot identify the caller: {e}"))
    })?;
    let uid = bus
        .get_connection_unix_user(BusName::from(sender.to_owned()))
        .await
        .map_err(|e| {
            super::error::BusError::AccessDenied(format!("{method}: cannot identify the caller: {e}"))
        })?;
    let own = nix::unistd::geteuid().as_raw();
    if admits(who, uid, own, watcher_uid()) {
        return Ok(());
    }
    tracing::warn!(uid, method, sender = %sender, "D-Bus call refused: caller not allowed");
    Err(super::error::BusError::AccessDenied(format!(
        "{method} is not allowed for uid {uid}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn who_is_admitted() {
        let dewy = Some(990);
        assert!(admits(Caller::Operator, 0, 0, dewy));
        assert!(admits(Caller::Watcher, 990, 0, dewy));
        assert!(
            !admits(Caller::Operator, 990, 0, dewy),
            "the watcher's user is no operator"
        );
        assert!(!admits(Caller::Watcher, 1000, 0, dewy));
        assert!(!admits(Caller::Watcher, 1000, 0, None));
        // A daemon run by an ordinary user (session bus) serves that user.
        assert!(admits(Caller::Operator, 1000, 1000, None));
        assert!(!admits(Caller::Operator, 1001, 1000, None));
    }
}
