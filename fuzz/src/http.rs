//! What the auth middleware reads off a request: the bearer credential
//! (`Authorization: Bearer` / `x-api-key`), the session cookie, the client
//! address behind trusted proxies (`X-Forwarded-For`), the cross-site check,
//! and what a custom validator is told of the request.
//!
//! An input is a request head as text: a request line (`POST /v1/x?a=b`),
//! then `Name: value` lines. `x-fuzz-peer: IP` sets the peer address (the
//! default, 10.0.0.7, is a trusted proxy).

use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::http::{Method, Uri};
use actix_web::test::TestRequest;
use gatehouse::auth::external::RequestInfo;
use gatehouse::auth::{
    bearer::is_gateway_token, client_ip, cookie, find_cookie, forwarded_client, SESSION_COOKIE,
};
use gatehouse::fuzzing::{bearer_credential, cross_site};
use ipnet::IpNet;
use std::net::{IpAddr, SocketAddr};

const TRUSTED: [&str; 4] = ["10.0.0.0/8", "192.168.0.0/16", "::1/128", "fd00::/8"];

pub fn headers(data: &[u8]) {
    let trusted: Vec<IpNet> = TRUSTED.iter().map(|n| n.parse().expect("a CIDR")).collect();
    let mut lines = data
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let mut req = TestRequest::default();
    if let Some(line) = lines.next() {
        let mut words = line.split(|&b| b == b' ');
        if let Some(m) = words.next().and_then(|m| Method::from_bytes(m).ok()) {
            req = req.method(m);
        }
        if let Some(target) = words.next().and_then(|t| std::str::from_utf8(t).ok()) {
            if Uri::try_from(target).is_ok() {
                req = req.uri(target);
            }
        }
    }
    let mut peer: IpAddr = "10.0.0.7".parse().expect("an address");
    let mut values = Vec::new();
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii_start());
        let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value))
        else {
            continue;
        };
        if name == "x-fuzz-peer" {
            if let Some(ip) = value.to_str().ok().and_then(|v| v.parse().ok()) {
                peer = ip;
            }
            continue;
        }
        if let Ok(v) = value.to_str() {
            values.push(v.to_owned());
        }
        req = req.append_header((name, value));
    }
    let req = req.peer_addr(SocketAddr::new(peer, 4000)).to_srv_request();

    if let Some(token) = bearer_credential(&req) {
        assert_eq!(token, token.trim(), "the credential is trimmed");
        let _ = is_gateway_token(token);
    }
    let _ = cross_site(&req);
    let http = req.request();
    let _ = cookie(http, SESSION_COOKIE);
    let ip = client_ip(http, &trusted);
    let v4 = match peer {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(peer, IpAddr::V4),
        v4 => v4,
    };
    if !trusted.iter().any(|n| n.contains(&v4)) {
        assert_eq!(ip, Some(peer), "an untrusted peer is the client");
    }
    let info = RequestInfo::of(http);
    for private in ["authorization", "cookie", "x-api-key", "x-session-token"] {
        assert!(
            !info.headers.contains_key(private),
            "{private} is never told to a validator"
        );
    }
    for v in &values {
        let _ = find_cookie(v, SESSION_COOKIE);
        let _ = forwarded_client(v, &trusted);
    }
}
