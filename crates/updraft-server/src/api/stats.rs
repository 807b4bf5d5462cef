//! Invocation statistics over a recent window, per function and per minute: what the
//! dashboard's overview charts, computed from the invocation records.

use super::*;

/// Most records one answer reads; past it the figures cover the newest ones (`complete`
/// says so). Per-minute rollups kept as records are written would lift this.
const MAX_RECORDS: u32 = 20_000;
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
    /// Median duration, in microseconds.
    pub p50_us: i64,
    /// 99th-percentile duration, in microseconds.
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
}

/// Invocation statistics of an app over a recent window.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct AppStats {
    /// The window, in seconds, ending now.
    pub window_s: u64,
    /// False when more invocations started in the window than one answer reads (20,000):
    /// the figures then cover the newest of them.
    pub complete: bool,
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
        Err(e) => api_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
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

/// The app's statistics over the `window` ending now.
pub(crate) async fn app_stats(state: &AppState, window: Duration) -> Result<AppStats, StoreError> {
    let now = updraft_runtime::now_us();
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let since = now - window_us;
    let rows = state
        .records
        .invocations(InvocationQuery {
            function: None,
            before_us: None,
            limit: MAX_RECORDS,
        })
        .await?;
    let complete =
        rows.len() < MAX_RECORDS as usize || rows.last().is_some_and(|r| r.started_us < since);
    let rows: Vec<&InvocationRow> = rows.iter().filter(|r| r.started_us >= since).collect();

    let mut by_function: BTreeMap<&str, Vec<&InvocationRow>> = BTreeMap::new();
    for r in &rows {
        by_function.entry(r.function.as_str()).or_default().push(r);
    }
    let functions = by_function
        .into_iter()
        .map(|(function, rows)| {
            let mut durations: Vec<i64> = rows.iter().map(|r| r.duration_us).collect();
            durations.sort_unstable();
            FunctionStats {
                function: function.to_owned(),
                invocations: rows.len() as u64,
                errors: rows.iter().filter(|r| r.outcome != "ok").count() as u64,
                cold: rows.iter().filter(|r| r.cold).count() as u64,
                p50_us: percentile(&durations, 50),
                p99_us: percentile(&durations, 99),
            }
        })
        .collect();

    const MINUTE_US: i64 = 60_000_000;
    let first = since.div_euclid(MINUTE_US) + 1;
    let last = now.div_euclid(MINUTE_US);
    let mut minutes: Vec<MinuteStats> = (first..=last)
        .map(|m| MinuteStats {
            minute: rfc3339(m * MINUTE_US),
            ok: 0,
            failed: 0,
        })
        .collect();
    for r in &rows {
        let at = r.started_us.div_euclid(MINUTE_US) - first;
        if let Some(m) = usize::try_from(at).ok().and_then(|i| minutes.get_mut(i)) {
            if r.outcome == "ok" {
                m.ok += 1;
            } else {
                m.failed += 1;
            }
        }
    }
    Ok(AppStats {
        window_s: window.as_secs(),
        complete,
        functions,
        minutes,
    })
}

/// The nearest-rank `p`th percentile of sorted `values` (0 when there are none).
fn percentile(values: &[i64], p: usize) -> i64 {
    if values.is_empty() {
        return 0;
    }
    let rank = (p * values.len()).div_ceil(100).max(1);
    values[rank - 1]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank_and_windows_are_bounded() {
        let v: Vec<i64> = (1..=100).collect();
        assert_eq!((percentile(&v, 50), percentile(&v, 99)), (50, 99));
        assert_eq!(percentile(&[7], 99), 7);
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(parse_window(None), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_window(Some("15m")), Ok(Duration::from_secs(900)));
        assert!(parse_window(Some("2d")).unwrap_err().contains("1m to 24h"));
        assert!(parse_window(Some("soon")).unwrap_err().contains("\"15m\""));
    }
}
