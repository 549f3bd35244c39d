//! Reading what the Docker Engine says about a container: its state as the trait's
//! [`ContainerStatus`], its CPU counter between two samples, its memory in use, and the
//! daemon's timestamps.

use crate::runtime::{ContainerStatus, Phase};
use bollard::models::{ContainerState, ContainerStateStatusEnum};

/// A container's CPU counter at one moment: what the next sample's delta starts from.
#[derive(Debug, Clone, Copy)]
pub(super) struct CpuMark {
    /// Cumulated CPU time of the container, ns.
    pub(super) used_ns: u64,
    /// When the counter was read, ns since the epoch (the daemon's clock).
    pub(super) at_ns: i128,
}

/// Percent of one core used between two marks.
pub(super) fn cpu_between(prev: CpuMark, now: CpuMark) -> f64 {
    let wall = now.at_ns - prev.at_ns;
    if wall <= 0 {
        return 0.0;
    }
    now.used_ns.saturating_sub(prev.used_ns) as f64 * 100.0 / wall as f64
}

/// The trait's view of Docker's container state.
pub(super) fn to_status(state: ContainerState) -> ContainerStatus {
    use ContainerStateStatusEnum as S;
    let error = state.error.filter(|e| !e.is_empty());
    let phase = match state.status {
        Some(S::RUNNING | S::PAUSED | S::RESTARTING | S::STOPPING) => Phase::Running,
        // A start that failed (bad command) leaves it "created" with an error: it will never run.
        Some(S::CREATED) if error.is_some() => Phase::Exited,
        Some(S::CREATED) | None | Some(S::EMPTY) => Phase::Starting,
        Some(S::EXITED | S::DEAD | S::REMOVING) => Phase::Exited,
    };
    let exited = phase == Phase::Exited;
    let exit_code = state.exit_code.filter(|_| exited);
    let oom_killed = state.oom_killed.unwrap_or(false);
    let detail = error.or_else(|| {
        if !exited {
            None
        } else if oom_killed {
            Some("out of memory (OOM killed)".into())
        } else {
            exit_code
                .and_then(model::output::signal_of)
                .map(model::output::killed_by_signal)
        }
    });
    ContainerStatus {
        phase,
        exit_code,
        oom_killed,
        detail,
    }
}

/// Parses an RFC 3339 UTC time as Docker writes it (`2026-11-30T10:40:12.123456789Z`) into ns
/// since the epoch. Hand-written to avoid a date crate for two timestamps.
pub(super) fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let (date, time) = s.split_once('T')?;
    let time = time.strip_suffix('Z')?;
    let mut d = date.splitn(3, '-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (hms, frac) = time.split_once('.').unwrap_or((time, ""));
    let mut t = hms.splitn(3, ':').map(|p| p.parse::<i64>());
    let (hh, mm, ss) = (t.next()?.ok()?, t.next()?.ok()?, t.next()?.ok()?);
    let nanos: i128 = if frac.is_empty() {
        0
    } else {
        format!("{frac:0<9}").get(..9)?.parse().ok()?
    };
    // Days from civil (H. Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (m + if m > 2 { -3 } else { 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let secs = days * 86_400 + hh * 3600 + mm * 60 + ss;
    Some(i128::from(secs) * 1_000_000_000 + nanos)
}

/// Memory in use: the usage minus the page cache the kernel can drop (as `docker stats` shows).
pub(super) fn memory_in_use(m: &bollard::models::ContainerMemoryStats) -> u64 {
    let usage = m.usage.unwrap_or(0);
    let cache = m.stats.as_ref().and_then(|s| {
        ["total_inactive_file", "inactive_file", "cache"]
            .iter()
            .find_map(|k| s.get(*k).copied())
    });
    usage.saturating_sub(cache.unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn rfc3339_parses_to_epoch_nanos() {
        assert_eq!(parse_rfc3339_ns("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339_ns("2026-11-30T10:40:12.5Z"),
            Some(1_796_035_212_500_000_000)
        );
        assert_eq!(
            parse_rfc3339_ns("2000-03-01T00:00:01.000000001Z"),
            Some(951_868_801_000_000_001)
        );
        assert_eq!(parse_rfc3339_ns("not a date"), None);
        assert_eq!(parse_rfc3339_ns("2026-11-30T10:40:12+01:00"), None);
    }

    #[test]
    fn cpu_is_percent_of_one_core() {
        let a = CpuMark {
            used_ns: 0,
            at_ns: 0,
        };
        let b = CpuMark {
            used_ns: 500_000_000,
            at_ns: 1_000_000_000,
        };
        assert!((cpu_between(a, b) - 50.0).abs() < 1e-9);
        assert_eq!(cpu_between(b, a), 0.0);
    }

    #[test]
    fn memory_excludes_the_page_cache() {
        let m = bollard::models::ContainerMemoryStats {
            usage: Some(1000),
            stats: Some(HashMap::from([("total_inactive_file".to_string(), 300)])),
            ..Default::default()
        };
        assert_eq!(memory_in_use(&m), 700);
    }

    #[test]
    fn status_maps_docker_states() {
        let exited = ContainerState {
            status: Some(ContainerStateStatusEnum::EXITED),
            exit_code: Some(137),
            ..Default::default()
        };
        let s = to_status(exited);
        assert_eq!(s.phase, Phase::Exited);
        assert_eq!(s.exit_code, Some(137));
        assert_eq!(s.detail.as_deref(), Some("killed by signal 9"));
        let failed_start = ContainerState {
            status: Some(ContainerStateStatusEnum::CREATED),
            exit_code: Some(127),
            error: Some("exec: \"nope\": not found".into()),
            ..Default::default()
        };
        assert_eq!(to_status(failed_start).phase, Phase::Exited);
        let running = ContainerState {
            status: Some(ContainerStateStatusEnum::RUNNING),
            exit_code: Some(0),
            ..Default::default()
        };
        assert_eq!(to_status(running).exit_code, None);
    }
}
