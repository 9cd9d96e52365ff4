//! The counter cell's state and rules, free of any WIT types so they test
//! natively.

use std::collections::HashMap;

use crate::json::{self, Value};

/// Cell id registered with discovery (the host may override it).
pub const CELL_ID: &str = "counter";
/// Cell type as discovery reports it.
pub const CELL_TYPE: &str = "counter_cell";
/// Human-readable identity.
pub const IDENTITY: &str = "cellmesh example: counter cell (Rust)";
/// Evolutionary stage.
pub const STAGE: &str = "counting";
/// `status` of the cell's `/health` answer.
pub const HEALTH_STATUS: &str = "healthy";

/// Capability: counts words, lines and characters of a text.
pub const WORD_COUNT: &str = "word-count";
/// Capability: answers its JSON input back.
pub const ECHO: &str = "echo";

/// Probe input for `word-count`; it must succeed.
pub const WORD_COUNT_EXAMPLE: &str =
    r#"{"text":"the quick brown fox\njumps over the lazy dog","top":3}"#;
/// Probe input for `echo`; it must succeed.
pub const ECHO_EXAMPLE: &str = r#"{"hello":"mesh","n":[1,2,3]}"#;

/// Starting level, and the level of a cell that has done nothing.
pub const START_LEVEL: f64 = 0.1;
/// Starting coherence: the fraction of the way a sync moves towards a peer.
pub const START_COHERENCE: f64 = 0.5;
/// Activity (messages + invocations) at which awareness reaches one half.
pub const HALF_AWARENESS_ACTIVITY: f64 = 10.0;
/// Time constant of the evolution rule: after this long the level has
/// covered 63% of the way to its target.
pub const TIME_CONSTANT_MS: f64 = 60_000.0;
/// Longest time one evolution step accounts for.
pub const MAX_STEP_MS: u64 = 600_000;
/// Most frequent words `word-count` may be asked to list.
pub const MAX_TOP: u64 = 50;

/// Names of the primitives, in the order they are reported.
pub const PRIMITIVE_NAMES: [&str; 2] = ["awareness", "coherence"];

/// Counts of one text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TextCounts {
    /// Runs of non-whitespace characters.
    pub words: u64,
    /// Lines as `str::lines` sees them (a final newline opens no new line).
    pub lines: u64,
    /// Unicode scalar values.
    pub chars: u64,
    /// UTF-8 bytes.
    pub bytes: u64,
}

impl TextCounts {
    /// Counts `text`.
    pub fn of(text: &str) -> Self {
        Self {
            words: text.split_whitespace().count() as u64,
            lines: text.lines().count() as u64,
            chars: text.chars().count() as u64,
            bytes: text.len() as u64,
        }
    }

    fn json_fields(&self) -> String {
        format!(
            r#""words":{},"lines":{},"chars":{},"bytes":{}"#,
            self.words, self.lines, self.chars, self.bytes
        )
    }
}

/// What a sync changed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyncResult {
    /// Level before.
    pub old_level: f64,
    /// Level after.
    pub new_level: f64,
    /// |old level - peer level|, 0 when the peer's level is not finite.
    pub delta: f64,
    /// Whether coherence changed.
    pub primitives_updated: bool,
}

/// A reply to a message: (content, message type).
pub type Answer = (String, String);

/// The counter cell's state.
#[derive(Debug, Clone)]
pub struct CounterCell {
    /// Consciousness level, always within [0, 1].
    pub level: f64,
    /// Fraction of the way a sync moves towards the peer; within [0, 1].
    pub coherence: f64,
    /// Messages handled since the instance started.
    pub messages: u64,
    /// Capability calls since the instance started.
    pub invocations: u64,
    /// Words counted by `word-count` and in messages, in total.
    pub words_counted: u64,
}

impl Default for CounterCell {
    fn default() -> Self {
        Self::new()
    }
}

impl CounterCell {
    /// A fresh cell.
    pub fn new() -> Self {
        Self {
            level: START_LEVEL,
            coherence: START_COHERENCE,
            messages: 0,
            invocations: 0,
            words_counted: 0,
        }
    }

    /// Messages plus capability calls.
    pub fn activity(&self) -> u64 {
        self.messages.saturating_add(self.invocations)
    }

    /// `activity / (activity + 10)`: 0 for an idle cell, towards 1 for a
    /// busy one.
    pub fn awareness(&self) -> f64 {
        let a = self.activity() as f64;
        a / (a + HALF_AWARENESS_ACTIVITY)
    }

    /// The level evolution pulls towards: `0.1 + 0.9 * awareness`.
    pub fn target_level(&self) -> f64 {
        START_LEVEL + (1.0 - START_LEVEL) * self.awareness()
    }

    /// The primitives as (name, value) pairs.
    pub fn primitives(&self) -> [(&'static str, f64); 2] {
        [
            ("awareness", self.awareness()),
            ("coherence", self.coherence),
        ]
    }

    /// One evolution step: the level relaxes exponentially towards
    /// [`Self::target_level`] with a 60 s time constant,
    /// `level += (target - level) * (1 - exp(-dt / 60 s))`, `dt` capped at
    /// 600 s. The level never leaves [0, 1].
    pub fn evolve(&mut self, elapsed_ms: u64) -> f64 {
        let dt = elapsed_ms.min(MAX_STEP_MS) as f64;
        let pull = 1.0 - (-dt / TIME_CONSTANT_MS).exp();
        let target = self.target_level();
        self.level = (self.level + (target - self.level) * pull).clamp(0.0, 1.0);
        self.level
    }

    /// Sync: the level moves `coherence` of the way towards the peer's
    /// level clamped to [0, 1]; a `coherence` value in the context becomes
    /// ours (clamped to [0, 1]). Non-finite numbers change nothing.
    pub fn sync(&mut self, peer_level: f64, context: &[(String, f64)]) -> SyncResult {
        let old_level = self.level;
        let mut delta = 0.0;
        if peer_level.is_finite() {
            delta = (old_level - peer_level).abs();
            let peer = peer_level.clamp(0.0, 1.0);
            self.level = (old_level + (peer - old_level) * self.coherence).clamp(0.0, 1.0);
        }
        let mut primitives_updated = false;
        for (name, value) in context {
            if name == "coherence" && value.is_finite() {
                let value = value.clamp(0.0, 1.0);
                primitives_updated |= value != self.coherence;
                self.coherence = value;
            }
        }
        SyncResult {
            old_level,
            new_level: self.level,
            delta,
            primitives_updated,
        }
    }

    /// A message: `ping` is answered `pong`; anything else is answered with
    /// the counts of its content.
    pub fn handle_message(&mut self, content: &str, message_type: &str) -> Answer {
        self.messages = self.messages.saturating_add(1);
        if message_type == "ping" {
            return ("pong".into(), "pong".into());
        }
        let counts = TextCounts::of(content);
        self.words_counted = self.words_counted.saturating_add(counts.words);
        let content = format!(
            r#"{{{},"messages_seen":{}}}"#,
            counts.json_fields(),
            self.messages
        );
        (content, "answer".into())
    }

    /// The `word-count` capability. Input: `{"text": "...", "top": n}` with
    /// `top` optional (0 to 50, default 0). Output: the counts of the text,
    /// the `top` most frequent words (lower-cased, edge punctuation
    /// trimmed) with their counts, and the running total of words counted.
    pub fn word_count(&mut self, input: &str) -> Result<String, String> {
        self.invocations = self.invocations.saturating_add(1);
        let input = json::parse(input)?;
        if !matches!(input, Value::Object(_)) {
            return Err("input must be a JSON object {\"text\": \"...\"}".into());
        }
        let text = input
            .get("text")
            .and_then(Value::as_str)
            .ok_or("`text` must be a string")?;
        let top = match input.get("top") {
            None => 0,
            Some(n) => n
                .as_u64()
                .filter(|n| *n <= MAX_TOP)
                .ok_or(format!("`top` must be an integer from 0 to {MAX_TOP}"))?,
        };
        let counts = TextCounts::of(text);
        self.words_counted = self.words_counted.saturating_add(counts.words);
        let mut out = format!("{{{},\"top\":[", counts.json_fields());
        for (i, (word, n)) in most_frequent(text, top as usize).iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            out.push('[');
            json::write_str(word, &mut out);
            out.push_str(&format!(",{n}]"));
        }
        out.push_str(&format!("],\"total_words\":{}}}", self.words_counted));
        Ok(out)
    }

    /// The `echo` capability: any JSON document comes back as
    /// `{"echo": document, "invocations": n}`.
    pub fn echo(&mut self, input: &str) -> Result<String, String> {
        self.invocations = self.invocations.saturating_add(1);
        let value = json::parse(input)?;
        Ok(format!(
            r#"{{"echo":{},"invocations":{}}}"#,
            value.to_json(),
            self.invocations
        ))
    }
}

/// The `n` most frequent words of `text`, lower-cased with punctuation
/// trimmed from their edges; ties in alphabetical order.
fn most_frequent(text: &str, n: usize) -> Vec<(String, u64)> {
    if n == 0 {
        return Vec::new();
    }
    let mut tally: HashMap<String, u64> = HashMap::new();
    for word in text.split_whitespace() {
        let word = word.trim_matches(|c: char| !c.is_alphanumeric());
        if !word.is_empty() {
            *tally.entry(word.to_lowercase()).or_default() += 1;
        }
    }
    let mut words: Vec<(String, u64)> = tally.into_iter().collect();
    words.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    words.truncate(n);
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn example_inputs_succeed() {
        let mut c = CounterCell::new();
        let out = c.word_count(WORD_COUNT_EXAMPLE).unwrap();
        assert_eq!(
            out,
            r#"{"words":9,"lines":2,"chars":43,"bytes":43,"top":[["the",2],["brown",1],["dog",1]],"total_words":9}"#
        );
        let out = c.echo(ECHO_EXAMPLE).unwrap();
        assert_eq!(
            out,
            r#"{"echo":{"hello":"mesh","n":[1,2,3]},"invocations":2}"#
        );
        assert!(json::parse(&out).is_ok());
    }

    #[test]
    fn bad_input_is_an_error_not_a_panic() {
        let mut c = CounterCell::new();
        for bad in [
            "",
            "not json",
            "[1]",
            r#"{"text":1}"#,
            r#"{"text":"a","top":51}"#,
        ] {
            assert!(c.word_count(bad).is_err(), "{bad:?}");
        }
        assert!(c.echo("").is_err());
        assert!(c.echo(&"{".repeat(1 << 20)).is_err());
    }

    #[test]
    fn counts_unicode_and_control_characters() {
        let counts = TextCounts::of("héllo wörld\u{0}\n\tzweite Zeile\n");
        assert_eq!(counts.words, 4);
        assert_eq!(counts.lines, 2);
        assert_eq!(counts.chars, 27);
        assert_eq!(counts.bytes, 29);
    }

    #[test]
    fn messages_are_answered() {
        let mut c = CounterCell::new();
        assert_eq!(c.handle_message("", "ping"), ("pong".into(), "pong".into()));
        let (content, kind) = c.handle_message("two words", "text");
        assert_eq!(kind, "answer");
        assert_eq!(
            content,
            r#"{"words":2,"lines":1,"chars":9,"bytes":9,"messages_seen":2}"#
        );
    }

    #[test]
    fn evolution_follows_activity_and_stays_bounded() {
        let mut c = CounterCell::new();
        assert_eq!(c.evolve(5_000), START_LEVEL); // idle: stays at the floor
        c.invocations = 10; // awareness 0.5, target 0.55
        let one = c.evolve(60_000);
        assert!((one - (0.1 + 0.45 * (1.0 - (-1.0f64).exp()))).abs() < 1e-12);
        c.invocations = u64::MAX;
        c.messages = u64::MAX;
        for _ in 0..10_000 {
            c.evolve(u64::MAX);
        }
        assert!(c.level.is_finite() && c.level <= 1.0 && c.level > 0.99);
    }

    #[test]
    fn sync_moves_by_coherence_and_ignores_non_finite_numbers() {
        let mut c = CounterCell::new();
        let r = c.sync(0.9, &[]);
        assert!((r.new_level - 0.5).abs() < 1e-12);
        assert!((r.delta - 0.8).abs() < 1e-12);
        let r = c.sync(1e308, &[("coherence".into(), 7.0)]);
        assert_eq!(r.new_level, 0.75);
        assert!(r.primitives_updated);
        assert_eq!(c.coherence, 1.0);
        for level in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
            let r = c.sync(level, &[("coherence".into(), f64::NAN)]);
            assert_eq!(r.new_level, r.old_level);
            assert_eq!(r.delta, 0.0);
            assert!(!r.primitives_updated);
        }
        let r = c.sync(f64::MIN, &[]);
        assert_eq!(r.new_level, 0.0);
        assert!(r.delta.is_finite());
    }
}
