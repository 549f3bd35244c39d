//! How ACI's answers read: a container group's state ([`status_of`]) and Azure Monitor's
//! metrics ([`sample_of`]), as pure functions of the JSON, unit-tested without a server.

use crate::runtime::{ContainerStatus, Phase, RuntimeError};
use azure_mgmt_containerinstance::models::ContainerGroup;
use model::MetricSample;
use serde::Deserialize;

/// Reads the status of a group from its own state, its container's instance view and its
/// provisioning state.
///
/// The group's `instanceView.state` comes first: a group that was stopped (our timeout or
/// cancel, `POST .../stop`), or ran to its end, is over whatever its container view says, and
/// a stopped group may carry no container view at all. Group states, per
/// https://learn.microsoft.com/azure/container-instances/container-state: `Running`,
/// `Stopped`, `Pending`, `Succeeded` ("ran to completion successfully", restart policy Never
/// or OnFailure) and `Failed` ("failed to run to completion", restart policy Never). Stopped,
/// Succeeded and Failed are over; the container's `Terminated` state gives the exit code when
/// it is there. A group whose provisioning `Failed` or was `Canceled` is over too.
pub fn status_of(group: &ContainerGroup) -> ContainerStatus {
    let p = &group.container_group_properties.properties;
    let current = p
        .containers
        .first()
        .and_then(|c| c.properties.instance_view.as_ref())
        .and_then(|v| v.current_state.as_ref());
    let starting = ContainerStatus {
        phase: Phase::Starting,
        exit_code: None,
        oom_killed: false,
        detail: None,
    };
    let detail = current
        .and_then(|s| s.detail_status.clone())
        .filter(|d| !d.is_empty());
    let oom = detail.as_deref().is_some_and(|d| d.contains("OOMKilled"));
    let exit_code = current
        .filter(|s| s.state.as_deref() == Some("Terminated"))
        .and_then(|s| s.exit_code.map(i64::from));
    let group_state = p.instance_view.as_ref().and_then(|v| v.state.as_deref());
    if let Some(state @ ("Stopped" | "Succeeded" | "Failed")) = group_state {
        let detail = detail.unwrap_or_else(|| format!("container group {state}"));
        return ContainerStatus {
            phase: Phase::Exited,
            exit_code,
            oom_killed: oom,
            detail: Some(detail),
        };
    }
    if let Some(s) = current {
        return match s.state.as_deref() {
            Some("Running") => ContainerStatus {
                phase: Phase::Running,
                ..starting
            },
            Some("Terminated") => ContainerStatus {
                phase: Phase::Exited,
                exit_code,
                oom_killed: oom,
                detail,
            },
            _ => ContainerStatus { detail, ..starting },
        };
    }
    match p.provisioning_state.as_deref() {
        Some(state @ ("Failed" | "Canceled")) => ContainerStatus {
            phase: Phase::Exited,
            exit_code: None,
            oom_killed: false,
            detail: Some(format!("container group provisioning {state}")),
        },
        _ => starting,
    }
}

/// Azure Monitor's metrics answer (only the fields we use).
#[derive(Deserialize)]
struct MetricsResponse {
    #[serde(default)]
    value: Vec<Metric>,
}

#[derive(Deserialize)]
struct Metric {
    name: MetricName,
    #[serde(default)]
    timeseries: Vec<TimeSeries>,
}

#[derive(Deserialize)]
struct MetricName {
    value: String,
}

#[derive(Deserialize)]
struct TimeSeries {
    #[serde(default)]
    data: Vec<DataPoint>,
}

#[derive(Deserialize)]
struct DataPoint {
    #[serde(rename = "timeStamp")]
    time_stamp: String,
    #[serde(default)]
    average: Option<f64>,
}

/// The newest (time, average) of the metric `name`.
fn latest(resp: &MetricsResponse, name: &str) -> Option<(i64, f64)> {
    let m = resp.value.iter().find(|m| m.name.value == name)?;
    let point = m
        .timeseries
        .iter()
        .flat_map(|t| t.data.iter())
        .filter_map(|d| Some((d.time_stamp.as_str(), d.average?)))
        .max_by(|a, b| a.0.cmp(b.0))?;
    let at = azure_core::date::parse_rfc3339(point.0).ok()?;
    Some(((at.unix_timestamp_nanos() / 1_000_000) as i64, point.1))
}

/// Turns Azure Monitor's answer into one sample: `CpuUsage` is in millicores (1000 = one core),
/// so percent of one core is value / 10; `MemoryUsage` is bytes.
pub fn sample_of(body: &[u8]) -> Result<Option<MetricSample>, RuntimeError> {
    let resp: MetricsResponse =
        serde_json::from_slice(body).map_err(|e| RuntimeError::Azure(e.into()))?;
    let cpu = latest(&resp, "CpuUsage");
    let mem = latest(&resp, "MemoryUsage");
    if cpu.is_none() && mem.is_none() {
        return Ok(None);
    }
    let at_ms = cpu.map(|c| c.0).max(mem.map(|m| m.0)).unwrap_or_default();
    Ok(Some(MetricSample {
        at_ms,
        cpu_percent: cpu.map(|c| c.1 / 10.0).unwrap_or(0.0),
        memory_bytes: mem.map(|m| m.1.max(0.0) as u64).unwrap_or(0),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn group(json: serde_json::Value) -> ContainerGroup {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn instance_view_maps_to_phases() {
        let terminated = group(
            serde_json::json!({"properties": {"provisioningState": "Succeeded",
            "containers": [{"name": "c", "properties": {"image": "i", "instanceView": {"currentState":
            {"state": "Terminated", "exitCode": 3, "detailStatus": "Error"}}}}]}}),
        );
        let s = status_of(&terminated);
        assert_eq!(
            (s.phase, s.exit_code, s.detail.as_deref()),
            (Phase::Exited, Some(3), Some("Error"))
        );
        let creating = group(
            serde_json::json!({"properties": {"provisioningState": "Creating",
            "containers": [{"name": "c", "properties": {"image": "i"}}]}}),
        );
        assert_eq!(status_of(&creating).phase, Phase::Starting);
        let failed = group(
            serde_json::json!({"properties": {"provisioningState": "Failed",
            "containers": [{"name": "c", "properties": {"image": "i"}}]}}),
        );
        assert_eq!(status_of(&failed).phase, Phase::Exited);
        // A stopped group may have no container view left: over, not Starting forever.
        let stopped = group(
            serde_json::json!({"properties": {"provisioningState": "Succeeded",
            "instanceView": {"state": "Stopped"},
            "containers": [{"name": "c", "properties": {"image": "i"}}]}}),
        );
        let s = status_of(&stopped);
        assert_eq!(
            (s.phase, s.exit_code, s.detail.as_deref()),
            (Phase::Exited, None, Some("container group Stopped"))
        );
        // The group's state wins over a container view that still says Running.
        let succeeded = group(
            serde_json::json!({"properties": {"provisioningState": "Succeeded",
            "instanceView": {"state": "Succeeded"},
            "containers": [{"name": "c", "properties": {"image": "i", "instanceView":
            {"currentState": {"state": "Running"}}}}]}}),
        );
        assert_eq!(status_of(&succeeded).phase, Phase::Exited);
        let running = group(
            serde_json::json!({"properties": {"provisioningState": "Succeeded",
            "instanceView": {"state": "Running"},
            "containers": [{"name": "c", "properties": {"image": "i", "instanceView":
            {"currentState": {"state": "Running"}}}}]}}),
        );
        assert_eq!(status_of(&running).phase, Phase::Running);
    }

    #[test]
    fn metrics_take_the_newest_point_and_convert_millicores() {
        let body = serde_json::json!({"value": [
            {"name": {"value": "CpuUsage"}, "timeseries": [{"data": [
                {"timeStamp": "2026-11-30T10:00:00Z", "average": 100.0},
                {"timeStamp": "2026-11-30T10:01:00Z", "average": 250.0},
                {"timeStamp": "2026-11-30T10:02:00Z"}]}]},
            {"name": {"value": "MemoryUsage"}, "timeseries": [{"data": [
                {"timeStamp": "2026-11-30T10:01:00Z", "average": 1048576.0}]}]}]});
        let s = sample_of(body.to_string().as_bytes()).unwrap().unwrap();
        assert_eq!(s.cpu_percent, 25.0);
        assert_eq!(s.memory_bytes, 1_048_576);
        assert_eq!(s.at_ms, 1_796_032_860_000);
        assert_eq!(sample_of(br#"{"value": []}"#).unwrap(), None);
    }
}
