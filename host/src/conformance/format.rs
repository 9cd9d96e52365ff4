//! How the suite writes numbers and text into its messages: sizes,
//! durations, counted nouns, shortened and one-line text.

use std::time::Duration;

/// `1 capability`, `2 capabilities`.
pub(crate) fn count(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// A size: `512 bytes`, `49.1 KiB`, `10.0 MiB`.
pub(crate) fn human_bytes(bytes: u64) -> String {
    if bytes >= 1024 * 1024 {
        format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
    } else if bytes >= 1024 {
        format!("{:.1} KiB", bytes as f64 / 1024.0)
    } else {
        format!("{bytes} bytes")
    }
}

/// A duration in milliseconds: `121 ms`, `0.49 ms`.
pub(crate) fn human_ms(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1e3;
    if ms >= 100.0 {
        format!("{ms:.0} ms")
    } else {
        format!("{ms:.2} ms")
    }
}

/// A duration as fractional milliseconds rounded to the microsecond, for
/// the reports' `duration_ms` fields.
pub(crate) fn round_ms(d: Duration) -> f64 {
    (d.as_secs_f64() * 1e6).round() / 1e3
}

/// The first `max` characters of `text`, with `...` when cut.
pub(crate) fn truncate(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((at, _)) => format!("{}...", &text[..at]),
        None => text.to_owned(),
    }
}

/// Newlines (a trap's backtrace, a plugin's stderr) folded into one line.
pub(crate) fn one_line(text: &str) -> String {
    text.split(['\n', '\r'])
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(human_bytes(512), "512 bytes");
        assert_eq!(human_bytes(50_278), "49.1 KiB");
        assert_eq!(human_bytes(10 * 1024 * 1024), "10.0 MiB");
        assert_eq!(human_ms(Duration::from_millis(121)), "121 ms");
        assert_eq!(human_ms(Duration::from_micros(490)), "0.49 ms");
        assert_eq!(round_ms(Duration::from_nanos(1_234_567)), 1.235);
    }

    #[test]
    fn text_is_counted_cut_and_folded() {
        assert_eq!(count(1, "capability", "capabilities"), "1 capability");
        assert_eq!(count(0, "capability", "capabilities"), "0 capabilities");
        assert_eq!(truncate("h\u{e9}llo", 2), "h\u{e9}...");
        assert_eq!(truncate("hi", 2), "hi");
        assert_eq!(one_line("a\n  b\r\n\nc "), "a | b | c");
    }
}
