//! Junction's STOMP adapter: STOMP 1.0, 1.1 and 1.2 (also over WebSocket) on the shared core,
//! with RabbitMQ's destination grammar. Framing in `codec`/`frame`.

pub mod codec;
pub mod frame;
