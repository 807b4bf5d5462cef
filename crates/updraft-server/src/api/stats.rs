//! Invocation statistics over a recent window, per function and per minute: what the
//! dashboard's overview charts, read from the record store's per-minute rollups.

use updraft_store::{Durations, MINUTE_US, MinuteRow};

use super::*;

/// Longest window.
const MAX_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// How a function's invocations went over the window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FunctionStats {
    /// The function.
    pub function: String,
    /// Invocations that started in the window.
    pub invocations: u64,
    /// Those whose outcome was not `ok`.
    pub errors: u64,
    /// Those that were the first since the component was loaded.
    pub cold: u64,
    /// Median duration, in microseconds (exact below 32 µs, else within 3%).
    pub p50_us: i64,
    /// 99th-percentile duration, in microseconds (exact below 32 µs, else within 3%).
    pub p99_us: i64,
}

/// Invocations that started in one minute.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MinuteStats {
    /// The minute's start, RFC 3339.
    pub minute: String,
    /// With outcome `ok`.
    pub ok: u64,
    /// With any other outcome.
    pub failed: u64,
    /// Those that were cold starts.
    pub cold: u64,
    /// Median duration of all functions' invocations in the minute, in microseconds;
    /// absent for a minute without any.
    pub p50_us: Option<i64>,
    /// Their 99th-percentile duration, in microseconds.
    pub p99_us: Option<i64>,
}

/// Invocation statistics of an app over a recent window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppStats {
    /// The window, in seconds, ending now. The figures cover its whole minutes and the
    /// current one (they are read from per-minute rollups).
    pub window_s: u64,
    /// Per function with invocations in the window, in id order.
    pub functions: Vec<FunctionStats>,
    /// Per minute of the window, oldest first.
    pub minutes: Vec<MinuteStats>,
}

/// The window to summarise.
#[derive(Debug, Deserialize, IntoParams)]
pub struct StatsParams {
    /// How far back from now (`"15m"`, `"1h"`, up to `"24h"`; default `"1h"`).
    pub window: Option<String>,
}

#[utoipa::path(get, path = "/_updraft/api/v1/apps/{app}/stats", params(("app" = String, Path, description = "the app's name"), StatsParams),
    responses((status = 200, body = AppStats), (status = 400, body = ApiError)))]
pub(super) async fn stats(
    Extension(state): Extension<Arc<AppState>>,
    Query(p): Query<StatsParams>,
) -> Response {
    let window = match parse_window(p.window.as_deref()) {
        Ok(w) => w,
        Err(why) => return api_error(StatusCode::BAD_REQUEST, why),
    };
    match app_stats(&state, window).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => store_error(&e),
    }
}

/// `"1h"` and the like, at most a day; none is an hour.
pub(crate) fn parse_window(text: Option<&str>) -> Result<Duration, String> {
    let Some(text) = text else {
        return Ok(Duration::from_secs(3600));
    };
    let w = humantime::parse_duration(text).map_err(|_| {
        format!("`{text}` is not a window; write it like \"15m\", \"1h\" or \"24h\"")
    })?;
    if w < Duration::from_secs(60) || w > MAX_WINDOW {
        return Err(format!(
            "the window `{text}` is outside 1m to 24h; pick one in that range"
        ));
    }
    Ok(w)
}

/// The app's statistics over the `window` ending now, from the per-minute rollups: the
/// same few rows per minute however many invocations ran.
pub(crate) async fn app_stats(state: &AppState, window: Duration) -> Result<AppStats, StoreError> {
    let now = updraft_runtime::now_us();
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let first = (now - window_us).div_euclid(MINUTE_US) + 1;
    let last = now.div_euclid(MINUTE_US);
    let rollups = state.records.minutes(first * MINUTE_US).await?;

    let mut minutes: Vec<MinuteStats> = (first..=last)
        .map(|m| MinuteStats {
            minute: rfc3339(m * MINUTE_US),
            ok: 0,
            failed: 0,
            cold: 0,
            p50_us: None,
            p99_us: None,
        })
        .collect();
    let mut durations = vec![Durations::default(); minutes.len()];
    let mut by_function: BTreeMap<String, MinuteRow> = BTreeMap::new();
    for r in rollups {
        let at = usize::try_from(r.minute_us.div_euclid(MINUTE_US) - first).ok();
        if let Some(i) = at.filter(|i| *i < minutes.len()) {
            let m = &mut minutes[i];
            m.ok += r.invocations.saturating_sub(r.errors);
            m.failed += r.errors;
            m.cold += r.cold;
            durations[i].merge(&r.durations);
        }
        match by_function.get_mut(&r.function) {
            Some(total) => total.merge(&r),
            None => {
                by_function.insert(r.function.clone(), r);
            }
        }
    }
    for (m, d) in minutes.iter_mut().zip(&durations) {
        if !d.is_empty() {
            m.p50_us = Some(d.percentile(50));
            m.p99_us = Some(d.percentile(99));
        }
    }
    let functions = by_function
        .into_values()
        .map(|f| FunctionStats {
            p50_us: f.durations.percentile(50),
            p99_us: f.durations.percentile(99),
            function: f.function,
            invocations: f.invocations,
            errors: f.errors,
            cold: f.cold,
        })
        .collect();
    Ok(AppStats {
        window_s: window.as_secs(),
        functions,
        minutes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_are_bounded() {
        assert_eq!(parse_window(None), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_window(Some("15m")), Ok(Duration::from_secs(900)));
        assert!(parse_window(Some("2d")).unwrap_err().contains("1m to 24h"));
        assert!(parse_window(Some("soon")).unwrap_err().contains("\"15m\""));
    }
}
