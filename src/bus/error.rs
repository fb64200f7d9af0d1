//! The errors dewy's D-Bus methods answer with, under stable names (`io.dewy.Error.*`), so a
//! script or a `busctl call` can tell a refusal from a bad argument or a failed operation
//! without reading the message.

/// An error answered by a method of `io.dewy.Deployer1`, `io.dewy.Watcher1` or `io.dewy.Proxy1`.
#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.dewy.Error")]
pub enum BusError {
    /// Raised by the bus library itself.
    #[zbus(error)]
    ZBus(zbus::Error),
    /// `io.dewy.Error.AccessDenied`: the caller's uid may not call this method (see the table in
    /// docs/security.md).
    AccessDenied(String),
    /// `io.dewy.Error.InvalidArgs`: an argument is malformed or names nothing (a version, a
    /// backend address, a proxy port).
    InvalidArgs(String),
    /// `io.dewy.Error.WrongMode`: the method does not apply to this app's mode.
    WrongMode(String),
    /// `io.dewy.Error.Failed`: the operation was tried and failed; the message says why.
    Failed(String),
}

/// The result of a dewy D-Bus method.
pub type BusResult<T> = Result<T, BusError>;

impl From<crate::deploy::runtime::RuntimeError> for BusError {
    fn from(e: crate::deploy::runtime::RuntimeError) -> Self {
        use crate::deploy::runtime::RuntimeError;
        match e {
            RuntimeError::WrongMode(why) => BusError::WrongMode(why),
            RuntimeError::Failed(e) => BusError::Failed(format!("{e:#}")),
        }
    }
}
