use super::{
    anthropic_usage, bad, body, finish_reason, flag, gen_id, joined_text, now_secs, number,
    parse_args, positive_int, present, TranslateError,
};
use serde_json::{json, Value};

fn tool_id(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

fn image_block(url: &str) -> Option<Value> {
    if let Some(rest) = url.strip_prefix("data:") {
        let (meta, data) = rest.split_once(',')?;
        let media = meta.strip_suffix(";base64")?;
        let source = json!({"type": "base64", "media_type": media, "data": data});
        Some(json!({"type": "image", "source": source}))
    } else if url.starts_with("https://") || url.starts_with("http://") {
        Some(json!({"type": "image", "source": {"type": "url", "url": url}}))
    } else {
        None
    }
}

fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let parts = match content {
        Value::Null => return Ok(vec![]),
        Value::String(s) if s.is_empty() => return Ok(vec![]),
        Value::String(s) => return Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(a) => a,
        _ => {
            return bad(format!(
                "messages.{i}.content: must be a string or an array"
            ))
        }
    };
    let mut blocks = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match p["type"].as_str() {
            Some("text") => match p["text"].as_str() {
                Some("") => {}
                Some(t) => blocks.push(json!({"type": "text", "text": t})),
                None => return bad(format!("messages.{i}.content.{j}.text: must be a string")),
            },
            Some("image_url") => {
                let url = p["image_url"]["url"].as_str().or(p["image_url"].as_str());
                match url.and_then(image_block) {
                    Some(b) => blocks.push(b),
                    None => {
                        let at = format!("messages.{i}.content.{j}.image_url");
                        return bad(format!(
                            "{at}: must be a base64 data: URL or an http(s) URL"
                        ));
                    }
                }
            }
            ty => {
                return bad(format!(
                    "messages.{i}.content.{j}: content part type {} is not supported by this model",
                    ty.unwrap_or("(missing)")
                ))
            }
        }
    }
    Ok(blocks)
}

fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, TranslateError> {
    let mut blocks = Vec::new();
    match joined_text(&m["content"], "") {
        Some(t) if !t.is_empty() => blocks.push(json!({"type": "text", "text": t})),
        None if !m["content"].is_null() => {
            return bad(format!(
                "messages.{i}.content: must be a string or an array"
            ))
        }
        _ => {}
    }
    for (j, c) in m["tool_calls"].as_array().into_iter().flatten().enumerate() {
        let (Some(id), Some(name)) = (c["id"].as_str(), c["function"]["name"].as_str()) else {
            return bad(format!(
                "messages.{i}.tool_calls.{j}: needs string id and function.name"
            ));
        };
        let input = parse_args(&c["function"]["arguments"]);
        blocks.push(json!({"type": "tool_use", "id": tool_id(id), "name": name, "input": input}));
    }
    Ok(blocks)
}

/// Client speaks OpenAI `/v1/chat/completions`, upstream is Anthropic.
pub fn chat_request_to_messages(
    req: &Value,
    upstream_model: &str,
) -> Result<Value, TranslateError> {
    let (obj, msgs) = body(req)?;
    if let Some(n) = present(obj, "n") {
        if positive_int(n, "n")? > 1 {
            return bad("n > 1 is not supported for this model");
        }
    }
    let max_key = ["max_completion_tokens", "max_tokens"]
        .into_iter()
        .find(|k| present(obj, k).is_some());
    let max_tokens = match max_key {
        Some(key) => positive_int(&obj[key], key)?,
        None => 4096, // Anthropic requires max_tokens
    };
    let mut system: Vec<String> = Vec::new();
    let mut turns: Vec<(&str, Vec<Value>)> = Vec::new();
    for (i, m) in msgs.iter().enumerate() {
        let (role, blocks) = match m["role"].as_str() {
            Some("system" | "developer") => match joined_text(&m["content"], "\n") {
                Some(t) if t.is_empty() => continue,
                Some(t) => {
                    system.push(t);
                    continue;
                }
                None => {
                    return bad(format!(
                        "messages.{i}.content: must be a string or an array"
                    ))
                }
            },
            Some("user") => ("user", user_blocks(&m["content"], i)?),
            Some("assistant") => ("assistant", assistant_blocks(m, i)?),
            Some("tool") => {
                let Some(id) = m["tool_call_id"].as_str() else {
                    return bad(format!("messages.{i}.tool_call_id: field required"));
                };
                let mut b = json!({"type": "tool_result", "tool_use_id": tool_id(id)});
                match joined_text(&m["content"], "\n") {
                    Some(t) if !t.is_empty() => b["content"] = json!(t),
                    _ => {}
                }
                ("user", vec![b])
            }
            _ => {
                return bad(format!(
                    "messages.{i}.role: must be one of system, developer, user, assistant, tool"
                ))
            }
        };
        match turns.last_mut() {
            _ if blocks.is_empty() => {}
            Some((r, prev)) if *r == role => prev.extend(blocks),
            _ => turns.push((role, blocks)),
        }
    }
    if turns.is_empty() {
        return bad("messages: at least one user or assistant message is required");
    }
    let messages: Vec<Value> = turns
        .into_iter()
        .map(|(role, mut blocks)| {
            blocks.sort_by_key(|b| b["type"] != "tool_result"); // tool results first
            json!({"role": role, "content": blocks})
        })
        .collect();
    let mut out = json!({"model": upstream_model, "messages": messages, "max_tokens": max_tokens});
    if !system.is_empty() {
        out["system"] = json!(system.join("\n\n"));
    }
    if let Some(t) = number(obj, "temperature")?.and_then(Value::as_f64) {
        out["temperature"] = json!(t.clamp(0.0, 1.0));
    }
    if let Some(v) = number(obj, "top_p")? {
        out["top_p"] = v.clone();
    }
    let stops: Vec<&Value> = match present(obj, "stop") {
        None => vec![],
        Some(s @ Value::String(_)) => vec![s],
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => a.iter().collect(),
        Some(_) => return bad("stop: must be a string or an array of strings"),
    };
    let stops: Vec<&Value> = stops
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
        .collect();
    if !stops.is_empty() {
        out["stop_sequences"] = json!(stops);
    }
    if let Some(stream) = flag(obj, "stream")? {
        out["stream"] = json!(stream);
    }
    if let Some(tools) = present(obj, "tools") {
        let Some(tools) = tools.as_array() else {
            return bad("tools: must be an array");
        };
        let mut out_tools = Vec::new();
        for (k, t) in tools.iter().enumerate() {
            let f = &t["function"];
            let Some(name) = f["name"].as_str().filter(|_| t["type"] == "function") else {
                return bad(format!(
                    "tools.{k}: only function tools with a function.name are supported"
                ));
            };
            let schema = if f["parameters"].is_object() {
                f["parameters"].clone()
            } else {
                json!({"type": "object", "properties": {}})
            };
            let mut tool = json!({"name": name, "input_schema": schema});
            if let Some(d) = f["description"].as_str() {
                tool["description"] = json!(d);
            }
            out_tools.push(tool);
        }
        if !out_tools.is_empty() {
            out["tools"] = Value::Array(out_tools);
        }
    }
    let mut choice = match present(obj, "tool_choice") {
        None => None,
        Some(tc) => Some(match (tc.as_str(), tc["function"]["name"].as_str()) {
            (Some("none"), _) => json!({"type": "none"}),
            (Some("auto"), _) => json!({"type": "auto"}),
            (Some("required"), _) => json!({"type": "any"}),
            (None, Some(name)) if tc["type"] == "function" => json!({"type": "tool", "name": name}),
            _ => return bad("tool_choice: must be none, auto, required or a function choice"),
        }),
    };
    if flag(obj, "parallel_tool_calls")? == Some(false) {
        let c = choice.get_or_insert_with(|| json!({"type": "auto"}));
        if c["type"] != "none" {
            c["disable_parallel_tool_use"] = json!(true);
        }
    }
    if let (Some(c), true) = (choice, out.get("tools").is_some()) {
        out["tool_choice"] = c;
    }
    if let Some(user) = present(obj, "user") {
        match user.as_str() {
            Some(u) => out["metadata"] = json!({"user_id": u}),
            None => return bad("user: must be a string"),
        }
    }
    Ok(out)
}

/// Anthropic message -> OpenAI chat.completion.
pub fn messages_response_to_chat(resp: &Value, client_model: &str) -> Value {
    let (mut text, mut has_text, mut calls) = (String::new(), false, Vec::new());
    for b in resp["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => {
                text.push_str(b["text"].as_str().unwrap_or_default());
                has_text = true;
            }
            Some("tool_use") => {
                let args = if b["input"].is_object() {
                    b["input"].to_string()
                } else {
                    "{}".into()
                };
                let (id, name) = (b["id"].as_str(), b["name"].as_str());
                calls.push(json!({"id": id.unwrap_or_default(), "type": "function",
                    "function": {"name": name.unwrap_or_default(), "arguments": args}}));
            }
            _ => {} // thinking etc.
        }
    }
    let mut message =
        json!({"role": "assistant", "content": if has_text { json!(text) } else { Value::Null }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    let id = resp["id"].as_str().map_or_else(gen_id, str::to_owned);
    let (prompt, completion) = anthropic_usage(resp).unwrap_or((0, 0));
    json!({"id": format!("chatcmpl-{id}"), "object": "chat.completion", "created": now_secs(),
        "model": client_model,
        "choices": [{"index": 0, "message": message, "logprobs": null,
            "finish_reason": finish_reason(resp["stop_reason"].as_str().unwrap_or_default())}],
        "usage": {"prompt_tokens": prompt, "completion_tokens": completion,
            "total_tokens": prompt.saturating_add(completion)}})
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(req: Value) -> String {
        chat_request_to_messages(&req, "claude-x").unwrap_err().0
    }

    #[test]
    fn full_request_with_tool_round_trip() {
        let req = json!({
            "model": "gpt-4o", "max_completion_tokens": 500, "max_tokens": 9, "temperature": 1.5, "top_p": 1,
            "stop": "END", "stream": true, "stream_options": {"include_usage": true}, "user": "u-1",
            "response_format": {"type": "json_object"}, "logprobs": true, "n": 1, "parallel_tool_calls": false,
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": "required",
            "messages": [
                {"role": "system", "content": "You are terse."},
                {"role": "developer", "content": [{"type": "text", "text": "Use tools."}]},
                {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                    {"type": "image_url", "image_url": {"url": "data:image/jpeg;base64,/9j/4A", "detail": "low"}},
                    {"type": "image_url", "image_url": {"url": "https://x.test/b.png"}}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}},
                    {"id": "functions.now:1", "type": "function", "function": {"name": "now", "arguments": ""}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "-3C"},
                {"role": "tool", "tool_call_id": "functions.now:1", "content": [{"type": "text", "text": "09:00"}]},
                {"role": "user", "content": "And tomorrow?"},
                {"role": "user", "content": ""},
                {"role": "assistant", "content": "Cold."}
            ]
        });
        let want = json!({
            "model": "claude-x", "max_tokens": 500, "temperature": 1.0, "top_p": 1,
            "stop_sequences": ["END"], "stream": true, "metadata": {"user_id": "u-1"},
            "system": "You are terse.\n\nUse tools.",
            "tools": [{"name": "get_weather", "description": "Weather",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}},
                {"name": "now", "input_schema": {"type": "object", "properties": {}}}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Weather here?"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/jpeg", "data": "/9j/4A"}},
                    {"type": "image", "source": {"type": "url", "url": "https://x.test/b.png"}}]},
                {"role": "assistant", "content": [
                    {"type": "tool_use", "id": "call_1", "name": "get_weather", "input": {"city": "Oslo"}},
                    {"type": "tool_use", "id": "functions_now_1", "name": "now", "input": {}}]},
                {"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": "call_1", "content": "-3C"},
                    {"type": "tool_result", "tool_use_id": "functions_now_1", "content": "09:00"},
                    {"type": "text", "text": "And tomorrow?"}]},
                {"role": "assistant", "content": [{"type": "text", "text": "Cold."}]}
            ]
        });
        assert_eq!(chat_request_to_messages(&req, "claude-x").unwrap(), want);
    }

    #[test]
    fn defaults_merging_and_choices() {
        let req = json!({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
            {"role": "tool", "tool_call_id": "t", "content": ""}], "stop": [" ", "\n", "###"], "max_tokens": null});
        assert_eq!(
            chat_request_to_messages(&req, "c").unwrap(),
            json!({"model": "c", "max_tokens": 4096,
            "stop_sequences": ["###"], "messages": [{"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "t"},
                {"type": "text", "text": "a"}, {"type": "text", "text": "b"}]}]})
        );
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        for (tc, want) in [
            (json!("none"), json!({"type": "none"})),
            (json!("auto"), json!({"type": "auto"})),
            (
                json!({"type": "function", "function": {"name": "f"}}),
                json!({"type": "tool", "name": "f"}),
            ),
        ] {
            let mut r = req.clone();
            r["tool_choice"] = tc;
            assert_eq!(
                chat_request_to_messages(&r, "c")
                    .unwrap()
                    .get("tool_choice"),
                None
            );
            r["tools"] = tools.clone();
            assert_eq!(
                chat_request_to_messages(&r, "c").unwrap()["tool_choice"],
                want
            );
        }
        let mut r = req.clone();
        r["tools"] = tools;
        r["parallel_tool_calls"] = json!(false);
        let got = chat_request_to_messages(&r, "c").unwrap();
        assert_eq!(
            got["tool_choice"],
            json!({"type": "auto", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn request_errors() {
        let ok = || json!({"messages": [{"role": "user", "content": "x"}]});
        assert_eq!(err(json!("x")), "request body must be a JSON object");
        assert_eq!(err(json!({})), "messages: field required");
        assert_eq!(err(json!({"messages": {}})), "messages: must be an array");
        assert_eq!(
            err(json!({"messages": [{"role": "system", "content": "s"}]})),
            "messages: at least one user or assistant message is required"
        );
        let cases: Vec<(&str, Value, &str)> = vec![
            ("n", json!(2), "n > 1 is not supported for this model"),
            ("n", json!("2"), "n: must be a positive integer"),
            (
                "max_tokens",
                json!(-5),
                "max_tokens: must be a positive integer",
            ),
            ("temperature", json!([1]), "temperature: must be a number"),
            (
                "stop",
                json!(5),
                "stop: must be a string or an array of strings",
            ),
            (
                "tools",
                json!([{"type": "code_interpreter"}]),
                "tools.0: only function tools with a function.name are supported",
            ),
            ("tools", json!("f"), "tools: must be an array"),
            (
                "tool_choice",
                json!("sometimes"),
                "tool_choice: must be none, auto, required or a function choice",
            ),
            (
                "parallel_tool_calls",
                json!(0),
                "parallel_tool_calls: must be a boolean",
            ),
            ("user", json!(7), "user: must be a string"),
        ];
        for (key, value, msg) in cases {
            let mut r = ok();
            r[key] = value;
            assert_eq!(err(r), msg);
        }
        let msgs: Vec<(Value, &str)> = vec![
            (json!([{"role": "function", "content": "x"}]), "messages.0.role: must be one of system, developer, user, assistant, tool"),
            (json!([{"role": "system", "content": 1}]), "messages.0.content: must be a string or an array"),
            (json!([{"role": "user", "content": {"a": 1}}]), "messages.0.content: must be a string or an array"),
            (json!([{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
                "messages.0.content.0: content part type input_audio is not supported by this model"),
            (json!([{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "ftp://x/y.png"}}]}]),
                "messages.0.content.0.image_url: must be a base64 data: URL or an http(s) URL"),
            (json!([{"role": "user", "content": [{"type": "text"}]}]), "messages.0.content.0.text: must be a string"),
            (json!([{"role": "tool", "content": "x"}]), "messages.0.tool_call_id: field required"),
            (json!([{"role": "assistant", "tool_calls": [{"id": "a", "function": {}}]}]),
                "messages.0.tool_calls.0: needs string id and function.name"),
            (json!([{"role": "assistant", "content": 3}]), "messages.0.content: must be a string or an array"),
        ];
        for (m, msg) in msgs {
            assert_eq!(err(json!({ "messages": m })), msg);
        }
        let mut r = ok();
        r["huge_unknown"] = json!(vec![json!({"x": "y"}); 10_000]);
        assert!(chat_request_to_messages(&r, "c")
            .unwrap()
            .get("huge_unknown")
            .is_none());
    }

    #[test]
    fn response_with_text_tools_and_cache_usage() {
        let resp = json!({"id": "msg_01", "type": "message", "role": "assistant", "model": "claude-sonnet-4-5",
            "content": [{"type": "thinking", "thinking": "...", "signature": "s"},
                {"type": "text", "text": "Let me check. "},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"city": "Oslo"}},
                {"type": "text", "text": "Done."}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 10, "cache_creation_input_tokens": 5, "cache_read_input_tokens": 100, "output_tokens": 30}});
        let mut got = messages_response_to_chat(&resp, "gpt-client");
        assert!(got["created"].as_u64().unwrap() > 1_600_000_000);
        got["created"] = json!(0);
        assert_eq!(
            got,
            json!({"id": "chatcmpl-msg_01", "object": "chat.completion", "created": 0, "model": "gpt-client",
            "choices": [{"index": 0, "logprobs": null, "finish_reason": "tool_calls", "message": {"role": "assistant",
                "content": "Let me check. Done.", "tool_calls": [{"id": "toolu_1", "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]}}],
            "usage": {"prompt_tokens": 115, "completion_tokens": 30, "total_tokens": 145}})
        );
    }

    #[test]
    fn response_stop_reasons_and_hostile() {
        for (stop, finish) in [
            ("end_turn", "stop"),
            ("stop_sequence", "stop"),
            ("max_tokens", "length"),
            ("tool_use", "tool_calls"),
            ("refusal", "content_filter"),
            ("pause_turn", "stop"),
        ] {
            let resp = json!({"content": [{"type": "text", "text": "x"}], "stop_reason": stop});
            assert_eq!(
                messages_response_to_chat(&resp, "m")["choices"][0]["finish_reason"],
                finish
            );
        }
        let only_tool =
            json!({"content": [{"type": "tool_use", "id": "t", "name": "f", "input": null}]});
        let got = messages_response_to_chat(&only_tool, "m");
        assert_eq!(got["choices"][0]["message"]["content"], Value::Null);
        assert_eq!(
            got["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"],
            "{}"
        );
        for hostile in [
            json!(null),
            json!(5),
            json!({"content": "text", "usage": {"input_tokens": "9"}}),
            json!({"content": [null, {"type": "text"}, {"type": "tool_use"}], "id": 5, "stop_reason": 1}),
        ] {
            let got = messages_response_to_chat(&hostile, "m");
            assert_eq!(got["object"], "chat.completion");
            assert!(got["id"].as_str().unwrap().starts_with("chatcmpl-"));
            assert_eq!(got["choices"][0]["finish_reason"], "stop");
            assert!(got["usage"]["total_tokens"].is_u64());
        }
    }
}
