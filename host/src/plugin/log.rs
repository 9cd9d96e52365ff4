//! `host.log` hygiene: a per-instance token bucket (`LogLimiter`) so a
//! plugin cannot flood the host's log, and [`escape`], so a plugin cannot
//! forge log lines (newlines and control characters become escapes) or
//! write huge ones (each text is cut at a size limit).

use std::time::{Duration, Instant};

/// Longest `host.log` message kept, in bytes; the rest is cut, saying how
/// much.
pub const LOG_MESSAGE_MAX_BYTES: usize = 4096;
/// Longest key or value of a `host.log` field kept, in bytes.
pub const LOG_FIELD_MAX_BYTES: usize = 1024;
/// Most `host.log` fields kept per line; the rest are dropped, saying how
/// many.
pub const LOG_FIELDS_MAX: usize = 32;

/// How often dropped lines are reported.
const REPORT_EVERY: Duration = Duration::from_secs(1);

/// `text` with every control character (newlines, carriage returns, tabs,
/// escape sequences, Unicode line separators) written as a Rust-style
/// escape, cut at `max_bytes` (on a character boundary) with a note of how
/// many bytes were cut.
pub fn escape(text: &str, max_bytes: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max_bytes) + 16);
    for (at, c) in text.char_indices() {
        if out.len() >= max_bytes {
            out.push_str(&format!("…[{} bytes cut]", text.len() - at));
            break;
        }
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() || matches!(c, '\u{2028}' | '\u{2029}') => {
                out.push_str(&c.escape_unicode().to_string())
            }
            c => out.push(c),
        }
    }
    out
}

/// What the limiter says about one line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Verdict {
    /// Whether to write the line.
    pub(crate) write: bool,
    /// Lines dropped since the last report, when it is time to report them.
    pub(crate) report_dropped: Option<u64>,
}

/// A token bucket of `host.log` lines: `burst` lines at once, refilled at
/// `per_second`; dropped lines are counted and reported at most once per
/// second.
#[derive(Debug)]
pub(crate) struct LogLimiter {
    per_second: f64,
    burst: f64,
    tokens: f64,
    refilled: Instant,
    dropped: u64,
    reported: Instant,
}

impl LogLimiter {
    /// A full bucket at `now`.
    pub(crate) fn new(per_second: u32, burst: u32, now: Instant) -> Self {
        Self {
            per_second: f64::from(per_second),
            burst: f64::from(burst),
            tokens: f64::from(burst),
            refilled: now,
            dropped: 0,
            reported: now,
        }
    }

    /// Whether a line written at `now` passes, and whether to report the
    /// lines dropped so far.
    pub(crate) fn admit(&mut self, now: Instant) -> Verdict {
        let since = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + since * self.per_second).min(self.burst);
        self.refilled = now;
        let write = self.tokens >= 1.0;
        if write {
            self.tokens -= 1.0;
        } else {
            self.dropped += 1;
        }
        let report_dropped = (self.dropped > 0
            && now.saturating_duration_since(self.reported) >= REPORT_EVERY)
            .then(|| {
                self.reported = now;
                std::mem::take(&mut self.dropped)
            });
        Verdict {
            write,
            report_dropped,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Finding: a plugin could forge log lines with newlines and control
    /// characters in `host.log` messages.
    #[test]
    fn log_text_is_escaped_so_a_plugin_cannot_forge_lines() {
        let forged = "ok\n2026-01-01T00:00:00Z  INFO cell_host: registered\r\x1b[2J\u{2028}end\\";
        let escaped = escape(forged, LOG_MESSAGE_MAX_BYTES);
        assert!(!escaped.chars().any(|c| c.is_control()), "{escaped}");
        assert_eq!(
            escaped,
            "ok\\n2026-01-01T00:00:00Z  INFO cell_host: registered\\r\\u{1b}[2J\\u{2028}end\\\\"
        );
        assert_eq!(escape("plain", 100), "plain");
    }

    #[test]
    fn long_log_text_is_cut_saying_how_much() {
        let long = "é".repeat(3000); // 6000 bytes
        let cut = escape(&long, LOG_MESSAGE_MAX_BYTES);
        assert!(cut.len() < LOG_MESSAGE_MAX_BYTES + 32, "{}", cut.len());
        assert!(
            cut.ends_with("…[1904 bytes cut]"),
            "{}",
            &cut[cut.len() - 30..]
        );
    }

    /// Finding: `host.log` had no rate limit. A burst of 200 passes, then
    /// 100 lines a second; the drops are reported once a second.
    #[test]
    fn log_lines_are_rate_limited_and_drops_reported_once_a_second() {
        let start = Instant::now();
        let mut limiter = LogLimiter::new(100, 200, start);
        let written = (0..1_000).filter(|_| limiter.admit(start).write).count();
        assert_eq!(written, 200);
        // Half a second later: 50 more, no report yet.
        let later = start + Duration::from_millis(500);
        let verdicts: Vec<Verdict> = (0..100).map(|_| limiter.admit(later)).collect();
        assert_eq!(verdicts.iter().filter(|v| v.write).count(), 50);
        assert!(verdicts.iter().all(|v| v.report_dropped.is_none()));
        // A second after the start: the drops so far are reported once.
        let second = start + Duration::from_secs(1);
        let verdict = limiter.admit(second);
        assert!(verdict.write);
        assert_eq!(verdict.report_dropped, Some(800 + 50));
        assert_eq!(limiter.admit(second).report_dropped, None);
    }
}
