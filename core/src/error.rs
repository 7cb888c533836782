//! Errors of the core, named for what went wrong rather than for any protocol's code. Each
//! adapter maps them to its own wire errors in one place.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A named vhost, exchange or queue does not exist.
    NotFound,
    /// An exclusive queue belongs to another connection.
    ResourceLocked,
    /// The object exists with other properties, or a precondition (if-unused, if-empty,
    /// single exclusive consumer) does not hold.
    PreconditionFailed,
    /// A reserved name, or a login or permission refusal.
    AccessRefused,
    /// The request is malformed in a way the protocol frames cannot express (bad argument).
    InvalidArgument,
    /// The operation is not allowed in the current state (e.g. vhost missing at login).
    NotAllowed,
    /// The store failed; the broker cannot promise durability.
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    pub kind: ErrorKind,
    pub message: String,
}

impl CoreError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        CoreError { kind, message: message.into() }
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }
    pub fn locked(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::ResourceLocked, message)
    }
    pub fn precondition(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::PreconditionFailed, message)
    }
    pub fn refused(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::AccessRefused, message)
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidArgument, message)
    }
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }
}

impl fmt::Display for CoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}: {}", self.kind, self.message)
    }
}

impl std::error::Error for CoreError {}

pub type CoreResult<T> = Result<T, CoreError>;
