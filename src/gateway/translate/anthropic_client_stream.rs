//! OpenAI chat.completion.chunk stream -> Anthropic Messages SSE events.
//!
//! Emits `message_start` at the first chunk, one content block at a time
//! (`content_block_start` / `_delta` / `_stop`), then on `finish()`
//! `message_delta` (stop_reason, usage) and `message_stop`, exactly in the
//! order Anthropic's API does (no `ping`). An OpenAI `{"error":..}` chunk
//! becomes an Anthropic `error` event and ends the stream (`finish()` then
//! adds nothing). Limitation: Anthropic blocks cannot be reopened, so when an
//! upstream interleaves the argument deltas of parallel tool calls, deltas
//! for an already-closed call are dropped (OpenAI sends them in order).

use super::{gen_id, openai_usage, stop_reason};
use serde_json::{json, Value};
use std::io::Write;

fn event(out: &mut Vec<u8>, data: Value) {
    let name = data["type"].as_str().unwrap_or("error");
    let _ = write!(out, "event: {name}\ndata: {data}\n\n");
}

enum Open {
    None,
    Text,
    Tool { index: Option<u64>, id: String },
}

/// Converts one OpenAI streaming response into Anthropic SSE events.
pub struct ChatStreamToMessages {
    model: String,
    id: String,
    started: bool,
    done: bool,
    /// Number of content blocks opened so far.
    blocks: u64,
    open: Open,
    /// OpenAI indexes of tool calls whose block has been opened.
    tools_seen: Vec<u64>,
    saw_tool: bool,
    stop: Option<&'static str>,
    input: u64,
    output: u64,
}

impl ChatStreamToMessages {
    pub fn new(client_model: &str, message_id: &str) -> Self {
        ChatStreamToMessages {
            model: client_model.to_owned(),
            id: message_id.to_owned(),
            started: false,
            done: false,
            blocks: 0,
            open: Open::None,
            tools_seen: Vec::new(),
            saw_tool: false,
            stop: None,
            input: 0,
            output: 0,
        }
    }

    /// (prompt/input tokens, completion/output tokens) seen so far.
    pub fn usage(&self) -> (u64, u64) {
        (self.input, self.output)
    }

    /// One parsed OpenAI chunk (`data:` JSON). Appends complete Anthropic SSE
    /// events (`event: X\ndata: {...}\n\n`) to `out`.
    pub fn on_chunk(&mut self, chunk: &Value, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        if let Some((input, output)) = openai_usage(chunk) {
            (self.input, self.output) = (input, output);
        }
        if let Some(err) = chunk.get("error").filter(|e| !e.is_null()) {
            let msg = err["message"]
                .as_str()
                .map_or_else(|| err.to_string(), str::to_owned);
            event(
                out,
                json!({"type": "error", "error": {"type": "api_error", "message": msg}}),
            );
            self.done = true;
            return;
        }
        self.start(out);
        let choice = &chunk["choices"][0];
        let delta = &choice["delta"];
        let text = delta["content"].as_str().filter(|t| !t.is_empty());
        if let Some(text) = text.or(delta["refusal"].as_str().filter(|t| !t.is_empty())) {
            if !matches!(self.open, Open::Text) {
                self.open_block(out, json!({"type": "text", "text": ""}), Open::Text);
            }
            self.delta(out, json!({"type": "text_delta", "text": text}));
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            self.tool_delta(call, out);
        }
        if let Some(reason) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(reason));
        }
    }

    fn tool_delta(&mut self, call: &Value, out: &mut Vec<u8>) {
        let id = call["id"].as_str().filter(|s| !s.is_empty());
        let index = call["index"].as_u64();
        let new = match &self.open {
            Open::Tool {
                index: cur,
                id: cur_id,
            } => id.is_some_and(|id| id != cur_id) || (index.is_some() && index != *cur),
            _ => true,
        };
        let f = &call["function"];
        if new {
            if id.is_none() && index.is_some_and(|i| self.tools_seen.contains(&i)) {
                return; // late delta for a closed tool block: cannot be reopened
            }
            let id = id.map_or_else(|| format!("toolu_{}", gen_id()), str::to_owned);
            let name = f["name"].as_str().unwrap_or_default();
            let block = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
            self.tools_seen.extend(index);
            self.saw_tool = true;
            self.open_block(out, block, Open::Tool { index, id });
        }
        if let Some(args) = f["arguments"].as_str().filter(|a| !a.is_empty()) {
            self.delta(
                out,
                json!({"type": "input_json_delta", "partial_json": args}),
            );
        }
    }

    /// Upstream sent `[DONE]` or ended: close the open block, then
    /// `message_delta` (stop_reason, usage) and `message_stop`. Idempotent.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.done {
            return;
        }
        self.start(out);
        self.close(out);
        let mut stop = self.stop.unwrap_or("end_turn");
        if stop == "end_turn" && self.saw_tool {
            stop = "tool_use"; // some servers say "stop" after tool calls
        }
        event(
            out,
            json!({"type": "message_delta",
                "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"input_tokens": self.input, "output_tokens": self.output}}),
        );
        event(out, json!({"type": "message_stop"}));
        self.done = true;
    }

    fn start(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.started = true;
            let message = json!({"id": self.id, "type": "message", "role": "assistant",
                "model": self.model, "content": [], "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": self.input, "output_tokens": 0}});
            event(out, json!({"type": "message_start", "message": message}));
        }
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: Value, open: Open) {
        self.close(out);
        let index = self.blocks;
        event(
            out,
            json!({"type": "content_block_start", "index": index, "content_block": block}),
        );
        self.blocks += 1;
        self.open = open;
    }

    fn delta(&mut self, out: &mut Vec<u8>, delta: Value) {
        let index = self.blocks.saturating_sub(1);
        event(
            out,
            json!({"type": "content_block_delta", "index": index, "delta": delta}),
        );
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if !matches!(std::mem::replace(&mut self.open, Open::None), Open::None) {
            let index = self.blocks - 1;
            event(out, json!({"type": "content_block_stop", "index": index}));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::super::sse::SseParser;
    use super::*;

    /// Feeds an OpenAI SSE body split into `cuts`-sized pieces, as a gateway would.
    fn run(body: &str, cut: usize) -> (String, ChatStreamToMessages) {
        let mut conv = ChatStreamToMessages::new("claude-client", "msg_1");
        let mut parser = SseParser::new(1 << 16);
        let mut out = Vec::new();
        for piece in body.as_bytes().chunks(cut) {
            for ev in parser.feed(piece).unwrap() {
                if ev.data == "[DONE]" {
                    conv.finish(&mut out);
                } else if let Ok(v) = serde_json::from_str::<Value>(&ev.data) {
                    conv.on_chunk(&v, &mut out);
                }
            }
        }
        conv.finish(&mut out);
        (String::from_utf8(out).unwrap(), conv)
    }

    fn chunk(delta: Value, finish: Value) -> String {
        let c = json!({"id": "chatcmpl-9", "object": "chat.completion.chunk", "created": 1,
            "model": "gpt-4o", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            "usage": null});
        format!("data: {c}\n\n")
    }

    fn events(s: &str) -> Vec<Value> {
        let mut p = SseParser::new(1 << 20);
        let evs = p.feed(s.as_bytes()).unwrap();
        evs.iter()
            .map(|e| {
                let v: Value = serde_json::from_str(&e.data).unwrap();
                let name = v["type"].as_str().unwrap();
                assert_eq!(e.event.as_deref(), Some(name));
                assert_eq!(
                    e.raw,
                    format!("event: {name}\ndata: {}\n\n", e.data).into_bytes()
                );
                v
            })
            .collect()
    }

    #[test]
    fn text_then_tool_calls_exact_sequence() {
        let body = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Let me "}), Value::Null),
            chunk(json!({"content": "check."}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function",
                    "function": {"name": "get_weather", "arguments": ""}}]}),
                Value::Null,
            ),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"city\":"}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"Paris\"}"}}]}), Value::Null),
            chunk(
                json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function",
                    "function": {"name": "get_time", "arguments": "{}"}}]}),
                Value::Null,
            ),
            chunk(json!({}), json!("tool_calls")),
            ": keep-alive\n\n".to_string(),
            "data: {\"id\":\"chatcmpl-9\",\"choices\":[],\"usage\":{\"prompt_tokens\":31,\"completion_tokens\":17,\"total_tokens\":48}}\n\n".to_string(),
            "data: [DONE]\n\n".to_string(),
        ]
        .concat();
        let want = concat!(
            "event: message_start\ndata: {\"message\":{\"content\":[],\"id\":\"msg_1\",\"model\":\"claude-client\",\"role\":\"assistant\",\"stop_reason\":null,\"stop_sequence\":null,\"type\":\"message\",\"usage\":{\"input_tokens\":0,\"output_tokens\":0}},\"type\":\"message_start\"}\n\n",
            "event: content_block_start\ndata: {\"content_block\":{\"text\":\"\",\"type\":\"text\"},\"index\":0,\"type\":\"content_block_start\"}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"text\":\"Let me \",\"type\":\"text_delta\"},\"index\":0,\"type\":\"content_block_delta\"}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"text\":\"check.\",\"type\":\"text_delta\"},\"index\":0,\"type\":\"content_block_delta\"}\n\n",
            "event: content_block_stop\ndata: {\"index\":0,\"type\":\"content_block_stop\"}\n\n",
            "event: content_block_start\ndata: {\"content_block\":{\"id\":\"call_a\",\"input\":{},\"name\":\"get_weather\",\"type\":\"tool_use\"},\"index\":1,\"type\":\"content_block_start\"}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"partial_json\":\"{\\\"city\\\":\",\"type\":\"input_json_delta\"},\"index\":1,\"type\":\"content_block_delta\"}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"partial_json\":\"\\\"Paris\\\"}\",\"type\":\"input_json_delta\"},\"index\":1,\"type\":\"content_block_delta\"}\n\n",
            "event: content_block_stop\ndata: {\"index\":1,\"type\":\"content_block_stop\"}\n\n",
            "event: content_block_start\ndata: {\"content_block\":{\"id\":\"call_b\",\"input\":{},\"name\":\"get_time\",\"type\":\"tool_use\"},\"index\":2,\"type\":\"content_block_start\"}\n\n",
            "event: content_block_delta\ndata: {\"delta\":{\"partial_json\":\"{}\",\"type\":\"input_json_delta\"},\"index\":2,\"type\":\"content_block_delta\"}\n\n",
            "event: content_block_stop\ndata: {\"index\":2,\"type\":\"content_block_stop\"}\n\n",
            "event: message_delta\ndata: {\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"type\":\"message_delta\",\"usage\":{\"input_tokens\":31,\"output_tokens\":17}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        for cut in [1, 7, 64, 1000, body.len()] {
            let (got, conv) = run(&body, cut);
            assert_eq!(events(&got), events(want), "cut {cut}");
            assert_eq!(conv.usage(), (31, 17));
        }
    }

    #[test]
    fn stop_reasons_and_empty_streams() {
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("content_filter", "refusal"),
        ] {
            let (got, _) = run(&chunk(json!({"content": "hi"}), json!(finish)), 5);
            let evs = events(&got);
            assert_eq!(evs.len(), 6);
            assert_eq!(evs[4]["delta"]["stop_reason"], stop);
        }
        // Upstream ended without any chunk: still a well-formed message.
        let (got, _) = run("", 1);
        let types: Vec<Value> = events(&got).iter().map(|e| e["type"].clone()).collect();
        assert_eq!(
            types,
            vec![
                json!("message_start"),
                json!("message_delta"),
                json!("message_stop")
            ]
        );
        // finish() twice and chunks after finish add nothing.
        let mut conv = ChatStreamToMessages::new("m", "msg_2");
        let mut out = Vec::new();
        conv.finish(&mut out);
        let n = out.len();
        conv.finish(&mut out);
        conv.on_chunk(
            &json!({"choices": [{"delta": {"content": "late"}}]}),
            &mut out,
        );
        assert_eq!(out.len(), n);
    }

    #[test]
    fn error_chunk_and_hostile_chunks() {
        let body = chunk(json!({"content": "a"}), Value::Null)
            + "data: {\"error\":{\"message\":\"rate limited\",\"type\":\"requests\"}}\n\n";
        let (got, _) = run(&body, 3);
        let evs = events(&got);
        assert_eq!(evs.last().unwrap()["error"]["message"], "rate limited");
        assert_eq!(evs.len(), 4); // start, block start, delta, error; nothing after
        let mut conv = ChatStreamToMessages::new("m", "msg_3");
        let mut out = Vec::new();
        for c in [
            json!(null),
            json!([1, 2]),
            json!({"choices": "x"}),
            json!({"choices": [{"delta": {"content": 5, "tool_calls": [{"index": "z"}, 7, {"function": {"arguments": ["x"]}}]}}]}),
            json!({"choices": [{"delta": {"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}}]}),
            json!({"usage": {"prompt_tokens": -1, "completion_tokens": "9"}}),
            json!({"choices": [{"delta": {"content": "x".repeat(100_000)}, "finish_reason": 3}]}),
        ] {
            conv.on_chunk(&c, &mut out);
        }
        conv.finish(&mut out);
        let evs = events(&String::from_utf8(out).unwrap());
        assert_eq!(evs.last().unwrap()["type"], "message_stop");
        assert_eq!(conv.usage(), (0, 0));
    }
}
