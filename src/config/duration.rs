//! Durations in configuration: `"500ms"`, `"90s"`, `"15m"`, `"24h"`, `"30d"`.

use std::time::Duration;

/// Parses `"500ms"`, `"90s"`, `"15m"`, `"24h"`, `"30d"` (also `ns`, `us`); a bare integer is seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let fail = |why: &str| Err(format!("bad duration {s:?}: {why}"));
    if t.is_empty() {
        return fail("empty");
    }
    if t.starts_with('-') {
        return fail("negative");
    }
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    if num.is_empty() {
        return fail("expected a number followed by ms, s, m, h or d");
    }
    let Ok(n) = num.parse::<u64>() else {
        return fail("too large");
    };
    let secs = |k: u64| n.checked_mul(k).map(Duration::from_secs);
    let d = match unit.trim() {
        "ns" => Some(Duration::from_nanos(n)),
        "us" => Some(Duration::from_micros(n)),
        "ms" => Some(Duration::from_millis(n)),
        "" | "s" => secs(1),
        "m" => secs(60),
        "h" => secs(3_600),
        "d" => secs(86_400),
        _ => return fail("unknown unit (use ms, s, m, h or d)"),
    };
    d.map_or_else(|| fail("too large"), Ok)
}

/// The inverse of [`parse_duration`]: the largest unit that divides `d` exactly.
pub fn format_duration(d: Duration) -> String {
    let (secs, nanos) = (d.as_secs(), d.subsec_nanos());
    if nanos == 0 {
        for (k, unit) in [(86_400, "d"), (3_600, "h"), (60, "m")] {
            if secs != 0 && secs % k == 0 {
                return format!("{}{unit}", secs / k);
            }
        }
        return format!("{secs}s");
    }
    let total = d.as_nanos();
    if nanos % 1_000_000 == 0 {
        format!("{}ms", total / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!("{}us", total / 1_000)
    } else {
        format!("{total}ns")
    }
}
