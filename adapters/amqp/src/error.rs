//! The one place where failures become AMQP reply codes. A channel error closes only its
//! channel; a connection error closes the connection.

use crate::codec::FrameError;
use amq_protocol::protocol::AMQPClass;
use junction_core::{CoreError, ErrorKind};

pub const REPLY_SUCCESS: u16 = 200;
pub const CONTENT_TOO_LARGE: u16 = 311;
pub const NO_ROUTE: u16 = 312;
pub const CONNECTION_FORCED: u16 = 320;
pub const ACCESS_REFUSED: u16 = 403;
pub const NOT_FOUND: u16 = 404;
pub const RESOURCE_LOCKED: u16 = 405;
pub const PRECONDITION_FAILED: u16 = 406;
pub const FRAME_ERROR: u16 = 501;
pub const SYNTAX_ERROR: u16 = 502;
pub const COMMAND_INVALID: u16 = 503;
pub const CHANNEL_ERROR: u16 = 504;
pub const UNEXPECTED_FRAME: u16 = 505;
pub const RESOURCE_ERROR: u16 = 506;
pub const NOT_ALLOWED: u16 = 530;
pub const NOT_IMPLEMENTED: u16 = 540;
pub const INTERNAL_ERROR: u16 = 541;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpError {
    pub code: u16,
    pub text: String,
    /// The method that failed (0, 0 when none).
    pub class_id: u16,
    pub method_id: u16,
    /// True for errors that close the whole connection.
    pub connection: bool,
}

impl AmqpError {
    pub fn channel(code: u16, text: impl Into<String>) -> Self {
        AmqpError { code, text: text.into(), class_id: 0, method_id: 0, connection: false }
    }

    pub fn connection(code: u16, text: impl Into<String>) -> Self {
        AmqpError { code, text: text.into(), class_id: 0, method_id: 0, connection: true }
    }

    /// Names the method that caused the error.
    pub fn during(mut self, method: &AMQPClass) -> Self {
        self.class_id = method.get_amqp_class_id();
        self.method_id = method.get_amqp_method_id();
        self
    }

    /// The reply text as RabbitMQ words it: the code's name, a dash, the reason.
    pub fn reply_text(&self) -> String {
        let name = match self.code {
            CONTENT_TOO_LARGE => "CONTENT_TOO_LARGE",
            NO_ROUTE => "NO_ROUTE",
            CONNECTION_FORCED => "CONNECTION_FORCED",
            ACCESS_REFUSED => "ACCESS_REFUSED",
            NOT_FOUND => "NOT_FOUND",
            RESOURCE_LOCKED => "RESOURCE_LOCKED",
            PRECONDITION_FAILED => "PRECONDITION_FAILED",
            FRAME_ERROR => "FRAME_ERROR",
            SYNTAX_ERROR => "SYNTAX_ERROR",
            COMMAND_INVALID => "COMMAND_INVALID",
            CHANNEL_ERROR => "CHANNEL_ERROR",
            UNEXPECTED_FRAME => "UNEXPECTED_FRAME",
            RESOURCE_ERROR => "RESOURCE_ERROR",
            NOT_ALLOWED => "NOT_ALLOWED",
            NOT_IMPLEMENTED => "NOT_IMPLEMENTED",
            INTERNAL_ERROR => "INTERNAL_ERROR",
            _ => "ERROR",
        };
        let text = format!("{name} - {}", self.text);
        // A reply text is a short string.
        let mut end = text.len().min(255);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text[..end].to_string()
    }
}

impl From<CoreError> for AmqpError {
    fn from(e: CoreError) -> Self {
        match e.kind {
            ErrorKind::NotFound => AmqpError::channel(NOT_FOUND, e.message),
            ErrorKind::ResourceLocked => AmqpError::channel(RESOURCE_LOCKED, e.message),
            ErrorKind::PreconditionFailed | ErrorKind::InvalidArgument => {
                AmqpError::channel(PRECONDITION_FAILED, e.message)
            }
            ErrorKind::AccessRefused => AmqpError::channel(ACCESS_REFUSED, e.message),
            ErrorKind::NotAllowed => AmqpError::connection(NOT_ALLOWED, e.message),
            ErrorKind::Internal => AmqpError::connection(INTERNAL_ERROR, e.message),
        }
    }
}

impl From<&FrameError> for AmqpError {
    fn from(e: &FrameError) -> Self {
        // RabbitMQ answers undecodable frames of any kind with FRAME_ERROR, naming the method.
        let (code, class_id, method_id) = match *e {
            FrameError::UnknownMethod { class, method } => (NOT_IMPLEMENTED, class, method),
            FrameError::Syntax { class, method, .. } => (FRAME_ERROR, class, method),
            FrameError::Io(_) => (INTERNAL_ERROR, 0, 0),
            _ => (FRAME_ERROR, 0, 0),
        };
        AmqpError { class_id, method_id, ..AmqpError::connection(code, e.to_string()) }
    }
}

pub type AmqpResult<T> = Result<T, AmqpError>;
