use super::{
    bad, body, flag, gen_id, joined_text, number, openai_usage, parse_args, positive_int, present,
    stop_reason, TranslateError,
};
use serde_json::{json, Value};

fn image_part(src: &Value) -> Option<Value> {
    let url = match src["type"].as_str()? {
        "base64" => format!(
            "data:{};base64,{}",
            src["media_type"].as_str()?,
            src["data"].as_str()?
        ),
        "url" => src["url"].as_str()?.to_owned(),
        _ => return None,
    };
    Some(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// Client speaks Anthropic `/v1/messages`, upstream is OpenAI-compatible.
pub fn messages_request_to_chat(
    req: &Value,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let (obj, msgs) = body(req)?;
    let max_tokens = match present(obj, "max_tokens") {
        None => return bad("max_tokens: field required"),
        Some(v) => positive_int(v, "max_tokens")?,
    };
    let mut out_msgs = Vec::new();
    if let Some(system) = present(obj, "system") {
        let Some(text) = joined_text(system, "\n\n") else {
            return bad("system: must be a string or an array of text blocks");
        };
        if !text.is_empty() {
            out_msgs.push(json!({"role": "system", "content": text}));
        }
    }
    for (i, m) in msgs.iter().enumerate() {
        let one;
        let blocks: &[Value] = match &m["content"] {
            Value::String(s) => {
                one = [json!({"type": "text", "text": s})];
                &one
            }
            Value::Array(a) => a,
            _ => {
                return bad(format!(
                    "messages.{i}.content: must be a string or an array of content blocks"
                ))
            }
        };
        let assistant = match m["role"].as_str() {
            Some("user") => false,
            Some("assistant") => true,
            _ => {
                return bad(format!(
                    "messages.{i}.role: must be \"user\" or \"assistant\""
                ))
            }
        };
        let (mut parts, mut text, mut calls) = (Vec::new(), String::new(), Vec::new());
        for (j, b) in blocks.iter().enumerate() {
            let at = format!("messages.{i}.content.{j}");
            match b["type"].as_str() {
                Some("text") => {
                    let Some(t) = b["text"].as_str() else {
                        return bad(format!("{at}.text: must be a string"));
                    };
                    text.push_str(t);
                    parts.push(json!({"type": "text", "text": t}));
                }
                Some("image") if !assistant => match image_part(&b["source"]) {
                    Some(p) => parts.push(p),
                    None => {
                        return bad(format!("{at}.source: must be a base64 or url image source"))
                    }
                },
                Some("tool_use") if assistant => {
                    let (Some(id), Some(name)) = (b["id"].as_str(), b["name"].as_str()) else {
                        return bad(format!("{at}: tool_use needs string id and name"));
                    };
                    let input = if b["input"].is_object() {
                        b["input"].to_string()
                    } else {
                        "{}".into()
                    };
                    calls.push(json!({"id": id, "type": "function",
                        "function": {"name": name, "arguments": input}}));
                }
                Some("tool_result") if !assistant => {
                    let Some(id) = b["tool_use_id"].as_str() else {
                        return bad(format!("{at}.tool_use_id: field required"));
                    };
                    let content = joined_text(&b["content"], "\n").unwrap_or_default();
                    out_msgs.push(json!({"role": "tool", "tool_call_id": id, "content": content}));
                }
                _ => {} // thinking, documents, unknown blocks: dropped
            }
        }
        if assistant {
            let mut msg = json!({"role": "assistant", "content": text});
            if !calls.is_empty() {
                if text.is_empty() {
                    msg["content"] = Value::Null;
                }
                msg["tool_calls"] = Value::Array(calls);
            }
            out_msgs.push(msg);
        } else if !parts.is_empty() || blocks.is_empty() {
            let content = match parts.as_slice() {
                [p] if p["type"] == "text" => p["text"].clone(),
                [] => json!(""),
                _ => Value::Array(parts),
            };
            out_msgs.push(json!({"role": "user", "content": content}));
        }
    }
    let mut out = json!({"model": upstream_model, "messages": out_msgs, "max_tokens": max_tokens});
    for key in ["temperature", "top_p"] {
        if let Some(v) = number(obj, key)? {
            out[key] = v.clone();
        }
    }
    if let Some(stop) = present(obj, "stop_sequences") {
        match stop.as_array() {
            Some(a) if a.is_empty() => {}
            Some(a) if a.iter().all(Value::is_string) => out["stop"] = stop.clone(),
            _ => return bad("stop_sequences: must be an array of strings"),
        }
    }
    if let Some(stream) = flag(obj, "stream")? {
        out["stream"] = json!(stream);
        if stream {
            out["stream_options"] = json!({"include_usage": true});
        }
    }
    if let Some(tools) = present(obj, "tools") {
        let Some(tools) = tools.as_array() else {
            return bad("tools: must be an array");
        };
        let mut fns = Vec::new();
        for (k, t) in tools.iter().enumerate() {
            let Some(name) = t["name"].as_str() else {
                return bad(format!("tools.{k}.name: field required"));
            };
            if !t["input_schema"].is_object() {
                return match t["type"].as_str() {
                    Some(ty) if ty != "custom" => bad(format!(
                        "tools.{k}: tool type {ty:?} is not supported by this model"
                    )),
                    _ => bad(format!("tools.{k}.input_schema: field required")),
                };
            }
            let mut f = json!({"name": name, "parameters": t["input_schema"]});
            if let Some(d) = t["description"].as_str() {
                f["description"] = json!(d);
            }
            fns.push(json!({"type": "function", "function": f}));
        }
        if !fns.is_empty() {
            out["tools"] = Value::Array(fns);
        }
    }
    if let Some(tc) = present(obj, "tool_choice") {
        let choice = match tc["type"].as_str() {
            Some("auto") => json!("auto"),
            Some("any") => json!("required"),
            Some("none") => json!("none"),
            Some("tool") => match tc["name"].as_str() {
                Some(name) => json!({"type": "function", "function": {"name": name}}),
                None => return bad("tool_choice.name: field required"),
            },
            _ => return bad("tool_choice.type: must be one of auto, any, tool, none"),
        };
        if out.get("tools").is_some() {
            out["tool_choice"] = choice;
            if tc["disable_parallel_tool_use"] == true {
                out["parallel_tool_calls"] = json!(false);
            }
        }
    }
    if let Some(user) = req["metadata"]["user_id"].as_str() {
        out["user"] = json!(user);
    }
    Ok(out)
}

/// OpenAI chat.completion -> Anthropic message.
pub fn chat_response_to_messages(resp: &Value, client_model: &str) -> Value {
    let choice = &resp["choices"][0];
    let msg = &choice["message"];
    let mut content = Vec::new();
    let mut text = joined_text(&msg["content"], "").unwrap_or_default();
    if text.is_empty() {
        text = msg["refusal"].as_str().unwrap_or_default().to_owned();
    }
    if !text.is_empty() {
        content.push(json!({"type": "text", "text": text}));
    }
    let mut calls: Vec<&Value> = msg["tool_calls"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    if msg["function_call"].is_object() {
        calls.push(&msg["function_call"]); // legacy: name/arguments at top level
    }
    for c in &calls {
        let f = if c["function"].is_object() {
            &c["function"]
        } else {
            c
        };
        let id = c["id"]
            .as_str()
            .map_or_else(|| format!("toolu_{}", gen_id()), str::to_owned);
        content.push(json!({"type": "tool_use", "id": id,
            "name": f["name"].as_str().unwrap_or_default(), "input": parse_args(&f["arguments"])}));
    }
    let mut stop = stop_reason(choice["finish_reason"].as_str().unwrap_or_default());
    if !calls.is_empty() && stop == "end_turn" {
        stop = "tool_use";
    }
    let id = resp["id"].as_str().map_or_else(gen_id, str::to_owned);
    let (input, output) = openai_usage(resp).unwrap_or((0, 0));
    json!({"id": format!("msg_{id}"), "type": "message", "role": "assistant", "model": client_model,
        "content": content, "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": input, "output_tokens": output}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(req: Value) -> String {
        messages_request_to_chat(&req, "gpt-4o").unwrap_err().0
    }

    #[test]
    fn full_request_with_tool_round_trip() {
        let req = json!({
            "model": "claude-sonnet-4-5", "max_tokens": 1024, "temperature": 0.2, "top_p": 0.9,
            "top_k": 5, "thinking": {"type": "enabled"}, "stream": true, "stop_sequences": ["END"],
            "metadata": {"user_id": "u-42"},
            "system": [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}},
                       {"type": "text", "text": "Use tools."}],
            "tools": [{"name": "get_weather", "description": "Weather by city",
                       "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}],
            "tool_choice": {"type": "auto", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this and the weather in Paris?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBOR"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/a.jpg"}}]},
                {"role": "assistant", "content": [
                    {"type": "thinking", "thinking": "hmm", "signature": "s"},
                    {"type": "text", "text": "A cat. Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Paris"}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "toolu_1",
                     "content": [{"type": "text", "text": "18C"}, {"type": "text", "text": "sunny"}]},
                    {"type": "text", "text": "Thanks"}]},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_2", "name": "get_weather", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_2", "content": "error", "is_error": true}]}
            ]
        });
        let want = json!({
            "model": "gpt-4o", "max_tokens": 1024, "temperature": 0.2, "top_p": 0.9,
            "stream": true, "stream_options": {"include_usage": true}, "stop": ["END"], "user": "u-42",
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather by city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "auto", "parallel_tool_calls": false,
            "messages": [
                {"role": "system", "content": "You are terse.\n\nUse tools."},
                {"role": "user", "content": [
                    {"type": "text", "text": "What is this and the weather in Paris?"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/a.jpg"}}]},
                {"role": "assistant", "content": "A cat. Checking.", "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
                {"role": "tool", "tool_call_id": "toolu_1", "content": "18C\nsunny"},
                {"role": "user", "content": "Thanks"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": "toolu_2", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"}}]},
                {"role": "tool", "tool_call_id": "toolu_2", "content": "error"}
            ]
        });
        assert_eq!(messages_request_to_chat(&req, "gpt-4o").unwrap(), want);
    }

    #[test]
    fn simple_request_and_tool_choices() {
        let base = json!({"max_tokens": 10, "system": "Be brief", "stream": false,
            "messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"},
                         {"role": "user", "content": []}]});
        let got = messages_request_to_chat(&base, "m").unwrap();
        assert_eq!(
            got,
            json!({"model": "m", "max_tokens": 10, "stream": false, "messages": [
            {"role": "system", "content": "Be brief"}, {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"}, {"role": "user", "content": ""}]})
        );
        let tool = json!([{"name": "f", "input_schema": {"type": "object"}}]);
        for (tc, want) in [
            (json!({"type": "auto"}), json!("auto")),
            (json!({"type": "any"}), json!("required")),
            (json!({"type": "none"}), json!("none")),
            (
                json!({"type": "tool", "name": "f"}),
                json!({"type": "function", "function": {"name": "f"}}),
            ),
        ] {
            let mut req = base.clone();
            req["tool_choice"] = tc.clone();
            assert_eq!(
                messages_request_to_chat(&req, "m")
                    .unwrap()
                    .get("tool_choice"),
                None
            );
            req["tools"] = tool.clone();
            let got = messages_request_to_chat(&req, "m").unwrap();
            assert_eq!(got["tool_choice"], want);
            assert_eq!(got.get("parallel_tool_calls"), None);
        }
    }

    #[test]
    fn request_errors() {
        let ok = || json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]});
        assert_eq!(err(json!([1])), "request body must be a JSON object");
        assert_eq!(err(json!({"max_tokens": 5})), "messages: field required");
        assert_eq!(
            err(json!({"max_tokens": 5, "messages": "hi"})),
            "messages: must be an array"
        );
        assert_eq!(err(json!({"messages": []})), "max_tokens: field required");
        for bad in [
            json!(0),
            json!(-1),
            json!("10"),
            json!(1.5),
            json!(u64::MAX as f64),
        ] {
            let mut r = ok();
            r["max_tokens"] = bad;
            assert_eq!(err(r), "max_tokens: must be a positive integer");
        }
        let cases: Vec<(&str, Value, &str)> = vec![
            (
                "system",
                json!(5),
                "system: must be a string or an array of text blocks",
            ),
            ("temperature", json!("hot"), "temperature: must be a number"),
            ("stream", json!("yes"), "stream: must be a boolean"),
            (
                "stop_sequences",
                json!("END"),
                "stop_sequences: must be an array of strings",
            ),
            ("tools", json!({}), "tools: must be an array"),
            (
                "tools",
                json!([{"name": "f"}]),
                "tools.0.input_schema: field required",
            ),
            (
                "tools",
                json!([{"type": "web_search_20250305", "name": "web_search"}]),
                "tools.0: tool type \"web_search_20250305\" is not supported by this model",
            ),
            (
                "tools",
                json!([{"input_schema": {}}]),
                "tools.0.name: field required",
            ),
            (
                "tool_choice",
                json!("auto"),
                "tool_choice.type: must be one of auto, any, tool, none",
            ),
            (
                "tool_choice",
                json!({"type": "tool"}),
                "tool_choice.name: field required",
            ),
        ];
        for (key, value, msg) in cases {
            let mut r = ok();
            r[key] = value;
            assert_eq!(err(r), msg);
        }
        let msgs: Vec<(Value, &str)> = vec![
            (
                json!([5]),
                "messages.0.content: must be a string or an array of content blocks",
            ),
            (
                json!([{"role": "system", "content": "x"}]),
                "messages.0.role: must be \"user\" or \"assistant\"",
            ),
            (
                json!([{"role": "user", "content": [{"type": "text", "text": 1}]}]),
                "messages.0.content.0.text: must be a string",
            ),
            (
                json!([{"role": "user", "content": [{"type": "image", "source": {"type": "file", "file_id": "f"}}]}]),
                "messages.0.content.0.source: must be a base64 or url image source",
            ),
            (
                json!([{"role": "user", "content": [{"type": "tool_result", "content": "x"}]}]),
                "messages.0.content.0.tool_use_id: field required",
            ),
            (
                json!([{"role": "assistant", "content": [{"type": "tool_use", "id": "t"}]}]),
                "messages.0.content.0: tool_use needs string id and name",
            ),
        ];
        for (m, msg) in msgs {
            assert_eq!(err(json!({"max_tokens": 5, "messages": m})), msg);
        }
        // Huge and unknown fields are fine and dropped.
        let mut r = ok();
        r["unknown"] = json!("x".repeat(1 << 20));
        r["messages"][0]["content"] =
            json!([{"type": "document", "source": {}}, {"type": "text", "text": "y"}]);
        assert_eq!(
            messages_request_to_chat(&r, "m").unwrap()["messages"],
            json!([{"role": "user", "content": "y"}])
        );
    }

    #[test]
    fn response_with_text_and_tools() {
        let resp = json!({"id": "chatcmpl-abc", "object": "chat.completion", "created": 1, "model": "gpt-4o",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Checking.", "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}},
                    {"id": "call_2", "type": "function", "function": {"name": "broken", "arguments": "{\"a\":"}}]}}],
            "usage": {"prompt_tokens": 50, "completion_tokens": 20, "total_tokens": 70}});
        assert_eq!(
            chat_response_to_messages(&resp, "claude-x"),
            json!({
            "id": "msg_chatcmpl-abc", "type": "message", "role": "assistant", "model": "claude-x",
            "content": [{"type": "text", "text": "Checking."},
                {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "call_2", "name": "broken", "input": {}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 50, "output_tokens": 20}})
        );
    }

    #[test]
    fn response_stop_reasons_and_hostile() {
        for (finish, stop) in [
            ("stop", "end_turn"),
            ("length", "max_tokens"),
            ("tool_calls", "tool_use"),
            ("function_call", "tool_use"),
            ("content_filter", "refusal"),
            ("weird", "end_turn"),
        ] {
            let resp = json!({"choices": [{"finish_reason": finish, "message": {"content": "x"}}]});
            assert_eq!(chat_response_to_messages(&resp, "m")["stop_reason"], stop);
        }
        // "stop" with tool calls (some servers) and legacy function_call.
        let resp = json!({"choices": [{"finish_reason": "stop", "message": {"content": null,
            "function_call": {"name": "f", "arguments": "[1]"}}}]});
        let got = chat_response_to_messages(&resp, "m");
        assert_eq!(got["stop_reason"], "tool_use");
        assert_eq!(got["content"][0]["name"], "f");
        assert_eq!(got["content"][0]["input"], json!({}));
        assert!(got["content"][0]["id"]
            .as_str()
            .unwrap()
            .starts_with("toolu_"));
        for hostile in [
            json!(null),
            json!([1]),
            json!({"choices": "x", "usage": "y"}),
            json!({"choices": [{"message": {"content": [{"type": "text", "text": "a"}, 7], "tool_calls": [5, {}]}}]}),
        ] {
            let got = chat_response_to_messages(&hostile, "m");
            assert_eq!(got["type"], "message");
            assert!(got["id"].as_str().unwrap().starts_with("msg_"));
            assert!(got["content"].is_array());
            assert!(got["usage"]["input_tokens"].is_u64());
        }
    }
}
