//! The fuzz targets, one function each, so that the `cargo fuzz` binaries
//! (`fuzz_targets/*.rs`) and the replay test (`tests/replay.rs`) run the
//! same code. Every target calls Gatehouse's own parsers and checkers (the
//! `gatehouse` crate, some through `gatehouse::fuzzing`), never a copy.
//!
//! A target must not panic on any input: a panic is a bug in Gatehouse.
//! Some targets also check properties (an event stream split anywhere
//! parses the same; what the gateway writes to a client is valid SSE).

mod config;
mod http;
mod jwt;
mod llms;
mod stream;

pub use config::config_toml;
pub use http::headers;
pub use jwt::{external_accepts, external_jwt, gateway_accepts, gateway_token};
pub use llms::llms_import;
pub use stream::{sse_stream, translate};

use time::OffsetDateTime;

/// The clock of every target (2025-06-15), so that a saved input replays alike.
pub const NOW: i64 = 1_750_000_000;

fn now() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW).expect("a valid time")
}

/// The input as text, invalid UTF-8 replaced (the HTTP layer hands the
/// parsers `&str`; the replacement keeps the rest of the input useful).
fn text(data: &[u8]) -> std::borrow::Cow<'_, str> {
    String::from_utf8_lossy(data)
}

/// A target: its name (as in `fuzz/corpus/<name>`) and its function.
pub type Target = (&'static str, fn(&[u8]));

/// Every target.
pub const TARGETS: [Target; 7] = [
    ("gateway_token", gateway_token),
    ("external_jwt", external_jwt),
    ("headers", headers),
    ("config_toml", config_toml),
    ("sse_stream", sse_stream),
    ("llms_import", llms_import),
    ("translate", translate),
];
