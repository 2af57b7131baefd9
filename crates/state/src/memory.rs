//! Team memory: a durable key-value store of JSON values that every agent may read, with a
//! version per key and one `MEMORY_UPDATED` event per change. Who may write is decided by the
//! daemon (it knows the roles' tools); the rules on keys, sizes and versions live here.

use crate::{Actor, Change, Outcome, TeamState};
use agent_team_protocol::memory::{
    MAX_MEMORY_BYTES, MAX_MEMORY_KEYS, MEMORY_EVENT_VALUE_LEN, check_key, check_value,
};
use agent_team_protocol::*;
use serde_json::json;

/// What one entry counts against [`MAX_MEMORY_BYTES`]: its key and its value as compact JSON.
pub(crate) fn entry_bytes(e: &MemoryEntry) -> usize {
    e.key.len() + memory::value_len(&e.value)
}

impl TeamState {
    /// One key of the memory; `not_found` when it is not set.
    pub fn memory_get(&self, key: &str) -> Outcome<&MemoryEntry> {
        self.memory.get(key).ok_or_else(|| not_found_key(key))
    }

    /// Entries in key order whose key starts with `prefix` and comes after `after`.
    pub fn memory_list<'a>(
        &'a self,
        prefix: Option<&'a str>,
        after: Option<&'a str>,
    ) -> impl Iterator<Item = &'a MemoryEntry> + 'a {
        use std::ops::Bound;
        let prefix = prefix.unwrap_or("");
        // Keys with the prefix are one contiguous run of the ordered map, from the prefix on.
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(a),
            _ => Bound::Included(prefix),
        };
        self.memory
            .range::<str, _>((start, Bound::Unbounded))
            .map(|(_, e)| e)
            .take_while(move |e| e.key.starts_with(prefix))
    }

    /// How many keys the memory holds and how many bytes they count (see [`MAX_MEMORY_BYTES`]).
    pub fn memory_usage(&self) -> (usize, usize) {
        (self.memory.len(), self.memory_bytes)
    }

    /// Writes `key` (whoever the daemon lets write): version 1 for a new key, one more for an
    /// existing one, stamped with the actor and `now`; one `MEMORY_UPDATED` event.
    pub fn memory_set(
        &mut self,
        actor: &Actor,
        key: String,
        value: serde_json::Value,
        now: Timestamp,
    ) -> Outcome<MemoryEntry> {
        check_key(&key)?;
        let value_len = check_value(&value)?;
        let old = self.memory.get(&key);
        let old_bytes = old.map_or(0, entry_bytes);
        let bytes = self.memory_bytes - old_bytes + key.len() + value_len;
        if old.is_none() && self.memory.len() >= MAX_MEMORY_KEYS {
            return Err(ErrorBody::with_details(
                ErrorCode::LimitExceeded,
                format!(
                    "the team's memory holds {MAX_MEMORY_KEYS} keys, its limit; delete some first"
                ),
                json!({"limit": "memory_keys", "max": MAX_MEMORY_KEYS}),
            ));
        }
        if bytes > MAX_MEMORY_BYTES {
            return Err(ErrorBody::with_details(
                ErrorCode::LimitExceeded,
                format!(
                    "the team's memory would hold {bytes} bytes; its limit is {MAX_MEMORY_BYTES}; \
                     delete some keys first"
                ),
                json!({"limit": "memory_bytes", "max": MAX_MEMORY_BYTES, "size": bytes}),
            ));
        }
        let entry = MemoryEntry {
            version: old.map_or(1, |e| e.version + 1),
            key,
            value,
            updated_by: actor.name().to_string(),
            updated_at: now,
        };
        self.memory_bytes = bytes;
        self.memory.insert(entry.key.clone(), entry.clone());
        self.changes.push(Change::Memory(entry.clone()));
        let event = Event::MemoryUpdated {
            key: entry.key.clone(),
            version: entry.version,
            deleted: false,
            by: entry.updated_by.clone(),
            value: (value_len <= MEMORY_EVENT_VALUE_LEN).then(|| entry.value.clone()),
        };
        self.record(actor.name(), event, now);
        Ok(entry)
    }

    /// Deletes every key (a team whose memory is per run, at the start of one); returns how
    /// many there were.
    pub fn memory_clear(&mut self, actor: &Actor, now: Timestamp) -> Outcome<usize> {
        let keys: Vec<String> = self.memory.keys().cloned().collect();
        for k in &keys {
            self.memory_delete(actor, k, now)?;
        }
        Ok(keys.len())
    }

    /// Deletes `key`; returns the version the deletion counts as (the last one plus one, as
    /// the `MEMORY_UPDATED` event says). `not_found` when it is not set.
    pub fn memory_delete(&mut self, actor: &Actor, key: &str, now: Timestamp) -> Outcome<u64> {
        let old = self.memory.remove(key).ok_or_else(|| not_found_key(key))?;
        self.memory_bytes -= entry_bytes(&old);
        self.changes.push(Change::MemoryDeleted(old.key.clone()));
        let version = old.version + 1;
        let event = Event::MemoryUpdated {
            key: old.key,
            version,
            deleted: true,
            by: actor.name().to_string(),
            value: None,
        };
        self.record(actor.name(), event, now);
        Ok(version)
    }
}

fn not_found_key(key: &str) -> ErrorBody {
    ErrorBody::with_details(
        ErrorCode::NotFound,
        format!("no memory key {key:?}"),
        json!({"key": key}),
    )
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use agent_team_protocol::memory::{MAX_MEMORY_KEY_LEN, MAX_MEMORY_VALUE_LEN};

    fn op() -> Actor {
        Actor::Operator
    }

    /// The `MEMORY_UPDATED` events among `changes`, as (key, version, deleted, by, value).
    type Seen = (String, u64, bool, String, Option<serde_json::Value>);
    fn events(changes: &[Change]) -> Vec<Seen> {
        changes
            .iter()
            .filter_map(|c| match c {
                Change::Event(Envelope {
                    event:
                        Event::MemoryUpdated {
                            key,
                            version,
                            deleted,
                            by,
                            value,
                        },
                    ..
                }) => Some((key.clone(), *version, *deleted, by.clone(), value.clone())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn versions_count_writes_and_a_delete_is_a_change_with_its_own_event() {
        let mut s = TeamState::new("t");
        let b1 = Actor::Agent("b1".into());
        let e = s
            .memory_set(&op(), "plan".into(), json!({"steps": 3}), Timestamp(1))
            .unwrap();
        assert_eq!((e.version, e.updated_by.as_str()), (1, "operator"));
        let e = s
            .memory_set(&b1, "plan".into(), json!({"steps": 4}), Timestamp(2))
            .unwrap();
        assert_eq!(
            (e.version, e.updated_by.as_str(), e.updated_at),
            (2, "b1", Timestamp(2))
        );
        assert_eq!(s.memory_get("plan").unwrap(), &e);
        let changes = s.take_changes();
        assert_eq!(
            changes
                .iter()
                .filter(|c| matches!(c, Change::Memory(_)))
                .count(),
            2
        );
        assert_eq!(
            events(&changes),
            [
                (
                    "plan".into(),
                    1,
                    false,
                    "operator".into(),
                    Some(json!({"steps": 3}))
                ),
                (
                    "plan".into(),
                    2,
                    false,
                    "b1".into(),
                    Some(json!({"steps": 4}))
                ),
            ]
        );

        assert_eq!(s.memory_delete(&b1, "plan", Timestamp(3)).unwrap(), 3);
        let changes = s.take_changes();
        assert!(changes.contains(&Change::MemoryDeleted("plan".into())));
        assert_eq!(
            events(&changes),
            [("plan".into(), 3, true, "b1".into(), None)]
        );
        let e = s.memory_get("plan").unwrap_err();
        assert_eq!(
            (e.code, &e.details["key"]),
            (ErrorCode::NotFound, &json!("plan"))
        );
        let e = s.memory_delete(&op(), "plan", Timestamp(4)).unwrap_err();
        assert_eq!(e.code, ErrorCode::NotFound);
        assert!(!s.has_changes(), "a refused delete changes nothing");
        assert_eq!(s.memory_usage(), (0, 0));

        // Written again after the deletion, the key starts over.
        let e = s
            .memory_set(&op(), "plan".into(), json!(null), Timestamp(5))
            .unwrap();
        assert_eq!(e.version, 1);
        // A null value is in the event, as null.
        assert_eq!(events(&s.take_changes())[0].4, Some(json!(null)));
    }

    #[test]
    fn only_small_values_ride_in_the_event() {
        let mut s = TeamState::new("t");
        let small = json!("x".repeat(MEMORY_EVENT_VALUE_LEN - 2));
        let large = json!("x".repeat(MEMORY_EVENT_VALUE_LEN - 1));
        s.memory_set(&op(), "s".into(), small.clone(), Timestamp(1))
            .unwrap();
        s.memory_set(&op(), "l".into(), large.clone(), Timestamp(1))
            .unwrap();
        let ev = events(&s.take_changes());
        assert_eq!(ev[0].4, Some(small));
        assert_eq!(
            ev[1].4, None,
            "a value over 1 KiB stays out of the event log"
        );
        assert_eq!(s.memory_get("l").unwrap().value, large);
    }

    #[test]
    fn bad_keys_and_oversized_values_are_refused_and_change_nothing() {
        let mut s = TeamState::new("t");
        for key in [
            "",
            "a/../b",
            "..",
            "/abs",
            "a//b",
            "line\nbreak",
            "esc\u{1b}[31m",
            &"k".repeat(MAX_MEMORY_KEY_LEN + 1),
        ] {
            let e = s
                .memory_set(&op(), key.into(), json!(1), Timestamp(1))
                .unwrap_err();
            assert_eq!(e.code, ErrorCode::BadRequest, "{key:?}");
            assert_eq!(e.details["field"], "key", "{key:?}");
        }
        s.memory_set(
            &op(),
            "k".repeat(MAX_MEMORY_KEY_LEN),
            json!(1),
            Timestamp(1),
        )
        .unwrap();
        s.memory_set(&op(), "outputs/builder".into(), json!(1), Timestamp(1))
            .unwrap();
        s.take_changes();

        let over = json!("x".repeat(MAX_MEMORY_VALUE_LEN - 1));
        let e = s
            .memory_set(&op(), "big".into(), over, Timestamp(1))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::BadRequest);
        assert_eq!(
            (e.details["field"].as_str(), e.details["limit"].as_u64()),
            (Some("value"), Some(MAX_MEMORY_VALUE_LEN as u64))
        );
        assert!(!s.has_changes());
        assert_eq!(s.memory_get("big").unwrap_err().code, ErrorCode::NotFound);
        let at_limit = json!("x".repeat(MAX_MEMORY_VALUE_LEN - 2));
        s.memory_set(&op(), "big".into(), at_limit, Timestamp(1))
            .unwrap();
    }

    #[test]
    fn the_number_of_keys_is_bounded_but_existing_keys_stay_writable() {
        let mut s = TeamState::new("t");
        for i in 0..MAX_MEMORY_KEYS {
            s.memory_set(&op(), format!("k/{i}"), json!(i), Timestamp(1))
                .unwrap();
        }
        s.take_changes();
        let e = s
            .memory_set(&op(), "one-more".into(), json!(1), Timestamp(2))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert_eq!(
            (e.details["limit"].as_str(), e.details["max"].as_u64()),
            (Some("memory_keys"), Some(MAX_MEMORY_KEYS as u64))
        );
        assert!(!s.has_changes());
        // Overwriting is not growing.
        assert_eq!(
            s.memory_set(&op(), "k/7".into(), json!("new"), Timestamp(2))
                .unwrap()
                .version,
            2
        );
        s.memory_delete(&op(), "k/8", Timestamp(2)).unwrap();
        s.memory_set(&op(), "one-more".into(), json!(1), Timestamp(2))
            .unwrap();
        assert_eq!(s.memory_usage().0, MAX_MEMORY_KEYS);
    }

    #[test]
    fn the_total_size_is_bounded_and_counts_replacements_once() {
        let mut s = TeamState::new("t");
        let value = json!("x".repeat(MAX_MEMORY_VALUE_LEN - 2));
        let per_key = "big/000".len() + MAX_MEMORY_VALUE_LEN;
        let fit = MAX_MEMORY_BYTES / per_key;
        for i in 0..fit {
            s.memory_set(&op(), format!("big/{i:03}"), value.clone(), Timestamp(1))
                .unwrap();
        }
        assert_eq!(s.memory_usage(), (fit, fit * per_key));
        let e = s
            .memory_set(&op(), format!("big/{fit:03}"), value.clone(), Timestamp(1))
            .unwrap_err();
        assert_eq!(e.code, ErrorCode::LimitExceeded);
        assert_eq!(e.details["limit"], "memory_bytes");
        // Replacing a value by one of the same size fits; a smaller one makes room.
        s.memory_set(&op(), "big/000".into(), value.clone(), Timestamp(2))
            .unwrap();
        assert_eq!(s.memory_usage(), (fit, fit * per_key));
        s.memory_set(&op(), "big/001".into(), json!(0), Timestamp(2))
            .unwrap();
        s.memory_set(&op(), format!("big/{fit:03}"), value, Timestamp(2))
            .unwrap();
    }

    #[test]
    fn lists_are_in_key_order_by_prefix_and_page_after_a_key() {
        let mut s = TeamState::new("t");
        for k in [
            "p",
            "outputs/b2",
            "a",
            "outputs0",
            "outputs/b1/x",
            "outputs/b1",
            "outputs",
        ] {
            s.memory_set(&op(), k.into(), json!(k), Timestamp(1))
                .unwrap();
        }
        let keys = |prefix: Option<&str>, after: Option<&str>| -> Vec<String> {
            s.memory_list(prefix, after)
                .map(|e| e.key.clone())
                .collect()
        };
        assert_eq!(
            keys(None, None),
            [
                "a",
                "outputs",
                "outputs/b1",
                "outputs/b1/x",
                "outputs/b2",
                "outputs0",
                "p"
            ]
        );
        assert_eq!(
            keys(Some("outputs/"), None),
            ["outputs/b1", "outputs/b1/x", "outputs/b2"]
        );
        assert_eq!(
            keys(Some("outputs/"), Some("outputs/b1")),
            ["outputs/b1/x", "outputs/b2"]
        );
        // A page cursor before the prefix starts at the prefix; one after it ends the list.
        assert_eq!(keys(Some("outputs/"), Some("a")).len(), 3);
        assert!(keys(Some("outputs/"), Some("outputs/b2")).is_empty());
        assert!(keys(Some("outputs/"), Some("z")).is_empty());
        assert!(keys(Some("nothing"), None).is_empty());
        assert_eq!(keys(None, Some("outputs0")), ["p"]);
    }
}
