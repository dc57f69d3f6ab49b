//! Reading the API's bytes without re-serializing them: watch frames, list pages and `Status`
//! bodies (`frame`, `list_page`), the end of a streaming list's initial events (`bookmark`),
//! the lines of a chunked watch body (`lines`), what an event is known by (`event_view`, read
//! by `identity` through its fast scan `event_scan` or the serde reader `event_serde`), and
//! kubectl's recorded watch output (`kubectl_stream`, and `list_object` for the list chunks it
//! prints as frames). Every object leaves here as a slice of the input, so the output is byte
//! for byte what the server sent.

pub mod bookmark;
pub mod compact;
pub mod event_scan;
pub mod event_serde;
pub mod event_time;
pub mod event_view;
pub mod frame;
pub mod identity;
pub mod kubectl_stream;
pub mod lines;
pub mod list_object;
pub mod list_page;
pub mod text;
