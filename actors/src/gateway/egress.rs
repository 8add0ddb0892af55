//! Egress policy: which upstream provider URLs / addresses the gateway may call.
//!
//! Checked statically when a provider is configured (`check_url`) and again at request
//! time after DNS resolution (`resolve`): the HTTP client connects only to the addresses
//! `resolve` returns, so DNS rebinding cannot bypass the address rules.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EgressPolicy {
    pub allow_private: bool,
    pub allow_hosts: Vec<String>, // lowercase patterns; empty = any host
    pub deny_hosts: Vec<String>,  // lowercase patterns
}

/// Why a call is refused. The message is safe for logs and for an admin (it
/// names the host/address and the rule), but callers will NOT send it to API clients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct EgressDenied(pub String);

fn deny(msg: impl Into<String>) -> EgressDenied {
    EgressDenied(msg.into())
}

/// Cloud metadata host names, refused whatever the policy says.
const METADATA_HOSTS: &[(&str, &str)] = &[
    ("metadata.google.internal", "the gcp metadata endpoint"),
    ("metadata.goog", "the gcp metadata endpoint"),
    ("metadata", "a cloud metadata endpoint (gcp short name)"),
    ("instance-data", "the aws metadata endpoint"),
    ("instance-data.ec2.internal", "the aws metadata endpoint"),
    ("metadata.azure.com", "the azure metadata endpoint"),
];

enum Class {
    Forbidden(&'static str),
    Loopback,
    Private,
    Public,
}

fn classify_v4(ip: Ipv4Addr) -> Class {
    match ip.octets() {
        [169, 254, 169, 254] | [100, 100, 100, 200] => Class::Forbidden("a cloud metadata address"),
        [0, ..] => Class::Forbidden("an unspecified address"),
        [169, 254, ..] => Class::Forbidden("a link-local address"),
        [224..=239, ..] => Class::Forbidden("a multicast address"),
        [255, 255, 255, 255] => Class::Forbidden("the broadcast address"),
        [240..=255, ..] => Class::Forbidden("a reserved address"),
        [127, ..] => Class::Loopback,
        [10, ..]
        | [172, 16..=31, ..]
        | [192, 168, ..]
        | [100, 64..=127, ..]
        | [198, 18..=19, ..] => Class::Private,
        _ => Class::Public,
    }
}

fn classify(ip: IpAddr) -> Class {
    let v6 = match ip {
        IpAddr::V4(v4) => return classify_v4(v4),
        IpAddr::V6(v6) => v6,
    };
    if v6.is_unspecified() {
        return Class::Forbidden("an unspecified address");
    }
    if v6.is_loopback() {
        return Class::Loopback;
    }
    let s = v6.segments();
    let o = v6.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped), ::a.b.c.d (compatible), 64:ff9b::a.b.c.d (NAT64)
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => return classify_v4(tail),
        [0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254] => {
            return Class::Forbidden("a cloud metadata address")
        }
        _ => {}
    }
    match s[0] {
        x if x & 0xffc0 == 0xfe80 => Class::Forbidden("a link-local address"),
        x if x & 0xff00 == 0xff00 => Class::Forbidden("a multicast address"),
        // fc00::/7 unique-local, fec0::/10 deprecated site-local
        x if x & 0xfe00 == 0xfc00 || x & 0xffc0 == 0xfec0 => Class::Private,
        _ => Class::Public,
    }
}

/// Lowercase, strip `[]` around a v6 literal and one trailing dot; IP literals in canonical form.
fn canon(host: &str) -> String {
    let h = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let h = h.strip_suffix('.').unwrap_or(h).to_ascii_lowercase();
    match h.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => h,
    }
}

/// `example.com` = exactly that host; `*.example.com` = any subdomain; `.example.com` = both.
fn host_matches(pattern: &str, host: &str) -> bool {
    let p = pattern.trim().to_ascii_lowercase();
    let (sub, bare, base) = match (p.strip_prefix("*."), p.strip_prefix('.')) {
        (Some(b), _) => (true, false, canon(b)),
        (_, Some(b)) => (true, true, canon(b)),
        _ => (false, true, canon(&p)),
    };
    let in_sub = host.len() > base.len() + 1 && host.ends_with(&format!(".{base}"));
    !base.is_empty() && ((bare && host == base) || (sub && in_sub))
}

/// A last label that is a number (`127.1`, `0x7f000001`) makes resolvers read the name as an
/// IPv4 address in a non-standard form.
fn ends_in_number(host: &str) -> bool {
    let last = host.rsplit('.').next().unwrap_or("");
    match last.strip_prefix("0x") {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()),
    }
}

impl EgressPolicy {
    /// Static check of a provider base URL (config load / admin change).
    pub fn check_url(&self, url: &str, local: bool) -> Result<(), EgressDenied> {
        const NO_SCHEME: &str = "provider url must start with http:// or https://";
        let (scheme, rest) = url.split_once("://").ok_or_else(|| deny(NO_SCHEME))?;
        let tls = match scheme.to_ascii_lowercase().as_str() {
            "https" => true,
            "http" => false,
            s if !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b)) =>
            {
                return Err(deny(format!(
                    "url scheme {s} is not allowed (only http and https)"
                )))
            }
            _ => return Err(deny(NO_SCHEME)),
        };
        let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
        if authority.contains('@') {
            return Err(deny("url must not contain credentials (user:password@)"));
        }
        let (host, port) = match authority.strip_prefix('[') {
            Some(r) => {
                let (h, after) = r
                    .split_once(']')
                    .ok_or_else(|| deny("url has an unterminated [ipv6] host"))?;
                if h.parse::<Ipv6Addr>().is_err() {
                    return Err(deny("url has an invalid [ipv6] host"));
                }
                // "" = default port; anything after `]` other than `:port` is invalid
                (
                    h,
                    (!after.is_empty()).then(|| after.strip_prefix(':').unwrap_or("")),
                )
            }
            None => match authority.split_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (authority, None),
            },
        };
        if host.is_empty() {
            return Err(deny("url has no host"));
        }
        let digits = |p: &str| p.bytes().all(|b| b.is_ascii_digit());
        if port.is_some_and(|p| !digits(p) || !matches!(p.parse::<u16>(), Ok(1..))) {
            return Err(deny("url has an invalid port"));
        }
        self.check_host(host, local)?;
        match canon(host).parse::<IpAddr>() {
            Ok(ip) => self.check_ip(ip, local, tls),
            Err(_) => Ok(()), // a name: decided by the address rules at resolution time
        }
    }

    /// Host-name rules only (metadata names, deny_hosts, allow_hosts). `host` may be an IP literal
    /// (with or without [] for v6); matching is case-insensitive, ignores one trailing dot.
    pub fn check_host(&self, host: &str, _local: bool) -> Result<(), EgressDenied> {
        let h = canon(host);
        if h.is_empty() {
            return Err(deny("empty host"));
        }
        if h.parse::<IpAddr>().is_err() {
            if !h
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._".contains(&b))
            {
                return Err(deny(format!("host {h:?} contains invalid characters")));
            }
            if h.split('.').any(str::is_empty) {
                return Err(deny(format!("host {h} has an empty label")));
            }
            if ends_in_number(&h) {
                return Err(deny(format!(
                    "host {h} looks like a non-standard ip address"
                )));
            }
            if let Some((_, what)) = METADATA_HOSTS.iter().find(|(m, _)| *m == h) {
                return Err(deny(format!("host {h} is {what}")));
            }
        }
        if self.deny_hosts.iter().any(|p| host_matches(p, &h)) {
            return Err(deny(format!("host {h} is in egress.deny_hosts")));
        }
        if !self.allow_hosts.is_empty() && !self.allow_hosts.iter().any(|p| host_matches(p, &h)) {
            return Err(deny(format!("host {h} is not in egress.allow_hosts")));
        }
        Ok(())
    }

    /// Address rules for one IP. `tls` = the scheme is https.
    pub fn check_ip(&self, ip: IpAddr, local: bool, tls: bool) -> Result<(), EgressDenied> {
        match classify(ip) {
            Class::Forbidden(what) => Err(deny(format!("{ip} is {what}"))),
            Class::Loopback if !local => Err(deny(format!(
                "{ip} is a loopback address (only providers with local = true)"
            ))),
            Class::Private if !self.allow_private => Err(deny(format!(
                "{ip} is a private address (set egress.allow_private)"
            ))),
            Class::Public if !tls => Err(deny(format!(
                "plain http to {ip} refused: plain http is only allowed to local or private providers"
            ))),
            _ => Ok(()),
        }
    }

    /// Request-time: check_host, then resolve (IP literal: no DNS; else tokio::net::lookup_host),
    /// then check_ip on EVERY resolved address — if any is forbidden the whole name is refused.
    /// Returns the addresses (each with `port`). A DNS failure is an EgressDenied too ("cannot resolve HOST").
    pub async fn resolve(
        &self,
        host: &str,
        port: u16,
        local: bool,
        tls: bool,
    ) -> Result<Vec<SocketAddr>, EgressDenied> {
        self.check_host(host, local)?;
        let h = canon(host);
        let found: Vec<SocketAddr> = match h.parse::<IpAddr>() {
            Ok(ip) => vec![SocketAddr::new(ip, port)],
            Err(_) => tokio::net::lookup_host((h.as_str(), port))
                .await
                .map_err(|_| deny(format!("cannot resolve {h}")))?
                .collect(),
        };
        let mut addrs: Vec<SocketAddr> = Vec::with_capacity(found.len());
        for a in found {
            if let Err(e) = self.check_ip(a.ip(), local, tls) {
                return Err(deny(format!("{h} resolves to a refused address: {e}")));
            }
            if !addrs.contains(&a) {
                addrs.push(a);
            }
        }
        if addrs.is_empty() {
            return Err(deny(format!("cannot resolve {h}")));
        }
        Ok(addrs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const LOOPBACK: &str = "127.0.0.1 127.8.9.10 ::1 ::ffff:127.0.0.1 64:ff9b::7f00:1";
    const PRIVATE: &str = "10.0.0.5 172.16.0.1 172.31.255.255 192.168.1.1 100.64.0.1 \
        100.127.255.254 198.18.0.1 198.19.255.255 fc00::1 fd12:3456::1 fd00:ec2::253 \
        ::ffff:10.0.0.1 64:ff9b::a00:1 ::10.0.0.1";
    const PUBLIC: &str = "8.8.8.8 172.15.0.1 172.32.0.1 100.63.255.255 100.128.0.1 198.17.0.1 \
        198.20.0.1 192.0.2.1 2001:4860::8888 2001:db8::1 ::ffff:8.8.8.8 64:ff9b::808:808";
    const FORBIDDEN: &str = "169.254.169.254 fd00:ec2::254 100.100.100.200 ::ffff:169.254.169.254 \
        ::169.254.169.254 64:ff9b::a9fe:a9fe => cloud metadata address
        0.0.0.0 0.1.2.3 :: => unspecified address
        169.254.1.1 fe80::1 febf::1 ::ffff:169.254.0.1 => link-local address
        224.0.0.1 239.255.255.250 ff02::1 => multicast address
        255.255.255.255 => broadcast address
        240.0.0.1 => reserved address";

    fn pol(allow_private: bool, allow: &str, deny: &str) -> EgressPolicy {
        let v = |s: &str| s.split_whitespace().map(String::from).collect();
        let (allow_hosts, deny_hosts) = (v(allow), v(deny));
        EgressPolicy {
            allow_private,
            allow_hosts,
            deny_hosts,
        }
    }
    /// `expected` = "" for allowed, else a part of the refusal message.
    #[track_caller]
    fn check<T: std::fmt::Debug>(r: Result<T, EgressDenied>, expected: &str) {
        match r {
            Ok(_) => assert!(expected.is_empty(), "allowed; want {expected:?}"),
            Err(EgressDenied(e)) => assert!(!expected.is_empty() && e.contains(expected), "{e}"),
        }
    }
    /// Lines of `items... => expected`: each item goes through `f` and is checked.
    #[track_caller]
    fn table(lines: &str, f: impl Fn(&str) -> Result<(), EgressDenied>) {
        for (items, expected) in lines.lines().map(|l| l.split_once("=>").unwrap()) {
            for item in items.split_whitespace() {
                let r = f(item);
                assert!(!r.as_ref().is_err_and(|e| e.0.contains("sekret")), "{item}");
                check(r, expected.trim());
            }
        }
    }

    #[test]
    fn address_rules() {
        // kind, allow_private local tls, expected
        let cases = "L 101 loopback address (only providers with local = true)
            L 010
            L 011
            P 001 private address (set egress.allow_private)
            P 010 private address
            P 100
            P 101
            U 001
            U 110 plain http is only allowed to local or private providers";
        for line in cases.lines().map(str::trim) {
            let list = [("L", LOOPBACK), ("P", PRIVATE), ("U", PUBLIC)];
            let list = list.iter().find(|(k, _)| line.starts_with(k)).unwrap().1;
            let f: Vec<bool> = line[2..5].bytes().map(|b| b == b'1').collect();
            let lines = format!("{list} => {}", line.get(6..).unwrap_or(""));
            table(&lines, |ip| {
                pol(f[0], "", "").check_ip(ip.parse().unwrap(), f[1], f[2])
            });
        }
        for flags in 0..8 {
            let (private, local, tls) = (flags & 1 != 0, flags & 2 != 0, flags & 4 != 0);
            table(FORBIDDEN, |ip| {
                pol(private, "", "").check_ip(ip.parse().unwrap(), local, tls)
            });
        }
        let e = pol(false, "", "").check_ip("::ffff:a9fe:a9fe".parse().unwrap(), true, true);
        assert_eq!(
            e.unwrap_err().0,
            "::ffff:169.254.169.254 is a cloud metadata address"
        );
    }

    #[test]
    fn host_rules() {
        let p = pol(true, "", "evil.com *.bad.org .worse.net [::1] 10.0.0.1");
        table(
            "metadata.google.internal metadata.goog metadata instance-data \
                instance-data.ec2.internal metadata.azure.com Metadata.Azure.com. => metadata endpoint
            evil.com EVIL.COM. x.bad.org a.b.bad.org worse.net x.worse.net => in egress.deny_hosts
            0:0::1 [::1] 10.0.0.1 => is in egress.deny_hosts
            x.bad.org. => host x.bad.org is in egress.deny_hosts
            sub.evil.com bad.org xworse.net evil.com.au ::2 metadata.example.com =>
            127.1 0x7f000001 2130706433 => non-standard ip
            a..b .a => empty label
            a%41.com a/b a@b fe80::1%eth0 => invalid characters",
            |h| p.check_host(h, true),
        );
        let p = pol(
            false,
            "api.openai.com *.anthropic.com .example.org",
            "no.example.org",
        );
        table(
            "api.openai.com API.OpenAI.com. x.anthropic.com example.org a.example.org =>
            openai.com anthropic.com 1.2.3.4 api.openai.com.evil.net => not in egress.allow_hosts
            y => host y is not in egress.allow_hosts
            No.Example.org => host no.example.org is in egress.deny_hosts",
            |h| p.check_host(h, false),
        );
        check(
            p.check_url("https://api2.openai.com/v1", false),
            "allow_hosts",
        );
        check(p.check_url("https://X.Anthropic.COM./v1", false), "");
    }

    #[test]
    fn urls() {
        let p = pol(false, "", "");
        table(
            "https://api.openai.com/v1 https://a.com:8443/v1?x=1#f HTTPS://A.COM \
                https://a.com./v1 http://my-llm.internal:8000/v1 https://8.8.8.8/v1 \
                https://[2001:4860::8888]:443/ https://1password.com https://my_llm.internal =>
            ftp://x.com/ => scheme ftp is not allowed
            file:///etc/passwd => scheme file is not allowed
            api.openai.com/v1 //api.openai.com => must start with http
            https:///v1 https:// https://:443/ => no host
            https://a.com:0/ https://a.com:99999/ https://a.com:x/ https://a.com:+80/ => invalid port
            https://a.com:/ https://[::1]80/ => invalid port
            https://[::1 => unterminated
            https://[no]/ => invalid [ipv6]
            https://u:sekret@a.com/v1 https://sekret@a.com http://a:sekret@[::1]/ => credentials
            https://evil.com\\@good.com/ => credentials
            https://a%41.com/ => invalid characters
            https://127.1/ => non-standard ip
            http://8.8.8.8/v1 => plain http
            https://169.254.169.254/latest https://[::ffff:169.254.169.254]/ => metadata
            https://[fe80::1]/ => link-local
            http://10.0.0.5:8000/v1 => private
            http://[::1]:8080/v1 => loopback",
            |u| p.check_url(u, false),
        );
        check(
            pol(true, "", "").check_url("http://10.0.0.5:8000/v1", false),
            "",
        );
        table("http://[::1]:8080/v1 http://[::ffff:127.0.0.1]/ =>", |u| {
            p.check_url(u, true)
        });
    }

    #[tokio::test(flavor = "current_thread")]
    async fn resolve() {
        let p = pol(false, "", "");
        check(p.resolve("localhost", 8080, false, false).await, "loopback");
        for name in ["localhost", "LocalHost."] {
            let addrs = p.resolve(name, 8080, true, false).await.unwrap();
            assert!(!addrs.is_empty());
            assert!(addrs
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 8080));
        }
        let denied = pol(false, "", "localhost");
        check(
            denied.resolve("localhost", 80, true, false).await,
            "deny_hosts",
        );
        // IP literals: no DNS
        let one = |s: &str| -> Vec<SocketAddr> { vec![s.parse().unwrap()] };
        assert_eq!(p.resolve("[::1]", 9, true, false).await, Ok(one("[::1]:9")));
        assert_eq!(p.resolve("::1", 9, true, false).await, Ok(one("[::1]:9")));
        assert_eq!(
            p.resolve("8.8.8.8", 443, false, true).await,
            Ok(one("8.8.8.8:443"))
        );
        let cases = "8.8.8.8=plain http;169.254.169.254=metadata;10.0.0.1=private;\
            metadata.google.internal=metadata;nonexistent.invalid=cannot resolve nonexistent.invalid";
        for (host, expected) in cases.split(';').map(|c| c.trim().split_once('=').unwrap()) {
            check(p.resolve(host, 80, true, false).await, expected);
        }
    }
}
