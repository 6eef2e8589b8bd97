//! Parsers for human-written durations (`500ms`, `5s`, `2m`) and sizes (`64KiB`,
//! `16MiB`, `1000`), used as clap value parsers; the formats for people are the
//! benchmark harness's, shared with its reports.
//!
//! Written here rather than pulled from `humantime`/`bytesize`: each is a dozen
//! lines, and the accepted syntax is exactly what `--help` documents.

use std::time::Duration;

pub(crate) use npipe_bench::units::{format_duration, format_size};

/// Parses `N[unit]` with unit `ns`, `us`, `ms`, `s`, `m`, `h` (default `s`); `N` may
/// have a fraction (`1.5s`).
pub(crate) fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale_ns: f64 = match unit.trim() {
        "ns" => 1.0,
        "us" | "µs" => 1e3,
        "ms" => 1e6,
        "" | "s" | "sec" => 1e9,
        "m" | "min" => 60e9,
        "h" => 3600e9,
        other => {
            return Err(format!(
                "unknown duration unit {other:?} in {text:?}: use ns, us, ms, s, m or h (e.g. 500ms, 5s, 2m)"
            ))
        }
    };
    let value: f64 = number.parse().map_err(|_| {
        format!("invalid duration {text:?}: expected a number and a unit, e.g. 500ms, 5s, 2m")
    })?;
    let nanos = value * scale_ns;
    if !nanos.is_finite() || nanos > u64::MAX as f64 {
        return Err(format!("duration {text:?} is too long"));
    }
    Ok(Duration::from_nanos(nanos.round() as u64))
}

/// Parses `N[unit]` with unit `B`, `K`/`KiB`, `M`/`MiB`, `G`/`GiB` (powers of 1024) or
/// `KB`, `MB`, `GB` (powers of 1000); units are case-insensitive.
pub(crate) fn parse_size(text: &str) -> Result<u64, String> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let scale: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kib" => 1 << 10,
        "m" | "mib" => 1 << 20,
        "g" | "gib" => 1 << 30,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        other => {
            return Err(format!(
                "unknown size unit {other:?} in {text:?}: use B, KiB, MiB, GiB, KB, MB or GB (e.g. 64KiB)"
            ))
        }
    };
    let value: u64 = number.parse().map_err(|_| {
        format!("invalid size {text:?}: expected a whole number and a unit, e.g. 64KiB")
    })?;
    value
        .checked_mul(scale)
        .ok_or_else(|| format!("size {text:?} is too large"))
}

/// A size that must fit in a `u32` (message sizes: up to 4 GiB - 1).
pub(crate) fn parse_size_u32(text: &str) -> Result<u32, String> {
    let size = parse_size(text)?;
    u32::try_from(size).map_err(|_| {
        format!(
            "{text:?} is too large: the limit is 4 GiB - 1 ({} bytes)",
            u32::MAX
        )
    })
}

/// A size that fits in memory (payloads).
pub(crate) fn parse_size_usize(text: &str) -> Result<usize, String> {
    let size = parse_size(text)?;
    usize::try_from(size).map_err(|_| format!("{text:?} is too large"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("5s"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("250us"), Ok(Duration::from_micros(250)));
        assert_eq!(parse_duration("10ns"), Ok(Duration::from_nanos(10)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert_eq!(parse_duration(" 3 s "), Ok(Duration::from_secs(3)));
    }

    #[test]
    fn bad_durations() {
        for bad in ["", "s", "5x", "1.2.3s", "-1s", "5 days", "1e9999h"] {
            assert!(parse_duration(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1000"), Ok(1000));
        assert_eq!(parse_size("0"), Ok(0));
        assert_eq!(parse_size("64KiB"), Ok(65536));
        assert_eq!(parse_size("64k"), Ok(65536));
        assert_eq!(parse_size("16MiB"), Ok(16 << 20));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4KB"), Ok(4000));
        assert_eq!(parse_size("2mb"), Ok(2_000_000));
        assert_eq!(parse_size("12B"), Ok(12));
    }

    #[test]
    fn bad_sizes() {
        for bad in [
            "",
            "KiB",
            "1.5MiB",
            "-1",
            "12 parsecs",
            "99999999999999999999",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_size("99999999999GiB").is_err());
        assert!(parse_size_u32("4GiB").is_err());
        assert_eq!(parse_size_u32("4194303KiB"), Ok(4194303 * 1024));
    }
}
