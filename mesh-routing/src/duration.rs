//! Durations as Istio YAML writes them (`1s`, `0.5s`, `100ms`, `1m30s`): Go's
//! `time.ParseDuration` syntax, which is what Istio's JSON decoding of protobuf durations uses.

use std::time::Duration;

/// Parses a Go-style duration. Negative durations and units other than
/// `ns`, `us`/`µs`, `ms`, `s`, `m`, `h` are rejected.
///
/// ```
/// use std::time::Duration;
/// assert_eq!(mesh_routing::parse_duration("1m30.5s"), Ok(Duration::from_millis(90_500)));
/// assert!(mesh_routing::parse_duration("10").is_err());
/// ```
pub fn parse_duration(s: &str) -> Result<Duration, &'static str> {
    if s.is_empty() {
        return Err("empty duration");
    }
    if s.starts_with('-') {
        return Err("duration must not be negative");
    }
    let s = s.strip_prefix('+').unwrap_or(s);
    if s == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = s;
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let num_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("missing unit (use ms, s, m or h)")?;
        let (num, after) = rest.split_at(num_end);
        if num.is_empty() || num == "." {
            return Err("expected a number");
        }
        let unit_end = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, next) = after.split_at(unit_end);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err("unknown unit (use ms, s, m or h)"),
        };
        let (int_part, frac_part) = num.split_once('.').unwrap_or((num, ""));
        if frac_part.contains('.') {
            return Err("expected a number");
        }
        let int: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| "number too large")?
        };
        let mut nanos = int.checked_mul(unit_nanos).ok_or("duration too large")?;
        // Fraction: scale digit by digit so `0.1s` is exactly 100ms.
        let mut scale = unit_nanos;
        for d in frac_part.bytes() {
            scale /= 10;
            if scale == 0 {
                break;
            }
            nanos += u128::from(d - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(nanos).ok_or("duration too large")?;
        rest = next;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| "duration too large")?;
    // The remainder is < 1e9, so it fits.
    let sub = (total_nanos % 1_000_000_000) as u32;
    Ok(Duration::new(secs, sub))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_style_durations_parse() {
        assert_eq!(parse_duration("1s"), Ok(Duration::from_secs(1)));
        assert_eq!(parse_duration("0.5s"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_duration("1h2m3s"), Ok(Duration::from_secs(3723)));
        assert_eq!(parse_duration("1.5h"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(".5s"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn malformed_durations_are_rejected() {
        for bad in ["", "10", "-1s", "1x", "s", "1..2s", "1.2.3s", "ms", "."] {
            assert!(parse_duration(bad).is_err(), "{bad:?} should not parse");
        }
    }
}
