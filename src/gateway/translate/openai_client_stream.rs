//! Anthropic Messages SSE events -> OpenAI chat.completion.chunk stream.
//!
//! All chunks share one id (`chatcmpl-` + the upstream message id when
//! `message_start` comes first, else a generated one), `created` and
//! `model`. With `include_usage` every chunk carries `"usage": null` and
//! `finish()` adds a `choices: []` chunk with the usage, as OpenAI does.
//! An Anthropic `error` event becomes `data: {"error": {...}}`; later events
//! are ignored, `finish()` still ends with `[DONE]`. Thinking blocks, `ping`
//! and unknown events produce nothing.

use super::{anthropic_usage, finish_reason, gen_id, now_secs};
use serde_json::{json, Value};
use std::io::Write;

fn data_line(out: &mut Vec<u8>, v: &Value) {
    let _ = write!(out, "data: {v}\n\n");
}

/// Converts one Anthropic streaming response into OpenAI chunks.
pub struct MessagesStreamToChat {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    emitted: bool,
    errored: bool,
    finished: bool,
    /// (Anthropic content block index, OpenAI tool_calls index).
    tool_blocks: Vec<(u64, usize)>,
    input: u64,
    output: u64,
}

impl MessagesStreamToChat {
    pub fn new(client_model: &str, include_usage: bool) -> Self {
        MessagesStreamToChat {
            id: format!("chatcmpl-{}", gen_id()),
            created: now_secs(),
            model: client_model.to_owned(),
            include_usage,
            emitted: false,
            errored: false,
            finished: false,
            tool_blocks: Vec::new(),
            input: 0,
            output: 0,
        }
    }

    /// (prompt/input tokens incl. cache, completion/output tokens) so far.
    pub fn usage(&self) -> (u64, u64) {
        (self.input, self.output)
    }

    fn chunk(&mut self, delta: Value, finish: Value, out: &mut Vec<u8>) {
        let mut c = json!({"id": self.id, "object": "chat.completion.chunk",
            "created": self.created, "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        if self.include_usage {
            c["usage"] = Value::Null;
        }
        data_line(out, &c);
        self.emitted = true;
    }

    /// One Anthropic event (its parsed `data:`; the name is the data's
    /// `"type"`, which always equals the `event:` name). Appends
    /// `data: {chunk}\n\n` lines to `out`.
    pub fn on_event(&mut self, data: &Value, out: &mut Vec<u8>) {
        if self.errored || self.finished {
            return;
        }
        if let Some((input, output)) = anthropic_usage(data) {
            self.input = self.input.max(input);
            self.output = self.output.max(output);
        }
        let index = data["index"].as_u64();
        match data["type"].as_str().unwrap_or_default() {
            "message_start" => {
                if let (false, Some(id)) = (self.emitted, data["message"]["id"].as_str()) {
                    self.id = format!("chatcmpl-{id}");
                }
                self.chunk(
                    json!({"role": "assistant", "content": ""}),
                    Value::Null,
                    out,
                );
            }
            "content_block_start" => {
                let block = &data["content_block"];
                match block["type"].as_str() {
                    Some("text") => self.text(&block["text"], out),
                    Some("tool_use") => {
                        let tool = self.tool_blocks.len();
                        self.tool_blocks.push((index.unwrap_or(u64::MAX), tool));
                        let (id, name) = (block["id"].as_str(), block["name"].as_str());
                        let call = json!({"index": tool, "id": id.unwrap_or_default(),
                            "type": "function",
                            "function": {"name": name.unwrap_or_default(), "arguments": ""}});
                        self.chunk(json!({"tool_calls": [call]}), Value::Null, out);
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => self.text(&delta["text"], out),
                    Some("input_json_delta") => {
                        let tool = self.tool_blocks.iter().find(|(b, _)| Some(*b) == index);
                        let args = delta["partial_json"].as_str().filter(|a| !a.is_empty());
                        if let (Some(&(_, tool)), Some(args)) = (tool, args) {
                            let call = json!({"index": tool, "function": {"arguments": args}});
                            self.chunk(json!({"tool_calls": [call]}), Value::Null, out);
                        }
                    }
                    _ => {} // thinking, signature, citations
                }
            }
            "message_delta" => {
                let reason =
                    finish_reason(data["delta"]["stop_reason"].as_str().unwrap_or_default());
                self.chunk(json!({}), json!(reason), out);
            }
            "error" => {
                let e = &data["error"];
                let message = e["message"].as_str().unwrap_or("upstream error");
                let ty = e["type"].as_str().unwrap_or("api_error");
                let error = json!({"message": message, "type": ty, "param": null, "code": null});
                data_line(out, &json!({ "error": error }));
                self.errored = true;
            }
            _ => {} // ping, content_block_stop, message_stop, unknown
        }
    }

    fn text(&mut self, text: &Value, out: &mut Vec<u8>) {
        if let Some(t) = text.as_str().filter(|t| !t.is_empty()) {
            self.chunk(json!({"content": t}), Value::Null, out);
        }
    }

    /// Appends the final usage chunk if include_usage, then `data: [DONE]\n\n`.
    /// Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.include_usage {
            let (p, c) = (self.input, self.output);
            let total = p.saturating_add(c);
            let usage = json!({"prompt_tokens": p, "completion_tokens": c, "total_tokens": total});
            data_line(
                out,
                &json!({"id": self.id, "object": "chat.completion.chunk", "created": self.created,
                    "model": self.model, "choices": [], "usage": usage}),
            );
        }
        out.extend_from_slice(b"data: [DONE]\n\n");
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::sse::SseParser;
    use super::*;

    const STREAM: &str = concat!(
        "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01X\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,\"usage\":{\"input_tokens\":25,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":100,\"output_tokens\":1}}}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\ndata: {\"type\": \"ping\"}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Checking\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
        "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_01A\",\"name\":\"get_weather\",\"input\":{}}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\"}}\n\n",
        "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"city\\\": \\\"Paris\\\"}\"}}\n\n",
        "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
        "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":42}}\n\n",
        "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    );

    fn run(body: &str, cut: usize, include_usage: bool) -> (String, MessagesStreamToChat) {
        let mut conv = MessagesStreamToChat::new("gpt-client", include_usage);
        conv.created = 7;
        let mut parser = SseParser::new(1 << 16);
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(cut) {
            for ev in parser.feed(piece).unwrap() {
                if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    conv.on_event(&v, &mut out);
                }
            }
        }
        conv.finish(&mut out);
        (String::from_utf8(out).unwrap(), conv)
    }

    fn c(delta: &str, finish: &str) -> String {
        format!("data: {{\"choices\":[{{\"delta\":{delta},\"finish_reason\":{finish},\"index\":0,\"logprobs\":null}}],\"created\":7,\"id\":\"chatcmpl-msg_01X\",\"model\":\"gpt-client\",\"object\":\"chat.completion.chunk\",\"usage\":null}}\n\n")
    }

    /// The `data:` payloads of an OpenAI stream (key order independent).
    fn lines(s: &str) -> Vec<Value> {
        assert!(s.ends_with("\n\n"));
        let blocks = s[..s.len() - 2].split("\n\n");
        let data = blocks.map(|b| b.strip_prefix("data: ").expect("data line"));
        data.map(|d| serde_json::from_str(d).unwrap_or(json!(d)))
            .collect()
    }

    #[test]
    fn text_and_tool_exact_sequence() {
        let want = [
            c("{\"content\":\"\",\"role\":\"assistant\"}", "null"),
            c("{\"content\":\"Checking\"}", "null"),
            c("{\"tool_calls\":[{\"function\":{\"arguments\":\"\",\"name\":\"get_weather\"},\"id\":\"toolu_01A\",\"index\":0,\"type\":\"function\"}]}", "null"),
            c("{\"tool_calls\":[{\"function\":{\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"},\"index\":0}]}", "null"),
            c("{}", "\"tool_calls\""),
            "data: {\"choices\":[],\"created\":7,\"id\":\"chatcmpl-msg_01X\",\"model\":\"gpt-client\",\"object\":\"chat.completion.chunk\",\"usage\":{\"completion_tokens\":42,\"prompt_tokens\":125,\"total_tokens\":167}}\n\n".into(),
            "data: [DONE]\n\n".into(),
        ]
        .concat();
        for cut in [1, 13, 100, STREAM.len()] {
            let (got, conv) = run(STREAM, cut, true);
            assert_eq!(lines(&got), lines(&want), "cut {cut}");
            assert_eq!(conv.usage(), (125, 42));
        }
        // Without include_usage: no usage keys, no usage chunk.
        let (got, _) = run(STREAM, 50, false);
        assert!(!got.contains("usage"));
        let got = lines(&got);
        assert_eq!(got.len(), 6);
        assert_eq!(got[4]["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(got[5], "[DONE]");
    }

    #[test]
    fn stop_reasons() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("refusal", "content_filter"),
        ] {
            let mut conv = MessagesStreamToChat::new("m", false);
            let mut out = Vec::new();
            conv.on_event(&json!({"type": "message_delta", "delta": {"stop_reason": stop}, "usage": {"output_tokens": 3}}), &mut out);
            let v: Value =
                serde_json::from_str(String::from_utf8(out).unwrap().trim_start_matches("data: "))
                    .unwrap();
            assert_eq!(v["choices"][0]["finish_reason"], finish);
            assert_eq!(v["choices"][0]["delta"], json!({}));
            assert_eq!(conv.usage(), (0, 3));
        }
    }

    #[test]
    fn error_event_and_hostile_events() {
        let body = STREAM.replace(
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}",
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}",
        );
        let (got, _) = run(&body, 9, false);
        let got = lines(&got);
        assert_eq!(got.len(), 4); // role, text, error, [DONE]
        let err = json!({"message": "Overloaded", "type": "overloaded_error", "param": null, "code": null});
        assert_eq!(got[2], json!({ "error": err }));
        assert_eq!(got[3], "[DONE]");

        let mut conv = MessagesStreamToChat::new("m", true);
        let mut out = Vec::new();
        for e in [
            json!(null),
            json!("message_start"),
            json!({"type": 5}),
            json!({"type": "message_start", "message": "x"}),
            json!({"type": "content_block_start", "index": "0", "content_block": {"type": "tool_use", "id": 1}}),
            json!({"type": "content_block_delta", "index": 9, "delta": {"type": "input_json_delta", "partial_json": "{"}}),
            json!({"type": "content_block_delta", "delta": {"type": "text_delta", "text": ["no"]}}),
            json!({"type": "message_delta", "delta": null, "usage": {"output_tokens": u64::MAX, "input_tokens": 1}}),
        ] {
            conv.on_event(&e, &mut out);
        }
        conv.finish(&mut out);
        conv.finish(&mut out);
        let s = String::from_utf8(out).unwrap();
        assert_eq!(s.matches("[DONE]").count(), 1);
        assert!(s.contains(&format!("\"total_tokens\":{}", u64::MAX)));
        for line in s
            .split("\n\n")
            .filter(|l| !l.is_empty() && *l != "data: [DONE]")
        {
            let v: Value = serde_json::from_str(line.strip_prefix("data: ").unwrap()).unwrap();
            assert_eq!(v["object"], "chat.completion.chunk");
        }
    }
}
