//! The MongoDB store's search ([`model::Search`]): the filter a search adds to a page and the
//! counts of the matching tasks.
//!
//! Text is a case-insensitive `$regex` on `work` with the term escaped (every character that is
//! not a letter, digit or space is quoted, so a term is always a literal substring; MongoDB
//! `$regex` is PCRE, <https://www.mongodb.com/docs/manual/reference/operator/query/regex/>). It
//! cannot use an index, so it reads every document the other parts leave. The id prefix is an
//! anchored regex on `_id`, which the `_id` index serves as a range ("prefix expression" in the
//! same page); the key and the time range use the indexes `key_seq` and `created`
//! ([`super::mongo::MongoStore`] creates them). Labels are `labels.<name>` fields, not indexed
//! (a wildcard index would be needed, which Cosmos DB's RU API offers only on some versions).

use super::mongo_wire::{backend, with_retry};
use super::StoreError;
use futures::TryStreamExt;
use model::{Search, TaskState};
use mongodb::bson::{doc, Bson, Document};
use mongodb::Collection;
use std::collections::BTreeMap;

/// `text` quoted for a regex: a literal substring whatever it holds.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 2);
    for c in text.chars() {
        if !(c.is_alphanumeric() || c == ' ') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// The conditions of `s`, each one element of an `$and` (empty for an empty search).
pub fn conditions(s: &Search) -> Vec<Document> {
    let mut all = Vec::new();
    for t in &s.text {
        all.push(doc! { "work": { "$regex": escape(t), "$options": "i" } });
    }
    if let Some(p) = &s.id_prefix {
        all.push(doc! { "_id": { "$regex": format!("^{}", escape(p)) } });
    }
    if let Some(k) = &s.key {
        all.push(doc! { "key": k });
    }
    for (name, value) in &s.labels {
        // `name` is [a-z0-9_] (checked by the parser): safe as a field path.
        let field = format!("labels.{name}");
        all.push(match value {
            Some(v) => doc! { field: v },
            None => doc! { field: { "$exists": true } },
        });
    }
    if !s.states.is_empty() {
        let names: Vec<&str> = s.states.iter().map(|s| s.as_str()).collect();
        all.push(doc! { "state": { "$in": names } });
    }
    let mut range = Document::new();
    if let Some(from) = s.from_ms {
        range.insert("$gte", from);
    }
    if let Some(to) = s.to_ms {
        range.insert("$lt", to);
    }
    if !range.is_empty() {
        all.push(doc! { "created_at_ms": range });
    }
    all
}

/// Tasks per state among those matching `s` (an aggregation over the matches).
pub async fn counts(
    tasks: &Collection<Document>,
    s: &Search,
) -> Result<BTreeMap<TaskState, u64>, StoreError> {
    let pipeline = vec![
        doc! { "$match": { "$and": conditions(s) } },
        doc! { "$group": { "_id": "$state", "n": { "$sum": 1 } } },
    ];
    let rows: Vec<Document> =
        with_retry(|| async { tasks.aggregate(pipeline.clone()).await?.try_collect().await })
            .await
            .map_err(backend)?;
    let mut out = BTreeMap::new();
    for r in rows {
        let state = r.get_str("_id").ok().and_then(|s| s.parse().ok());
        let n = match r.get("n") {
            Some(Bson::Int32(n)) => i64::from(*n),
            Some(Bson::Int64(n)) => *n,
            Some(Bson::Double(n)) => *n as i64,
            _ => 0,
        };
        if let (Some(state), true) = (state, n > 0) {
            out.insert(state, n as u64);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_term_is_always_a_literal() {
        assert_eq!(escape("a.b*(c)"), r"a\.b\*\(c\)");
        assert_eq!(escape("x y-1"), r"x y\-1");
        assert_eq!(escape(r"\d"), r"\\d");
    }

    #[test]
    fn an_empty_search_adds_nothing() {
        assert!(conditions(&Search::default()).is_empty());
        let s = Search::parse("a id:x label:env", Some("1"), None).unwrap();
        assert_eq!(conditions(&s).len(), 4);
    }
}
