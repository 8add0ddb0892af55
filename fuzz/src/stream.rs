//! Upstream event streams (the SSE parser and what the proxy does with its
//! events) and the Anthropic <-> OpenAI translation of requests, responses
//! and stream events.

use gatehouse::gateway::body::{ApiBody, BodyError};
use gatehouse::gateway::sse::{SseEvent, SseParser};
use gatehouse::gateway::stream::{finish, relay, relay_whole, Mode};
use gatehouse::gateway::translate::{
    anthropic_usage, chat_request_to_messages, chat_response_to_messages, messages_request_to_chat,
    messages_response_to_chat, openai_chunk_usage, openai_usage, usage_in_body,
    ChatStreamToMessages, MessagesStreamToChat,
};
use serde_json::Value;

/// Small enough that the fuzzer reaches "event too large".
const MAX_EVENT: usize = 4096;

/// Chunk lengths for `data`, from a generator seeded by the input and `salt`.
fn splits(data: &[u8], salt: u64) -> Vec<usize> {
    let mut seed = data.iter().fold(0xcbf2_9ce4_8422_2325_u64 ^ salt, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    });
    let mut left = data.len();
    let mut out = Vec::new();
    while left > 0 {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        // Mostly short chunks, sometimes empty ones, sometimes long ones.
        let n = match (seed >> 60) as u8 {
            0 => 0,
            1..=11 => 1 + (seed >> 33) as usize % 8,
            _ => 1 + (seed >> 33) as usize % 512,
        }
        .min(left);
        out.push(n);
        left -= n;
    }
    out
}

fn chunks<'a>(data: &'a [u8], lens: &[usize]) -> Vec<&'a [u8]> {
    let mut at = 0;
    lens.iter()
        .map(|&n| {
            let c = &data[at..at + n];
            at += n;
            c
        })
        .collect()
}

/// The events of `data` fed in these chunks, and whether it failed.
fn parse(chunks: &[&[u8]]) -> (Vec<SseEvent>, bool, usize) {
    let mut p = SseParser::new(MAX_EVENT);
    let mut out = Vec::new();
    for c in chunks {
        match p.feed(c) {
            Ok(evs) => out.extend(evs),
            Err(_) => return (out, true, p.pending()),
        }
        assert!(p.pending() <= MAX_EVENT, "the buffer stays bounded");
    }
    (out, false, p.pending())
}

/// Equal events; `raw` may lack the LF of a CRLF split after its final CR.
fn same(whole: &[SseEvent], split: &[SseEvent]) -> bool {
    whole.len() == split.len()
        && whole.iter().zip(split).all(|(w, s)| {
            w.event == s.event
                && w.data == s.data
                && (w.raw == s.raw
                    || (w.raw.ends_with(b"\r\n") && w.raw[..w.raw.len() - 1] == s.raw[..]))
        })
}

/// What the gateway writes to a client is SSE whose data is JSON (or `[DONE]`).
fn assert_valid_sse(out: &[u8]) {
    let events = SseParser::new(usize::MAX)
        .feed(out)
        .expect("the gateway writes UTF-8 SSE");
    for ev in events {
        assert!(
            ev.data.is_empty()
                || ev.data == "[DONE]"
                || serde_json::from_str::<Value>(&ev.data).is_ok(),
            "an event's data is JSON: {:?}",
            ev.data
        );
    }
}

fn modes() -> Vec<Mode> {
    vec![
        Mode::OpenAi { strip_usage: true },
        Mode::Anthropic,
        Mode::ChatToMessages(Box::new(ChatStreamToMessages::new(
            "claude-fuzz",
            "msg_fuzz",
        ))),
        Mode::MessagesToChat(Box::new(MessagesStreamToChat::new("gpt-fuzz", true))),
    ]
}

/// An upstream stream in arbitrary chunks: the parser gives the same events
/// however it is split, and each proxy mode (pass-through or translation)
/// turns it into valid client events.
pub fn sse_stream(data: &[u8]) {
    let (whole, failed, pending) = parse(&[data]);
    let bytewise: Vec<&[u8]> = data.chunks(1).collect();
    for split in [
        bytewise,
        chunks(data, &splits(data, 1)),
        chunks(data, &splits(data, 2)),
    ] {
        let (events, split_failed, split_pending) = parse(&split);
        assert_eq!(
            failed, split_failed,
            "an error does not depend on the split"
        );
        if !failed {
            assert!(same(&whole, &events), "the split changes the events");
            assert_eq!(pending, split_pending, "the split changes what is pending");
        }
    }
    let lens = splits(data, 3);
    let parts = chunks(data, &lens);
    for mut mode in modes() {
        let translating = matches!(mode, Mode::ChatToMessages(_) | Mode::MessagesToChat(_));
        let mut parser = SseParser::new(MAX_EVENT);
        let mut tokens = (0, 0);
        let mut out = Vec::new();
        let mut ok = true;
        for c in &parts {
            if relay(&mut parser, &mut mode, &mut tokens, c, &mut out).is_err() {
                ok = false; // the proxy ends the stream with an error event
                break;
            }
        }
        if ok {
            finish(&mut mode, &mut tokens, &mut out);
        }
        if translating {
            assert_valid_sse(&out);
        }
    }
    // The proxy's fast path: a chunk taken whole gives what `relay` writes.
    for strip_usage in [false, true] {
        let mode = || Mode::OpenAi { strip_usage };
        let (mut p1, mut m1, mut t1, mut o1) =
            (SseParser::new(MAX_EVENT), mode(), (0, 0), Vec::new());
        let (mut p2, mut m2, mut t2, mut o2) =
            (SseParser::new(MAX_EVENT), mode(), (0, 0), Vec::new());
        for c in &parts {
            let c = actix_web::web::Bytes::copy_from_slice(c);
            let whole = relay_whole(&mut p2, &m2, &mut t2, &c);
            if relay(&mut p1, &mut m1, &mut t1, &c, &mut o1).is_err() {
                assert!(
                    whole.is_none(),
                    "a chunk that fails the parser is not taken whole"
                );
                break;
            }
            match whole {
                Some(out) => o2.extend_from_slice(&out),
                None => relay(&mut p2, &mut m2, &mut t2, &c, &mut o2).unwrap(),
            }
            assert_eq!(o1, o2, "the fast path writes what relay writes");
            assert_eq!((t1, p1.pending()), (t2, p2.pending()));
        }
    }
}

/// One JSON document as a request, a response and stream events, in both
/// directions; what translates is translated back.
pub fn translate(data: &[u8]) {
    request_body(data);
    let Ok(v) = serde_json::from_slice::<Value>(data) else {
        return;
    };
    if let Ok(chat) = messages_request_to_chat(&v, "gpt-fuzz") {
        let _ = chat_request_to_messages(&chat, "claude-fuzz");
    }
    if let Ok(messages) = chat_request_to_messages(&v, "claude-fuzz") {
        let _ = messages_request_to_chat(&messages, "gpt-fuzz");
    }
    let _ = messages_response_to_chat(&chat_response_to_messages(&v, "claude-fuzz"), "gpt");
    let _ = chat_response_to_messages(&messages_response_to_chat(&v, "gpt-fuzz"), "claude");
    let _ = (openai_usage(&v), anthropic_usage(&v));
    let events: Vec<&Value> = match &v {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    let mut out = Vec::new();
    let mut to_messages = ChatStreamToMessages::new("claude-fuzz", "msg_fuzz");
    for e in &events {
        to_messages.on_chunk(e, &mut out);
    }
    to_messages.finish(&mut out);
    assert_valid_sse(&out);
    out.clear();
    let mut to_chat = MessagesStreamToChat::new("gpt-fuzz", true);
    for e in &events {
        to_chat.on_event(e, &mut out);
    }
    to_chat.finish(&mut out);
    assert_valid_sse(&out);
}

/// A request body kept as raw members (`ApiBody`) is what a parsed `Value`
/// is, and writes out as that value; the typed usage readers (of answers and
/// of stream chunks) agree with the `Value` helpers.
fn request_body(data: &[u8]) {
    let parsed = serde_json::from_slice::<Value>(data);
    // On a body that is valid JSON the typed reader gives what the `Value`
    // helpers give. (On one that is not, it may still read counts: like
    // serde skipping ignored fields, it does not check what it skips for
    // numbers out of range or bad UTF-8 in strings. An answer is passed on
    // as it came, and its counts are still worth recording.)
    if let Ok(v) = &parsed {
        let usage = |read: fn(&Value) -> Option<(u64, u64)>| {
            Some(v)
                .filter(|v| v.is_object())
                .and_then(|v| read(&serde_json::json!({ "usage": v["usage"] })))
                .unwrap_or_default()
        };
        assert_eq!(usage_in_body(data, false), usage(openai_usage));
        assert_eq!(usage_in_body(data, true), usage(anthropic_usage));
        let no_choices = v
            .get("choices")
            .and_then(Value::as_array)
            .is_some_and(Vec::is_empty);
        let chunk = openai_usage(v).map(|u| (u, no_choices));
        assert_eq!(openai_chunk_usage(data), chunk);
    }
    match (ApiBody::parse(data), &parsed) {
        (Ok(body), Ok(v)) => {
            assert!(v.is_object());
            let out: Value = serde_json::from_slice(&body.to_vec()).expect("written body is JSON");
            assert_eq!(&out, v);
            assert_eq!(body.to_value().as_ref().ok(), Some(v));
        }
        (Err(BodyError::NotObject), Ok(v)) => assert!(!v.is_object()),
        // serde_json refuses as a tree what nests deeper than 128 levels or
        // holds a number out of range, while raw members only have to be
        // well-formed (and a repeated key may have replaced the member a
        // tree refused): the body is what serde_json skips as well-formed,
        // and what is written out parses and writes out the same again.
        (Ok(body), Err(_)) => {
            assert!(serde_json::from_slice::<Box<serde_json::value::RawValue>>(data).is_ok());
            let out = body.to_vec();
            let again = ApiBody::parse(&out).expect("the written body parses");
            assert_eq!(again.to_vec(), out);
        }
        (Err(_), Err(_)) => {}
        (Err(e), Ok(v)) => panic!("{e:?} for a body that parses as {v}"),
    }
}
