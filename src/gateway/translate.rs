//! Anthropic Messages <-> OpenAI Chat Completions translation, both
//! directions, for requests, responses and streams. The code is split into
//! child modules under `translate/`; everything public is re-exported here:
//! * `anthropic_client`: client speaks Anthropic, upstream is OpenAI
//!   (`messages_request_to_chat`, `chat_response_to_messages`), and
//!   `anthropic_client_stream` (`ChatStreamToMessages`);
//! * `openai_client`: client speaks OpenAI, upstream is Anthropic
//!   (`chat_request_to_messages`, `messages_response_to_chat`), and
//!   `openai_client_stream` (`MessagesStreamToChat`).
//!
//! Choices beyond the plain field mapping:
//! * OpenAI `content_filter` maps to Anthropic `refusal` (and back); a
//!   response carrying tool calls whose finish_reason is `stop`/missing gets
//!   `tool_use`, since some OpenAI-compatible servers report `stop` there.
//! * Anthropic-only content (thinking, documents, images inside tool results)
//!   is dropped when going to OpenAI; unknown OpenAI content parts are a 400.
//! * Going to Anthropic: `temperature` is clamped to [0, 1], whitespace-only
//!   stop sequences are dropped and tool ids are reduced to `[A-Za-z0-9_-]`,
//!   all of which Anthropic would otherwise reject; empty text is dropped.
//! * `tool_choice` is only sent along with a non-empty `tools` list.

use serde_json::{json, Map, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

mod anthropic_client;
mod anthropic_client_stream;
mod openai_client;
mod openai_client_stream;

pub use anthropic_client::{chat_response_to_messages, messages_request_to_chat};
pub use anthropic_client_stream::ChatStreamToMessages;
pub use openai_client::{chat_request_to_messages, messages_response_to_chat};
pub use openai_client_stream::MessagesStreamToChat;

/// A translation failure; its message is meant for a 400 to the client.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TranslateError(pub String);

fn bad<T>(msg: impl Into<String>) -> Result<T, TranslateError> {
    Err(TranslateError(msg.into()))
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A process-unique id suffix (time + counter), e.g. for `msg_`/`chatcmpl-`.
fn gen_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{:x}{:06x}",
        nanos as u64,
        COUNTER.fetch_add(1, Ordering::Relaxed) & 0xff_ffff
    )
}

/// OpenAI `finish_reason` -> Anthropic `stop_reason`.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Anthropic `stop_reason` -> OpenAI `finish_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// Tool-call arguments (JSON text) -> an object; `{}` when unparsable.
fn parse_args(args: &Value) -> Value {
    match args {
        Value::String(s) => serde_json::from_str(s).ok().filter(Value::is_object),
        Value::Object(_) => Some(args.clone()),
        _ => None,
    }
    .unwrap_or_else(|| json!({}))
}

/// A string, or the text blocks/parts of an array joined with `sep`.
fn joined_text(v: &Value, sep: &str) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Array(a) => {
            let texts: Vec<&str> = a
                .iter()
                .filter(|b| b["type"] == "text")
                .filter_map(|b| b["text"].as_str())
                .collect();
            Some(texts.join(sep))
        }
        _ => None,
    }
}

fn present<'a>(obj: &'a Map<String, Value>, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn number<'a>(obj: &'a Map<String, Value>, key: &str) -> Result<Option<&'a Value>, TranslateError> {
    match present(obj, key) {
        Some(v) if !v.is_number() => bad(format!("{key}: must be a number")),
        v => Ok(v),
    }
}

fn positive_int(v: &Value, key: &str) -> Result<u64, TranslateError> {
    match v.as_u64() {
        Some(n) if n > 0 => Ok(n),
        _ => bad(format!("{key}: must be a positive integer")),
    }
}

fn flag(obj: &Map<String, Value>, key: &str) -> Result<Option<bool>, TranslateError> {
    match present(obj, key) {
        None => Ok(None),
        Some(v) => v
            .as_bool()
            .map(Some)
            .ok_or_else(|| TranslateError(format!("{key}: must be a boolean"))),
    }
}

fn body(req: &Value) -> Result<(&Map<String, Value>, &Vec<Value>), TranslateError> {
    let Some(obj) = req.as_object() else {
        return bad("request body must be a JSON object");
    };
    match obj.get("messages") {
        None | Some(Value::Null) => bad("messages: field required"),
        Some(Value::Array(msgs)) => Ok((obj, msgs)),
        Some(_) => bad("messages: must be an array"),
    }
}

/// `{"usage":{"prompt_tokens","completion_tokens"}}` of an OpenAI response or
/// chunk; `None` when usage is absent/null.
pub fn openai_usage(v: &Value) -> Option<(u64, u64)> {
    let u = v.get("usage").filter(|u| u.is_object())?;
    Some((
        u["prompt_tokens"].as_u64().unwrap_or(0),
        u["completion_tokens"].as_u64().unwrap_or(0),
    ))
}

/// Usage of an Anthropic message, `message_start` (from `message.usage`) or
/// `message_delta` event: (input + cache creation + cache read, output).
/// Anthropic reports cumulative counts, so a stream's total is the max of
/// each component over its events (`message_delta` may lack input: 0).
pub fn anthropic_usage(v: &Value) -> Option<(u64, u64)> {
    let u = if v["type"] == "message_start" {
        &v["message"]["usage"]
    } else {
        &v["usage"]
    };
    if !u.is_object() {
        return None;
    }
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let input = n("input_tokens")
        .saturating_add(n("cache_creation_input_tokens"))
        .saturating_add(n("cache_read_input_tokens"));
    Some((input, n("output_tokens")))
}

/// The usage of a whole (non-stream) answer, read without building its JSON
/// tree: what `openai_usage` (or, with `anthropic`, `anthropic_usage`) gives
/// for the parsed body, `(0, 0)` when it has none or is not JSON.
pub fn usage_in_body(body: &[u8], anthropic: bool) -> (u64, u64) {
    let Ok(top) = serde_json::from_slice::<usage::Top>(body) else {
        return (0, 0);
    };
    match (anthropic, top.usage.0) {
        (true, Some(c)) => (
            c.input_tokens
                .0
                .saturating_add(c.cache_creation_input_tokens.0)
                .saturating_add(c.cache_read_input_tokens.0),
            c.output_tokens.0,
        ),
        (false, Some(c)) => (c.prompt_tokens.0, c.completion_tokens.0),
        (_, None) => (0, 0),
    }
}

/// The usage of an OpenAI stream chunk's data, read as [`usage_in_body`]
/// reads an answer: what `openai_usage` gives for the parsed chunk (`None`
/// when it is not JSON), and whether its `choices` is an empty array (a
/// usage-only chunk).
pub fn openai_chunk_usage(data: &[u8]) -> Option<((u64, u64), bool)> {
    let top = serde_json::from_slice::<usage::Top>(data).ok()?;
    let c = top.usage.0?;
    Some(((c.prompt_tokens.0, c.completion_tokens.0), top.no_choices.0))
}

/// The token counts of a `usage` object (other fields skipped; a repeated
/// field keeps its last value, as in a `Value`).
#[derive(Default)]
struct Counts {
    prompt_tokens: usage::Count,
    completion_tokens: usage::Count,
    input_tokens: usage::Count,
    cache_creation_input_tokens: usage::Count,
    cache_read_input_tokens: usage::Count,
    output_tokens: usage::Count,
}

/// `Some` for an object, `None` for any other JSON value (skipped).
#[derive(Default)]
struct Lenient<T>(Option<T>);

mod usage {
    use super::{Counts, Lenient};
    use serde::de::{
        self, Deserialize, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor,
    };
    use std::fmt;
    use std::marker::PhantomData;

    /// A count as `Value::as_u64` reads it: a non-negative integer, else 0.
    #[derive(Default)]
    pub struct Count(pub u64);

    /// What any JSON value reads as: a number through `scalar`, an object
    /// through `object` (skipped unless overridden), anything else skipped.
    trait FromAny: Sized {
        fn scalar(n: Option<u64>) -> Self;
        fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Self::scalar(None))
        }
        fn array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(Self::scalar(None))
        }
    }

    /// Whether a value is an empty array.
    #[derive(Default)]
    pub struct EmptyArray(pub bool);

    impl FromAny for EmptyArray {
        fn scalar(_: Option<u64>) -> Self {
            EmptyArray(false)
        }
        fn array<'de, A: SeqAccess<'de>>(mut seq: A) -> Result<Self, A::Error> {
            let empty = seq.next_element::<IgnoredAny>()?.is_none();
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(EmptyArray(empty))
        }
    }

    impl FromAny for Count {
        fn scalar(n: Option<u64>) -> Self {
            Count(n.unwrap_or(0))
        }
    }

    /// Anything but an object reads as no usage, like `openai_usage`.
    impl FromAny for Lenient<Counts> {
        fn scalar(_: Option<u64>) -> Self {
            Lenient(None)
        }
        fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
            const FIELDS: &[&str] = &[
                "prompt_tokens",
                "completion_tokens",
                "input_tokens",
                "cache_creation_input_tokens",
                "cache_read_input_tokens",
                "output_tokens",
            ];
            let mut c = Counts::default();
            while let Some(key) = map.next_key_seed(KeyIn(FIELDS))? {
                let field = match key {
                    Some("prompt_tokens") => &mut c.prompt_tokens,
                    Some("completion_tokens") => &mut c.completion_tokens,
                    Some("input_tokens") => &mut c.input_tokens,
                    Some("cache_creation_input_tokens") => &mut c.cache_creation_input_tokens,
                    Some("cache_read_input_tokens") => &mut c.cache_read_input_tokens,
                    Some("output_tokens") => &mut c.output_tokens,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                        continue;
                    }
                };
                *field = map.next_value()?;
            }
            Ok(Lenient(Some(c)))
        }
    }

    /// Which of these names an object key is (`None`: another), read
    /// without copying the key.
    struct KeyIn(&'static [&'static str]);

    impl<'de> DeserializeSeed<'de> for KeyIn {
        type Value = Option<&'static str>;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_str(self)
        }
    }

    impl<'de> Visitor<'de> for KeyIn {
        type Value = Option<&'static str>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an object key")
        }
        fn visit_str<E: de::Error>(self, key: &str) -> Result<Self::Value, E> {
            Ok(self.0.iter().find(|name| **name == key).copied())
        }
    }

    struct AnyValue<T>(PhantomData<T>);

    impl<'de, T: FromAny> Visitor<'de> for AnyValue<T> {
        type Value = T;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_u64<E: de::Error>(self, n: u64) -> Result<T, E> {
            Ok(T::scalar(Some(n)))
        }
        fn visit_i64<E: de::Error>(self, n: i64) -> Result<T, E> {
            Ok(T::scalar(u64::try_from(n).ok()))
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<T, E> {
            Ok(T::scalar(None))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<T, E> {
            Ok(T::scalar(None))
        }
        fn visit_str<E: de::Error>(self, _: &str) -> Result<T, E> {
            Ok(T::scalar(None))
        }
        fn visit_unit<E: de::Error>(self) -> Result<T, E> {
            Ok(T::scalar(None))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<T, A::Error> {
            T::array(seq)
        }
        fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::object(map)
        }
    }

    impl<'de> Deserialize<'de> for Count {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(AnyValue(PhantomData))
        }
    }

    /// An answer's or a chunk's `usage` member, and whether its `choices`
    /// is an empty array (a repeated member keeps its last value).
    #[derive(Default)]
    pub struct Top {
        pub usage: Lenient<Counts>,
        pub no_choices: EmptyArray,
    }

    impl FromAny for Top {
        fn scalar(_: Option<u64>) -> Self {
            Top::default()
        }
        fn object<'de, A: MapAccess<'de>>(mut map: A) -> Result<Self, A::Error> {
            let mut top = Top::default();
            while let Some(key) = map.next_key_seed(KeyIn(&["usage", "choices"]))? {
                match key {
                    Some("usage") => top.usage = map.next_value()?,
                    Some("choices") => top.no_choices = map.next_value()?,
                    _ => {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
            }
            Ok(top)
        }
    }

    impl<'de> Deserialize<'de> for Top {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(AnyValue(PhantomData))
        }
    }

    impl<'de> Deserialize<'de> for EmptyArray {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(AnyValue(PhantomData))
        }
    }

    impl<'de> Deserialize<'de> for Lenient<Counts> {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            d.deserialize_any(AnyValue(PhantomData))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_helpers() {
        let chunk =
            json!({"usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15}});
        assert_eq!(openai_usage(&chunk), Some((12, 3)));
        assert_eq!(openai_usage(&json!({"usage": null})), None);
        assert_eq!(openai_usage(&json!({"choices": []})), None);
        assert_eq!(openai_usage(&json!([1])), None);
        assert_eq!(
            openai_usage(&json!({"usage": {"prompt_tokens": "x"}})),
            Some((0, 0))
        );

        let usage = json!({"input_tokens": 10, "cache_creation_input_tokens": 20,
            "cache_read_input_tokens": 30, "output_tokens": 1});
        let start = json!({"type": "message_start", "message": {"usage": usage}});
        assert_eq!(anthropic_usage(&start), Some((60, 1)));
        let message = json!({"type": "message", "usage": usage});
        assert_eq!(anthropic_usage(&message), Some((60, 1)));
        let delta = json!({"type": "message_delta", "usage": {"output_tokens": 99}});
        assert_eq!(anthropic_usage(&delta), Some((0, 99)));
        assert_eq!(anthropic_usage(&json!({"type": "ping"})), None);
        assert_eq!(anthropic_usage(&json!({"type": "message_start"})), None);
        assert_eq!(anthropic_usage(&json!("x")), None);
        let max = json!({"usage": {"input_tokens": u64::MAX, "cache_read_input_tokens": 5}});
        assert_eq!(anthropic_usage(&max), Some((u64::MAX, 0)));
    }

    /// `usage_in_body` reads what the `Value` helpers read from the parsed body.
    #[test]
    fn usage_readers_agree_with_the_value_helpers() {
        let bodies = [
            r#"{"id":"x","choices":[{"message":{"content":"{\"usage\":{\"prompt_tokens\":9}}"}}],"usage":{"prompt_tokens":5,"completion_tokens":7,"total_tokens":12}}"#,
            r#"{"usage":{"prompt_tokens":"5","completion_tokens":-1}}"#,
            r#"{"usage":{"prompt_tokens":1.5,"completion_tokens":null,"extra":{"a":[1,{"b":2}]}}}"#,
            r#"{"usage":{"prompt_tokens":18446744073709551615,"completion_tokens":[1]}}"#,
            r#"{"usage":null}"#,
            r#"{"usage":"12"}"#,
            r#"{"usage":[{"prompt_tokens":3}]}"#,
            r#"{"usage":7}"#,
            r#"{"choices":[]}"#,
            r#"[1,2]"#,
            r#"[{"prompt_tokens":5,"completion_tokens":1}]"#,
            r#" [{"usage":{"prompt_tokens":5}}]"#,
            r#"  {"usage":{"prompt_tokens":6}} "#,
            r#""usage""#,
            r#"{"usage":{"prompt_tokens":3}"#,
            r#"not json"#,
            "",
            r#"{"type":"message","usage":{"input_tokens":10,"cache_creation_input_tokens":20,"cache_read_input_tokens":30,"output_tokens":4}}"#,
            r#"{"type":"message_start","usage":{"input_tokens":10},"message":{"usage":{"input_tokens":3}}}"#,
            r#"{"type":7,"usage":{"input_tokens":10,"output_tokens":true}}"#,
            r#"{"usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":5}}"#,
            r#"{"usage":{"prompt_tokens":2,"input_tokens":3,"output_tokens":4,"completion_tokens":5}}"#,
            r#"{"usage":{"input_tokens":1,"output_tokens":2,"input_tokens":3,"cache_read_input_tokens":4,"output_tokens":"x"}}"#,
            r#"{"usage":{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":3}}"#,
            r#"{"usage":{"prompt_tokens":1},"x":[{"usage":{"prompt_tokens":9}}],"usage":{"completion_tokens":3}}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
            r#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":1}}"#,
            r#"{"usage":{},"choices":{}}"#,
            r#"{"usage":{},"choices":"[]"}"#,
            r#"{"usage":{},"choices":[[]]}"#,
            r#"{"usage":{},"choices":null}"#,
            r#"{"choices":[],"usage":{},"choices":[1]}"#,
            r#"{"choices":[1],"usage":{},"choices":[ ]}"#,
            r#"{"choices":[],"usage":null}"#,
        ];
        for body in bodies {
            let v: Option<Value> = serde_json::from_str(body).ok();
            let want = |read: fn(&Value) -> Option<(u64, u64)>| {
                v.as_ref()
                    .filter(|v| v.is_object())
                    .map(|v| json!({"usage": v.get("usage").cloned().unwrap_or(Value::Null)}))
                    .and_then(|v| read(&v))
                    .unwrap_or_default()
            };
            assert_eq!(
                usage_in_body(body.as_bytes(), false),
                want(openai_usage),
                "{body}"
            );
            assert_eq!(
                usage_in_body(body.as_bytes(), true),
                want(anthropic_usage),
                "{body}"
            );
            let chunk = v.as_ref().and_then(|v| {
                let no_choices = v
                    .get("choices")
                    .and_then(Value::as_array)
                    .is_some_and(Vec::is_empty);
                openai_usage(v).map(|u| (u, no_choices))
            });
            assert_eq!(openai_chunk_usage(body.as_bytes()), chunk, "{body}");
        }
    }

    #[test]
    fn helpers() {
        assert_eq!(parse_args(&json!("{\"a\":1}")), json!({"a": 1}));
        for bad in [
            json!("{\"a\":"),
            json!("[1]"),
            json!(""),
            json!(null),
            json!(3),
        ] {
            assert_eq!(parse_args(&bad), json!({}));
        }
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| gen_id()).collect();
        assert_eq!(ids.len(), 1000);
        let err = TranslateError("messages: field required".into());
        assert_eq!(err.to_string(), "messages: field required");
    }
}
