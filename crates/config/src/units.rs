//! Durations and byte sizes as written in the config file and on the command line.

use std::time::Duration;

use crate::raw::{RawDuration, RawSize};

/// Parses a duration: integer seconds, or a number with a unit `ms`, `s`, `m`, `h`, `d`
/// (`"500ms"`, `"30s"`, `"5m"`, `"1h"`, `"7d"`). Errors are human-readable messages.
pub fn parse_duration(value: &RawDuration) -> Result<Duration, String> {
    match value {
        RawDuration::Seconds(n) => u64::try_from(*n)
            .map(Duration::from_secs)
            .map_err(|_| format!("{n} is negative (expected seconds >= 0)")),
        RawDuration::Text(s) => parse_duration_str(s),
    }
}

/// [`parse_duration`] for a string, e.g. from the CLI (`--expires-in 1h`).
pub fn parse_duration_str(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (expected e.g. 500ms, 30s, 5m, 1h, 7d)"))?;
    let ms_per: u64 = match unit.trim() {
        "ms" => 1,
        "" | "s" => 1_000,
        "m" => 60_000,
        "h" => 3_600_000,
        "d" => 86_400_000,
        _ => return Err(format!("`{s}` has an unknown unit (expected ms, s, m, h or d)")),
    };
    n.checked_mul(ms_per)
        .map(Duration::from_millis)
        .ok_or_else(|| format!("`{s}` is too large"))
}

/// Parses a byte size: integer bytes, or a number with `B`, `KB`, `KiB`, `MB`, `MiB`, `GB`,
/// `GiB` (`"4MiB"`). Errors are human-readable messages.
pub fn parse_size(value: &RawSize) -> Result<usize, String> {
    let bytes: u64 = match value {
        RawSize::Bytes(n) => u64::try_from(*n).map_err(|_| format!("{n} is negative (expected bytes >= 0)"))?,
        RawSize::Text(s) => {
            let t = s.trim();
            let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
            let (num, unit) = t.split_at(split);
            let n: u64 = num
                .parse()
                .map_err(|_| format!("`{s}` is not a size (expected e.g. 4MiB, 512KiB, 1048576)"))?;
            let mult: u64 = match unit.trim() {
                "" | "B" => 1,
                "KB" | "kB" => 1_000,
                "KiB" => 1_024,
                "MB" => 1_000_000,
                "MiB" => 1_048_576,
                "GB" => 1_000_000_000,
                "GiB" => 1_073_741_824,
                _ => return Err(format!("`{s}` has an unknown unit (expected B, KB, KiB, MB, MiB, GB, GiB)")),
            };
            n.checked_mul(mult).ok_or_else(|| format!("`{s}` is too large"))?
        }
    };
    usize::try_from(bytes).map_err(|_| "size is too large for this platform".to_string())
}
