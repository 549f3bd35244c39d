//! Small text formatting shared by the views.

/// `HH:MM:SS.mmm` in the browser's time zone.
pub fn clock(at_ms: i64) -> String {
    let d = js_sys::Date::new(&(at_ms as f64).into());
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        d.get_hours(),
        d.get_minutes(),
        d.get_seconds(),
        d.get_milliseconds()
    )
}

/// A duration such as `850 ms`, `2.4 s` or `3 min 5 s`.
pub fn duration_ms(ms: i64) -> String {
    match ms {
        ..=999 => format!("{} ms", ms.max(0)),
        1000..=59_999 => format!("{:.1} s", ms as f64 / 1000.0),
        _ => format!("{} min {} s", ms / 60_000, (ms % 60_000) / 1000),
    }
}

/// Bytes as `512 B`, `3.2 MiB`, ...
pub fn bytes(v: f64) -> String {
    const UNITS: [&str; 4] = ["B", "KiB", "MiB", "GiB"];
    let mut v = v.max(0.0);
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{v:.0} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_and_sizes_read_well() {
        assert_eq!(duration_ms(850), "850 ms");
        assert_eq!(duration_ms(2400), "2.4 s");
        assert_eq!(duration_ms(185_000), "3 min 5 s");
        assert_eq!(bytes(512.0), "512 B");
        assert_eq!(bytes(3.5 * 1024.0 * 1024.0), "3.5 MiB");
    }
}
