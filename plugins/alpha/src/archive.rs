//! `tachyonic-archival`: a bounded key/value archive kept in the instance.

use std::collections::BTreeMap;

use serde_json::{Value, json};

/// Most entries kept; storing more evicts the oldest.
pub const MAX_ENTRIES: usize = 1_000;
/// Largest value stored, in bytes of JSON.
pub const MAX_VALUE_BYTES: usize = 64 * 1024;
/// Longest key.
pub const MAX_KEY_LEN: usize = 128;

/// The archive: entries with the wall-clock time they were stored.
#[derive(Debug, Default)]
pub struct Archive {
    entries: BTreeMap<String, (u64, u64, Value)>,
    next_seq: u64,
}

impl Archive {
    /// Runs one operation. Input `{"op": ..., ...}`:
    /// - `store` `{"key", "value"}` -> stores any JSON value (replacing);
    /// - `get` `{"key"}` -> the value and when it was stored;
    /// - `delete` `{"key"}`;
    /// - `list` -> keys with their stored time, oldest first.
    ///
    /// `now_ms` is the host's wall clock.
    pub fn run(&mut self, input: &Value, now_ms: u64) -> Result<Value, String> {
        let op = input
            .get("op")
            .and_then(Value::as_str)
            .ok_or_else(|| "`op` must be one of store, get, delete, list".to_string())?;
        let key = || -> Result<String, String> {
            let k = input
                .get("key")
                .and_then(Value::as_str)
                .ok_or_else(|| "`key` must be a string".to_string())?;
            if k.is_empty() || k.len() > MAX_KEY_LEN {
                return Err(format!("`key` must be 1 to {MAX_KEY_LEN} bytes"));
            }
            Ok(k.to_string())
        };
        match op {
            "store" => {
                let k = key()?;
                let value = input
                    .get("value")
                    .cloned()
                    .ok_or_else(|| "`value` is required".to_string())?;
                let size = value.to_string().len();
                if size > MAX_VALUE_BYTES {
                    return Err(format!(
                        "`value` is {size} bytes; at most {MAX_VALUE_BYTES}"
                    ));
                }
                let replaced = self.entries.remove(&k).is_some();
                if self.entries.len() == MAX_ENTRIES
                    && let Some(oldest) = self
                        .entries
                        .iter()
                        .min_by_key(|(_, (seq, _, _))| *seq)
                        .map(|(k, _)| k.clone())
                {
                    self.entries.remove(&oldest);
                }
                self.next_seq += 1;
                self.entries
                    .insert(k.clone(), (self.next_seq, now_ms, value));
                Ok(
                    json!({"op": op, "key": k, "stored_at_ms": now_ms, "replaced": replaced, "entries": self.entries.len()}),
                )
            }
            "get" => {
                let k = key()?;
                match self.entries.get(&k) {
                    Some((_, at, v)) => Ok(
                        json!({"op": op, "key": k, "found": true, "value": v, "stored_at_ms": at}),
                    ),
                    None => Ok(json!({"op": op, "key": k, "found": false})),
                }
            }
            "delete" => {
                let k = key()?;
                let found = self.entries.remove(&k).is_some();
                Ok(json!({"op": op, "key": k, "found": found}))
            }
            "list" => {
                let mut items: Vec<_> = self.entries.iter().collect();
                items.sort_by_key(|(_, (seq, _, _))| *seq);
                let keys: Vec<Value> = items
                    .into_iter()
                    .map(|(k, (_, at, _))| json!({"key": k, "stored_at_ms": at}))
                    .collect();
                Ok(json!({"op": op, "count": keys.len(), "entries": keys}))
            }
            other => Err(format!(
                "unknown op `{other}`; known: store, get, delete, list"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn store_get_delete_list_and_bound() {
        let mut a = Archive::default();
        a.run(&json!({"op":"store","key":"k","value":{"x":1}}), 7)
            .unwrap();
        let got = a.run(&json!({"op":"get","key":"k"}), 8).unwrap();
        assert_eq!(got["value"]["x"], 1);
        assert_eq!(got["stored_at_ms"], 7);
        for i in 0..MAX_ENTRIES + 5 {
            a.run(&json!({"op":"store","key":format!("k{i}"),"value":i}), 9)
                .unwrap();
        }
        let list = a.run(&json!({"op":"list"}), 10).unwrap();
        assert_eq!(list["count"], MAX_ENTRIES);
        assert_eq!(
            a.run(&json!({"op":"delete","key":"k"}), 11).unwrap()["found"],
            false
        );
        assert!(a.run(&json!({"op":"store","key":"","value":1}), 1).is_err());
        assert!(a.run(&json!({"op":"explode"}), 1).is_err());
    }
}
