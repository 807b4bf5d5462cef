//! A panel's rows drawn as an SVG chart (line, area, bar, pie) or an HTML table, on the
//! server: the page needs no script or chart library to show its data, and what a browser
//! draws is what a test reads (`data-points`, one `<title>` per mark).

use std::fmt::Write;

use updraft_manifest::ChartKind;
use updraft_store::{RowSet, Value};

use super::escape;

/// Most marks one chart draws; a query returning more is asked to aggregate.
pub(crate) const MAX_POINTS: usize = 5_000;
/// Most rows a table panel shows.
pub(crate) const MAX_TABLE_ROWS: usize = 500;

/// Points of one line past which its marks are drawn only under the pointer.
const DENSE: usize = 40;
const WIDTH: f64 = 640.0;
const HEIGHT: f64 = 300.0;
const LEFT: f64 = 64.0;
const RIGHT: f64 = 16.0;
const TOP: f64 = 16.0;
const BOTTOM: f64 = 48.0;
/// Colour-blind-safe (Okabe–Ito), in series order.
const PALETTE: [&str; 8] = [
    "#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00", "#f0e442", "#000000",
];

/// What a panel draws: its chart and the columns it reads.
pub(crate) struct Spec<'a> {
    pub(crate) chart: ChartKind,
    pub(crate) x: Option<&'a str>,
    pub(crate) y: Vec<String>,
    pub(crate) group: Option<&'a str>,
    /// The time range picked (unix seconds, from and to): a line or area chart over dates
    /// spans all of it, not only the dates that have rows.
    pub(crate) range: Option<(f64, f64)>,
}

/// One series: a name and its points as (x, y).
struct Series {
    name: String,
    points: Vec<(Value, f64)>,
}

/// The chart for `rows`, or why it cannot be drawn (naming the column and the fix).
pub(crate) fn render(spec: &Spec<'_>, rows: &RowSet) -> Result<String, String> {
    if spec.chart == ChartKind::Table {
        return Ok(table(rows));
    }
    let (x, ys, group) = columns(spec, rows)?;
    if rows.rows.len() * ys.len() > MAX_POINTS {
        return Err(format!(
            "the query returned {} rows; a chart draws at most {MAX_POINTS} points: aggregate it (`GROUP BY`) or add a `LIMIT`",
            rows.rows.len()
        ));
    }
    let series = split(rows, x, &ys, group, &spec.y);
    let y_label = match spec.group {
        Some(g) => format!("{} by {g}", spec.y.join(", ")),
        None => spec.y.join(", "),
    };
    let x_label = spec.x.unwrap_or_default();
    Ok(match spec.chart {
        ChartKind::Pie => pie(&series),
        ChartKind::Bar => bars(&series, x_label, &y_label),
        kind => lines(
            &series,
            kind == ChartKind::Area,
            spec.range,
            x_label,
            &y_label,
        ),
    })
}

/// Where the chart's `x`, `y` and `group` columns are in `rows`, or which one is missing
/// (a result with no rows still has its columns).
pub(crate) fn columns(
    spec: &Spec<'_>,
    rows: &RowSet,
) -> Result<(usize, Vec<usize>, Option<usize>), String> {
    if spec.chart == ChartKind::Table {
        return Ok((0, Vec::new(), None));
    }
    let column = |name: &str| {
        rows.columns.iter().position(|c| c == name).ok_or_else(|| {
            format!(
                "column `{name}` is not in the query's result; it has {}",
                rows.columns
                    .iter()
                    .map(|c| format!("`{c}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        })
    };
    let x = column(spec.x.unwrap_or_default())?;
    let ys = spec
        .y
        .iter()
        .map(|y| column(y))
        .collect::<Result<Vec<_>, _>>()?;
    let group = spec.group.map(column).transpose()?;
    Ok((x, ys, group))
}

/// Rows into series: one per `y` column, or one per value of `group`, in order of first
/// appearance. Rows whose `y` is not a number are left out.
fn split(
    rows: &RowSet,
    x: usize,
    ys: &[usize],
    group: Option<usize>,
    names: &[String],
) -> Vec<Series> {
    let mut series: Vec<Series> = match group {
        Some(_) => Vec::new(),
        None => names
            .iter()
            .map(|n| Series {
                name: n.clone(),
                points: Vec::new(),
            })
            .collect(),
    };
    for row in &rows.rows {
        for (i, &y) in ys.iter().enumerate() {
            let Some(value) = number(&row[y]) else {
                continue;
            };
            let slot = match group {
                None => i,
                Some(g) => {
                    let name = label(&row[g]);
                    match series.iter().position(|s| s.name == name) {
                        Some(at) => at,
                        None => {
                            series.push(Series {
                                name,
                                points: Vec::new(),
                            });
                            series.len() - 1
                        }
                    }
                }
            };
            series[slot].points.push((row[x].clone(), value));
        }
    }
    series
}

fn number(v: &Value) -> Option<f64> {
    match v {
        Value::Int(i) => Some(*i as f64),
        Value::Float(f) if f.is_finite() => Some(*f),
        Value::Text(t) => t.trim().parse().ok().filter(|f: &f64| f.is_finite()),
        _ => None,
    }
}

/// A value as text, for labels and cells.
pub(crate) fn label(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::Int(i) => i.to_string(),
        Value::Float(f) => format_number(*f),
        Value::Text(t) => t.clone(),
        Value::Blob(b) => format!("({} bytes)", b.len()),
    }
}

/// Where an x value sits on a continuous axis: a number, or a date or time as seconds.
fn position(v: &Value) -> Option<f64> {
    match v {
        Value::Text(t) => {
            let t = t.trim();
            if let Ok(d) = chrono::NaiveDate::parse_from_str(t, "%Y-%m-%d") {
                return d
                    .and_hms_opt(0, 0, 0)
                    .map(|d| d.and_utc().timestamp() as f64);
            }
            if let Ok(d) = chrono::DateTime::parse_from_rfc3339(t) {
                return Some(d.timestamp() as f64);
            }
            chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                .ok()
                .map(|d| d.and_utc().timestamp() as f64)
                .or_else(|| number(v))
        }
        other => number(other),
    }
}

fn format_number(f: f64) -> String {
    if f.fract() == 0.0 && f.abs() < 1e15 {
        format!("{}", f as i64)
    } else if f.abs() >= 100.0 {
        format!("{f:.0}")
    } else {
        let s = format!("{f:.2}");
        s.trim_end_matches('0').trim_end_matches('.').to_owned()
    }
}

/// About five round steps from `low` to `high`, covering both.
fn ticks(low: f64, high: f64) -> Vec<f64> {
    let span = (high - low).max(f64::EPSILON);
    let raw = span / 5.0;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step = [1.0, 2.0, 2.5, 5.0, 10.0]
        .iter()
        .map(|m| m * magnitude)
        .find(|s| *s >= raw)
        .unwrap_or(10.0 * magnitude);
    let first = (low / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t <= high + step * 0.5 && out.len() < 12 {
        out.push(t);
        t += step;
    }
    out
}

/// The value range of every point, from 0 when all are on one side of it.
fn y_range(series: &[Series]) -> (f64, f64) {
    let values = series.iter().flat_map(|s| s.points.iter().map(|p| p.1));
    let (low, high) = values.fold((0.0f64, 0.0f64), |(l, h), v| (l.min(v), h.max(v)));
    if (high - low).abs() < f64::EPSILON {
        (low, low + 1.0)
    } else {
        (low, high)
    }
}

struct Frame {
    out: String,
    y_low: f64,
    y_high: f64,
}

impl Frame {
    /// The SVG's start, the y grid with its labels and both axis titles.
    fn new(kind: &str, series: &[Series], x_label: &str, y_label: &str) -> Self {
        let points: usize = series.iter().map(|s| s.points.len()).sum();
        let ticks = {
            let (low, high) = y_range(series);
            ticks(low, high)
        };
        let y_low = ticks.first().copied().unwrap_or(0.0);
        let y_high = ticks.last().copied().unwrap_or(1.0);
        let mut out = format!(
            r#"<svg class="chart" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{kind} chart of {} against {}" data-chart="{kind}" data-series="{}" data-points="{points}">"#,
            escape(y_label),
            escape(x_label),
            series.len()
        );
        let frame = Self {
            out: String::new(),
            y_low,
            y_high,
        };
        for t in &ticks {
            let y = frame.y(*t);
            let _ = write!(
                out,
                r#"<line class="grid" x1="{LEFT}" x2="{}" y1="{y:.1}" y2="{y:.1}"/><text class="tick" x="{}" y="{:.1}" text-anchor="end">{}</text>"#,
                WIDTH - RIGHT,
                LEFT - 6.0,
                y + 4.0,
                format_number(*t)
            );
        }
        let _ = write!(
            out,
            r#"<line class="axis" x1="{LEFT}" x2="{}" y1="{b}" y2="{b}"/><text class="axis-title" x="{:.1}" y="{}" text-anchor="middle">{}</text><text class="axis-title" transform="translate(14 {:.1}) rotate(-90)" text-anchor="middle">{}</text>"#,
            WIDTH - RIGHT,
            LEFT + (WIDTH - LEFT - RIGHT) / 2.0,
            HEIGHT - 6.0,
            escape(x_label),
            TOP + (HEIGHT - TOP - BOTTOM) / 2.0,
            escape(y_label),
            b = HEIGHT - BOTTOM,
        );
        Self { out, y_low, y_high }
    }

    fn y(&self, v: f64) -> f64 {
        let span = (self.y_high - self.y_low).max(f64::EPSILON);
        HEIGHT - BOTTOM - (v - self.y_low) / span * (HEIGHT - TOP - BOTTOM)
    }

    fn x_tick(&mut self, x: f64, text: &str, anchor: &str) {
        let _ = write!(
            self.out,
            r#"<text class="tick" x="{x:.1}" y="{:.1}" text-anchor="{anchor}">{}</text>"#,
            HEIGHT - BOTTOM + 16.0,
            escape(text)
        );
    }

    fn finish(mut self, series: &[Series]) -> String {
        self.out.push_str("</svg>");
        self.out + &legend(series.iter().map(|s| s.name.as_str()))
    }
}

fn legend<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut out = String::from(r#"<ul class="legend">"#);
    for (i, name) in names.enumerate() {
        let _ = write!(
            out,
            r#"<li><span class="swatch" style="background:{}"></span>{}</li>"#,
            PALETTE[i % PALETTE.len()],
            escape(name)
        );
    }
    out + "</ul>"
}

const DAY: f64 = 86_400.0;

/// Ticks on whole days from `low` to `high` (seconds), at most five, so that no two
/// date-only labels are the same day.
fn day_marks(low: f64, high: f64) -> Vec<f64> {
    let step = ((high - low) / DAY / 4.0).ceil().max(1.0) * DAY;
    let first = (low / DAY).ceil() * DAY;
    (0..6)
        .map(|i| first + step * f64::from(i))
        .take_while(|m| *m <= high)
        .collect()
}

/// Where each x value goes: on a continuous axis when every x is a number or a date, else
/// one slot per distinct value in order of first appearance.
enum XAxis {
    Continuous { low: f64, high: f64, dates: bool },
    Slots(Vec<String>),
}

impl XAxis {
    fn of(series: &[Series], slots_only: bool) -> Self {
        let xs: Vec<&Value> = series
            .iter()
            .flat_map(|s| s.points.iter().map(|p| &p.0))
            .collect();
        let positions: Option<Vec<f64>> = xs.iter().map(|v| position(v)).collect();
        match positions {
            Some(p) if !slots_only && !p.is_empty() => {
                let low = p.iter().copied().fold(f64::INFINITY, f64::min);
                let high = p.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let dates = xs.iter().any(|v| matches!(v, Value::Text(_)));
                Self::Continuous { low, high, dates }
            }
            _ => {
                let mut slots: Vec<String> = Vec::new();
                for v in xs {
                    let l = label(v);
                    if !slots.contains(&l) {
                        slots.push(l);
                    }
                }
                Self::Slots(slots)
            }
        }
    }

    /// The axis widened to `range` when it is an axis of dates (a picked time range
    /// shows as a whole, quiet stretches included).
    fn spanning(self, range: Option<(f64, f64)>) -> Self {
        match (self, range) {
            (
                Self::Continuous {
                    low,
                    high,
                    dates: true,
                },
                Some((from, to)),
            ) => Self::Continuous {
                low: low.min(from),
                high: high.max(to),
                dates: true,
            },
            (axis, _) => axis,
        }
    }

    /// The x coordinate of `v`, at the slot's centre for slots.
    fn x(&self, v: &Value) -> f64 {
        let plot = WIDTH - LEFT - RIGHT;
        match self {
            Self::Continuous { low, high, .. } => {
                let span = high - low;
                let at = position(v).unwrap_or(*low);
                if span < f64::EPSILON {
                    LEFT + plot / 2.0
                } else {
                    LEFT + 12.0 + (at - low) / span * (plot - 24.0)
                }
            }
            Self::Slots(slots) => {
                let i = slots.iter().position(|s| *s == label(v)).unwrap_or(0);
                LEFT + plot * (i as f64 + 0.5) / slots.len().max(1) as f64
            }
        }
    }

    fn draw_ticks(&self, frame: &mut Frame) {
        let plot = WIDTH - LEFT - RIGHT;
        match self {
            Self::Continuous { low, high, dates } => {
                let whole_days = *dates && high - low >= 2.0 * DAY;
                let marks: Vec<f64> = if high - low < f64::EPSILON {
                    vec![*low]
                } else if whole_days {
                    day_marks(*low, *high)
                } else {
                    (0..5)
                        .map(|i| low + (high - low) * f64::from(i) / 4.0)
                        .collect()
                };
                for m in marks {
                    // The outer labels end at the plot's edges instead of spilling past.
                    let share = if high - low < f64::EPSILON {
                        0.5
                    } else {
                        (m - low) / (high - low)
                    };
                    let anchor = match share {
                        s if s < 0.1 => "start",
                        s if s > 0.9 => "end",
                        _ => "middle",
                    };
                    let x = if high - low < f64::EPSILON {
                        LEFT + plot / 2.0
                    } else {
                        LEFT + 12.0 + (m - low) / (high - low) * (plot - 24.0)
                    };
                    let text = if *dates {
                        chrono::DateTime::from_timestamp(m as i64, 0).map_or_else(
                            String::new,
                            |d| {
                                if whole_days {
                                    d.format("%Y-%m-%d").to_string()
                                } else {
                                    d.format("%m-%d %H:%M").to_string()
                                }
                            },
                        )
                    } else {
                        format_number(m)
                    };
                    frame.x_tick(x, &text, anchor);
                }
            }
            Self::Slots(slots) => {
                let every = slots.len().div_ceil(8).max(1);
                for (i, s) in slots.iter().enumerate().step_by(every) {
                    let x = LEFT + plot * (i as f64 + 0.5) / slots.len().max(1) as f64;
                    let short: String = s.chars().take(14).collect();
                    frame.x_tick(x, &short, "middle");
                }
            }
        }
    }
}

fn lines(
    series: &[Series],
    filled: bool,
    range: Option<(f64, f64)>,
    x_label: &str,
    y_label: &str,
) -> String {
    let kind = if filled { "area" } else { "line" };
    let mut frame = Frame::new(kind, series, x_label, y_label);
    let axis = XAxis::of(series, false).spanning(range);
    axis.draw_ticks(&mut frame);
    let baseline = frame.y(0f64.clamp(frame.y_low, frame.y_high));
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let mut points: Vec<(f64, f64, &Value, f64)> = s
            .points
            .iter()
            .map(|(x, y)| (axis.x(x), frame.y(*y), x, *y))
            .collect();
        if matches!(axis, XAxis::Continuous { .. }) {
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
        }
        let path: Vec<String> = points
            .iter()
            .map(|p| format!("{:.1},{:.1}", p.0, p.1))
            .collect();
        if filled && let (Some(first), Some(last)) = (points.first(), points.last()) {
            let _ = write!(
                frame.out,
                r#"<polygon fill="{colour}" fill-opacity="0.25" points="{:.1},{baseline:.1} {} {:.1},{baseline:.1}"/>"#,
                first.0,
                path.join(" "),
                last.0
            );
        }
        let _ = write!(
            frame.out,
            r#"<polyline fill="none" stroke="{colour}" stroke-width="2" points="{}"/>"#,
            path.join(" ")
        );
        // Many points: the marks stay for their tooltips but show only under the pointer.
        let class = if points.len() > DENSE {
            "point dense"
        } else {
            "point"
        };
        for (x, y, xv, yv) in &points {
            let _ = write!(
                frame.out,
                r#"<circle class="{class}" cx="{x:.1}" cy="{y:.1}" r="3" fill="{colour}"><title>{}: {} = {}</title></circle>"#,
                escape(&s.name),
                escape(&label(xv)),
                format_number(*yv)
            );
        }
    }
    frame.finish(series)
}

fn bars(series: &[Series], x_label: &str, y_label: &str) -> String {
    let mut frame = Frame::new("bar", series, x_label, y_label);
    let axis = XAxis::of(series, true);
    axis.draw_ticks(&mut frame);
    let XAxis::Slots(slots) = &axis else {
        return frame.finish(series);
    };
    let slot = (WIDTH - LEFT - RIGHT) / slots.len().max(1) as f64;
    let width = slot * 0.8 / series.len().max(1) as f64;
    let zero = frame.y(0f64.clamp(frame.y_low, frame.y_high));
    for (i, s) in series.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        for (xv, yv) in &s.points {
            let centre = axis.x(xv);
            let left = centre - slot * 0.4 + width * i as f64;
            let top = frame.y(*yv);
            let _ = write!(
                frame.out,
                r#"<rect class="bar" x="{left:.1}" y="{:.1}" width="{width:.1}" height="{:.1}" fill="{colour}"><title>{}: {} = {}</title></rect>"#,
                top.min(zero),
                (zero - top).abs(),
                escape(&s.name),
                escape(&label(xv)),
                format_number(*yv)
            );
        }
    }
    frame.finish(series)
}

fn pie(series: &[Series]) -> String {
    let slices: Vec<(String, f64)> = series
        .first()
        .map(|s| {
            s.points
                .iter()
                .filter(|p| p.1 > 0.0)
                .map(|(x, y)| (label(x), *y))
                .collect()
        })
        .unwrap_or_default();
    let total: f64 = slices.iter().map(|s| s.1).sum();
    let name = series.first().map_or("", |s| s.name.as_str());
    let mut out = format!(
        r#"<svg class="chart pie" viewBox="0 0 {HEIGHT} {HEIGHT}" role="img" aria-label="pie chart of {}" data-chart="pie" data-series="1" data-points="{}">"#,
        escape(name),
        slices.len()
    );
    let (cx, cy, r) = (HEIGHT / 2.0, HEIGHT / 2.0, HEIGHT / 2.0 - 8.0);
    let mut angle = -std::f64::consts::FRAC_PI_2;
    for (i, (text, value)) in slices.iter().enumerate() {
        let colour = PALETTE[i % PALETTE.len()];
        let share = value / total;
        let title = format!("{text}: {} ({:.1}%)", format_number(*value), share * 100.0);
        if slices.len() == 1 {
            let _ = write!(
                out,
                r#"<circle class="slice" cx="{cx}" cy="{cy}" r="{r}" fill="{colour}"><title>{}</title></circle>"#,
                escape(&title)
            );
            break;
        }
        let end = angle + share * std::f64::consts::TAU;
        let large = i32::from(share > 0.5);
        let _ = write!(
            out,
            r#"<path class="slice" d="M{cx},{cy} L{:.2},{:.2} A{r},{r} 0 {large} 1 {:.2},{:.2} Z" fill="{colour}"><title>{}</title></path>"#,
            cx + r * angle.cos(),
            cy + r * angle.sin(),
            cx + r * end.cos(),
            cy + r * end.sin(),
            escape(&title)
        );
        angle = end;
    }
    out.push_str("</svg>");
    let labels: Vec<String> = slices
        .iter()
        .map(|(t, v)| format!("{t} ({:.1}%)", v / total * 100.0))
        .collect();
    out + &legend(labels.iter().map(String::as_str))
}

fn table(rows: &RowSet) -> String {
    let mut out = String::from(r#"<div class="table-wrap"><table data-chart="table"><thead><tr>"#);
    for c in &rows.columns {
        let _ = write!(out, r#"<th scope="col">{}</th>"#, escape(c));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows.rows.iter().take(MAX_TABLE_ROWS) {
        out.push_str("<tr>");
        for v in row {
            let class = if matches!(v, Value::Int(_) | Value::Float(_)) {
                r#" class="num""#
            } else {
                ""
            };
            let _ = write!(out, "<td{class}>{}</td>", escape(&label(v)));
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    if rows.rows.len() > MAX_TABLE_ROWS {
        let _ = write!(
            out,
            r#"<p class="note">Showing the first {MAX_TABLE_ROWS} of {} rows.</p>"#,
            rows.rows.len()
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(columns: &[&str], rows: Vec<Vec<Value>>) -> RowSet {
        RowSet {
            columns: columns.iter().map(|c| (*c).to_owned()).collect(),
            rows,
        }
    }

    fn t(s: &str) -> Value {
        Value::Text(s.to_owned())
    }

    fn spec(chart: ChartKind, y: &[&str], group: Option<&'static str>) -> Spec<'static> {
        Spec {
            chart,
            x: Some("day"),
            y: y.iter().map(|y| (*y).to_owned()).collect(),
            group,
            range: None,
        }
    }

    #[test]
    fn a_picked_range_widens_an_axis_of_dates_to_all_of_it() {
        let data = rows(
            &["day", "total"],
            vec![
                vec![t("2026-11-01"), Value::Int(3)],
                vec![t("2026-11-02"), Value::Int(5)],
            ],
        );
        let day = |d: &str| {
            chrono::NaiveDate::parse_from_str(d, "%Y-%m-%d")
                .unwrap()
                .and_hms_opt(0, 0, 0)
                .unwrap()
                .and_utc()
                .timestamp() as f64
        };
        let narrow = render(&spec(ChartKind::Line, &["total"], None), &data).unwrap();
        assert!(!narrow.contains("2026-10-25"), "{narrow}");
        let wide = Spec {
            range: Some((day("2026-10-25"), day("2026-11-04"))),
            ..spec(ChartKind::Line, &["total"], None)
        };
        let svg = render(&wide, &data).unwrap();
        assert!(svg.contains("2026-10-25"), "{svg}");
        // A bar chart has one slot per value: the range does not add empty ones.
        let bars = Spec {
            range: Some((day("2026-10-25"), day("2026-11-04"))),
            ..spec(ChartKind::Bar, &["total"], None)
        };
        assert!(!render(&bars, &data).unwrap().contains("2026-10-25"));
    }

    fn count(svg: &str, what: &str) -> usize {
        svg.matches(what).count()
    }

    #[test]
    fn series_by_group_and_by_column_draw_one_mark_per_value() {
        let data = rows(
            &["day", "region", "total", "units"],
            vec![
                vec![
                    t("2026-11-01"),
                    t("north"),
                    Value::Float(10.5),
                    Value::Int(2),
                ],
                vec![t("2026-11-01"), t("south"), Value::Int(4), Value::Int(1)],
                vec![t("2026-11-02"), t("north"), Value::Null, Value::Int(3)],
                vec![t("2026-11-03"), t("north"), Value::Int(7), Value::Int(1)],
            ],
        );
        let svg = render(&spec(ChartKind::Line, &["total"], Some("region")), &data).unwrap();
        assert!(svg.contains(r#"data-series="2" data-points="3""#), "{svg}");
        assert_eq!(count(&svg, "<circle"), 3, "the NULL total is left out");
        assert!(svg.contains("north: 2026-11-01 = 10.5"), "{svg}");
        assert!(svg.contains(">2026-11-01<"), "dates label the axis: {svg}");
        let svg = render(&spec(ChartKind::Bar, &["total", "units"], None), &data).unwrap();
        assert!(svg.contains(r#"data-series="2" data-points="7""#), "{svg}");
        assert_eq!(count(&svg, "<rect"), 7);
        let svg = render(&spec(ChartKind::Area, &["units"], None), &data).unwrap();
        assert_eq!(count(&svg, "<polygon"), 1);
    }

    #[test]
    fn a_pie_has_a_slice_per_positive_value_with_its_share() {
        let data = rows(
            &["day", "total"],
            vec![
                vec![t("a"), Value::Int(3)],
                vec![t("b"), Value::Int(1)],
                vec![t("c"), Value::Int(0)],
            ],
        );
        let svg = render(&spec(ChartKind::Pie, &["total"], None), &data).unwrap();
        assert_eq!(count(&svg, r#"class="slice""#), 2, "{svg}");
        assert!(svg.contains("a: 3 (75.0%)"), "{svg}");
    }

    #[test]
    fn a_missing_column_names_what_the_query_has() {
        let data = rows(&["day", "total"], vec![]);
        let e = render(&spec(ChartKind::Line, &["revenue"], None), &data).unwrap_err();
        assert_eq!(
            e,
            "column `revenue` is not in the query's result; it has `day`, `total`"
        );
    }

    #[test]
    fn text_is_escaped_everywhere() {
        let data = rows(
            &["day", "<b>"],
            vec![vec![t("<script>alert(1)</script>"), Value::Int(1)]],
        );
        let svg = render(&spec(ChartKind::Bar, &["<b>"], None), &data).unwrap();
        assert!(!svg.contains("<script>") && !svg.contains("<b>"), "{svg}");
        let html = render(&spec(ChartKind::Table, &[], None), &data).unwrap();
        assert!(
            !html.contains("<script>") && html.contains("&lt;b&gt;"),
            "{html}"
        );
    }

    #[test]
    fn date_ticks_fall_on_distinct_days() {
        let day = |d: &str| position(&t(d)).unwrap();
        let marks = day_marks(day("2026-11-02"), day("2026-11-04"));
        assert_eq!(
            marks,
            [day("2026-11-02"), day("2026-11-03"), day("2026-11-04")]
        );
        let month = day_marks(day("2026-11-01"), day("2026-11-30"));
        assert!(month.len() <= 5 && month.len() >= 3, "{month:?}");
        assert!(month.windows(2).all(|w| w[1] - w[0] >= DAY));
        let rows = rows(
            &["day", "units"],
            ["2026-11-02", "2026-11-03", "2026-11-04"]
                .iter()
                .map(|d| vec![t(d), Value::Int(1)])
                .collect(),
        );
        let svg = render(&spec(ChartKind::Line, &["units"], None), &rows).unwrap();
        for d in ["2026-11-02", "2026-11-03", "2026-11-04"] {
            assert_eq!(svg.matches(&format!(">{d}</text>")).count(), 1, "{svg}");
        }
    }

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        assert_eq!(ticks(0.0, 96.49), [0.0, 20.0, 40.0, 60.0, 80.0, 100.0]);
        assert_eq!(ticks(-3.0, 7.0), [-4.0, -2.0, 0.0, 2.0, 4.0, 6.0, 8.0]);
    }
}
