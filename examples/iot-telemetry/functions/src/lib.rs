//! What both functions share: a device reading and how times are written.

use serde::Deserialize;

/// One reading, as devices send it (JSON).
#[derive(Debug, Clone, Deserialize)]
pub struct Reading {
    /// The device's id.
    pub device: String,
    /// When it was measured, in milliseconds since the epoch.
    pub time: i64,
    /// Temperature.
    pub celsius: f64,
    /// Relative humidity, percent.
    #[serde(default)]
    pub humidity: Option<f64>,
}

impl Reading {
    /// Why the reading cannot be counted, if it cannot.
    pub fn invalid(&self) -> Option<&'static str> {
        if self.device.is_empty() {
            Some("no device id")
        } else if !(-60.0..=150.0).contains(&self.celsius) {
            Some("celsius out of range (-60 to 150)")
        } else if self.humidity.is_some_and(|h| !(0.0..=100.0).contains(&h)) {
            Some("humidity out of range (0 to 100)")
        } else {
            None
        }
    }
}

/// `2026-12-07T10:15:00Z` for a time in milliseconds (UTC, whole seconds).
pub fn rfc3339(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rest / 3600,
        (rest % 3600) / 60,
        rest % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (Howard Hinnant's
/// algorithm).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    #[test]
    fn times_are_rfc3339() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(1_796_601_600_000), "2026-12-07T00:00:00Z");
    }
}
