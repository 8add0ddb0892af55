//! Parsing what a client sends: its address (from the socket, or from
//! `X-Forwarded-For` only when the peer is a trusted proxy) and cookies.

use actix_web::HttpRequest;
use ipnet::IpNet;
use std::net::IpAddr;

/// The client's address. `X-Forwarded-For` is believed only when the direct
/// peer is in `trusted`; then the rightmost address that is not itself a
/// trusted proxy is the client.
pub fn client_ip(req: &HttpRequest, trusted: &[IpNet]) -> Option<IpAddr> {
    let peer = req.peer_addr().map(|a| a.ip())?;
    if trusted.is_empty() || !is_trusted(peer, trusted) {
        return Some(peer);
    }
    let mut client = peer;
    for value in req.headers().get_all("x-forwarded-for") {
        let Ok(value) = value.to_str() else {
            return Some(client);
        };
        client = forwarded_client(value, trusted).unwrap_or(client);
    }
    Some(client)
}

fn is_trusted(ip: IpAddr, trusted: &[IpNet]) -> bool {
    let ip = match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    };
    trusted.iter().any(|net| net.contains(&ip))
}

/// From one `X-Forwarded-For` value: the rightmost entry that is not a
/// trusted proxy. A malformed entry stops the walk (nothing left of it is
/// believed).
pub fn forwarded_client(value: &str, trusted: &[IpNet]) -> Option<IpAddr> {
    let mut last = None;
    for part in value.rsplit(',') {
        let ip: IpAddr = part.trim().parse().ok()?;
        last = Some(ip);
        if !is_trusted(ip, trusted) {
            return Some(ip);
        }
    }
    last
}

/// The value of cookie `name` in a `Cookie` header, without allocating.
pub fn find_cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (k, v) = pair.split_once('=')?;
        (k.trim() == name).then(|| v.trim().trim_matches('"'))
    })
}

pub fn cookie<'a>(req: &'a HttpRequest, name: &str) -> Option<&'a str> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|h| h.to_str().ok())
        .find_map(|h| find_cookie(h, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn nets(s: &[&str]) -> Vec<IpNet> {
        s.iter().map(|n| n.parse().unwrap()).collect()
    }

    #[test]
    fn forwarded_for_takes_rightmost_untrusted() {
        let t = nets(&["10.0.0.0/8"]);
        assert_eq!(
            forwarded_client("1.2.3.4, 10.0.0.5", &t),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(
            forwarded_client("6.6.6.6, 1.2.3.4", &t),
            Some("1.2.3.4".parse().unwrap())
        );
        assert_eq!(forwarded_client("garbage, 10.0.0.5", &t), None);
        assert_eq!(
            forwarded_client("10.0.0.9", &t),
            Some("10.0.0.9".parse().unwrap())
        );
    }

    #[test]
    fn cookies() {
        assert_eq!(
            find_cookie("a=1; gatehouse_session=abc; b=2", "gatehouse_session"),
            Some("abc")
        );
        assert_eq!(
            find_cookie("gatehouse_sessionx=1", "gatehouse_session"),
            None
        );
        assert_eq!(find_cookie("", "x"), None);
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,200}") {
            let _ = find_cookie(&s, "gatehouse_session");
            let _ = forwarded_client(&s, &nets(&["0.0.0.0/0"]));
        }
    }
}
