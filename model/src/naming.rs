//! Deterministic container names.
//!
//! A container's name is derived from its task id and attempt number only, so creating it twice
//! (a redelivered message) names the same container: ACI's PUT by name is idempotent and Docker
//! answers 409 Conflict. Names are valid for both: lowercase letters, digits and '-', at most 63
//! characters, starting with a letter and not ending with '-'.

use crate::task::TaskId;

/// Prefix of every container this system creates; also how the reconciler finds its own.
pub const PREFIX: &str = "eda-";

/// Longest name ACI accepts for a container group (Docker allows more).
pub const MAX_NAME: usize = 63;

/// The container name of attempt `attempt` of task `id`, e.g. `eda-01j9z3k4m5-1`.
pub fn container_name(id: &TaskId, attempt: u32) -> String {
    format!("{PREFIX}{}-{attempt}", id.as_str())
}

/// The task id and attempt encoded in a container name made by [`container_name`].
pub fn parse_container_name(name: &str) -> Option<(TaskId, u32)> {
    let rest = name.strip_prefix(PREFIX)?;
    let (id, attempt) = rest.rsplit_once('-')?;
    Some((TaskId::parse(id).ok()?, attempt.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn longest_id_and_attempt_fit_aci() {
        let id = TaskId::parse(&"a".repeat(crate::task::MAX_ID_LEN)).unwrap();
        let name = container_name(&id, crate::limits::MAX_ATTEMPTS);
        assert!(name.len() <= MAX_NAME, "{} chars", name.len());
        assert!(name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-'));
        assert_eq!(
            parse_container_name(&name),
            Some((id, crate::limits::MAX_ATTEMPTS))
        );
    }

    #[test]
    fn foreign_names_are_not_ours() {
        assert_eq!(parse_container_name("nginx"), None);
        assert_eq!(parse_container_name("eda-UPPER-1"), None);
        assert_eq!(parse_container_name("eda-abc-x"), None);
    }
}
