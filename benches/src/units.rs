//! Durations and sizes for people, written once for the harness's reports and
//! the `npipe` command line (`npipe bench`, `npipe demo`, `npipe serve`).
//!
//! Three significant digits: `850ns`, `9.00µs`, `12.3µs`, `4.56ms`, `1.23s`;
//! `512 B`, `64.0 KiB`, `1.50 MiB`.

use std::time::Duration;

/// Formats a duration: `850ns`, `12.3µs`, `4.56ms`, `1.23s`.
pub fn format_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    let (value, unit) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 1_000_000 {
        (ns as f64 / 1e3, "µs")
    } else if ns < 1_000_000_000 {
        (ns as f64 / 1e6, "ms")
    } else {
        (ns as f64 / 1e9, "s")
    };
    format!("{}{unit}", three_digits(value))
}

/// Formats a byte count (powers of 1024): `512 B`, `64.0 KiB`, `1.50 MiB`.
pub fn format_size(bytes: f64) -> String {
    const KIB: f64 = 1024.0;
    let (value, unit) = if bytes < KIB {
        return format!("{bytes:.0} B");
    } else if bytes < KIB * KIB {
        (bytes / KIB, "KiB")
    } else if bytes < KIB * KIB * KIB {
        (bytes / (KIB * KIB), "MiB")
    } else {
        (bytes / (KIB * KIB * KIB), "GiB")
    };
    format!("{} {unit}", three_digits(value))
}

/// `value` (at least 1) with three significant digits, or more digits before
/// the point for 1000 and over.
fn three_digits(value: f64) -> String {
    // Decided on the rounded value, so that 9.996 is `10.0`, not `10.00`.
    let decimals = if value < 9.995 {
        2
    } else if value < 99.95 {
        1
    } else {
        0
    };
    format!("{value:.decimals$}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formatting() {
        assert_eq!(format_duration(Duration::from_nanos(850)), "850ns");
        assert_eq!(format_duration(Duration::from_nanos(12_345)), "12.3µs");
        assert_eq!(format_duration(Duration::from_micros(4_560)), "4.56ms");
        assert_eq!(format_duration(Duration::from_millis(1_230)), "1.23s");
        assert_eq!(format_size(512.0), "512 B");
        assert_eq!(format_size(65536.0), "64.0 KiB");
        assert_eq!(format_size(1.5 * 1024.0 * 1024.0), "1.50 MiB");
    }

    #[test]
    fn three_significant_digits_across_each_decade() {
        assert_eq!(format_duration(Duration::from_nanos(9_000)), "9.00µs");
        assert_eq!(format_duration(Duration::from_nanos(9_996)), "10.0µs");
        assert_eq!(format_duration(Duration::from_nanos(123_456)), "123µs");
        assert_eq!(format_duration(Duration::from_secs(120)), "120s");
        assert_eq!(format_size(500.0 * 1024.0), "500 KiB");
        assert_eq!(format_size(3.0 * 1024.0 * 1024.0 * 1024.0), "3.00 GiB");
    }
}
