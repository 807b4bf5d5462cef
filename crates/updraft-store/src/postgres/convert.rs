//! Values between updraft's five (null, int64, float64, text, blob) and PostgreSQL's types
//! (DESIGN §9 "sql").
//!
//! Out: int2/int4/int8/oid → int64, float4/float8 → float64, bool → int64 0/1, bytea →
//! blob, text-like types and enums → text, and every other type updraft knows (numeric,
//! uuid, json, jsonb, date, time, timestamp, timestamptz, interval) → its text form (ISO
//! 8601 for times, decimal strings for numeric). In: a parameter is converted to the type
//! the prepared statement declares, with a range check; a text parameter for a type updraft
//! has no binary form of is sent as text for the server to parse. `void` reads as null.

use std::error::Error;
use std::fmt::Write as _;

use bytes::BytesMut;
use chrono::{DateTime, NaiveDate, NaiveDateTime, NaiveTime, Utc};
use tokio_postgres::types::{Format, FromSql, IsNull, Kind, ToSql, Type, to_sql_checked};

use crate::sql::Value;

type BoxError = Box<dyn Error + Sync + Send>;

/// One parameter, ready for the wire.
#[derive(Debug)]
pub(super) enum Param {
    Null,
    Bool(bool),
    I16(i16),
    I32(i32),
    I64(i64),
    F32(f32),
    F64(f64),
    Bytes(Vec<u8>),
    /// Text in the binary format of a text-like type (its UTF-8 bytes).
    Str(String),
    /// Any type's text form, sent in the text format: the server parses it.
    TextForm(String),
}

impl ToSql for Param {
    fn to_sql(&self, _ty: &Type, out: &mut BytesMut) -> Result<IsNull, BoxError> {
        match self {
            Param::Null => return Ok(IsNull::Yes),
            Param::Bool(b) => out.extend_from_slice(&[u8::from(*b)]),
            Param::I16(i) => out.extend_from_slice(&i.to_be_bytes()),
            Param::I32(i) => out.extend_from_slice(&i.to_be_bytes()),
            Param::I64(i) => out.extend_from_slice(&i.to_be_bytes()),
            Param::F32(f) => out.extend_from_slice(&f.to_be_bytes()),
            Param::F64(f) => out.extend_from_slice(&f.to_be_bytes()),
            Param::Bytes(b) => out.extend_from_slice(b),
            Param::Str(s) | Param::TextForm(s) => out.extend_from_slice(s.as_bytes()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_ty: &Type) -> bool {
        // `param` chose the encoding for the declared type already.
        true
    }

    fn encode_format(&self, _ty: &Type) -> Format {
        match self {
            Param::TextForm(_) => Format::Text,
            _ => Format::Binary,
        }
    }

    to_sql_checked!();
}

/// Whether values of `ty` travel as plain UTF-8 in the binary format.
fn is_text_like(ty: &Type) -> bool {
    matches!(
        *ty,
        Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::UNKNOWN | Type::XML
    ) || matches!(ty.kind(), Kind::Enum(_))
        || ty.name() == "citext"
}

/// Converts parameter `$n` to what the statement declares for it, or says why it cannot.
pub(super) fn param(n: usize, value: &Value, ty: &Type) -> Result<Param, String> {
    let ty = base_type(ty);
    let wrong = |what: &str| format!("${n}: {what} cannot be given as {}", ty.name());
    Ok(match value {
        Value::Null => Param::Null,
        Value::Int(i) => match *ty {
            Type::INT8 => Param::I64(*i),
            Type::INT4 => Param::I32(fits(n, *i, ty)?),
            Type::INT2 => Param::I16(fits(n, *i, ty)?),
            Type::FLOAT8 => Param::F64(*i as f64),
            Type::FLOAT4 => Param::F32(*i as f32),
            Type::BOOL => match i {
                0 | 1 => Param::Bool(*i == 1),
                _ => return Err(format!("${n}: {i} is not a bool; give 0 or 1")),
            },
            Type::BYTEA => return Err(wrong("an integer")),
            _ if is_text_like(ty) => Param::Str(i.to_string()),
            _ => Param::TextForm(i.to_string()),
        },
        Value::Float(f) => match *ty {
            Type::FLOAT8 => Param::F64(*f),
            Type::FLOAT4 => {
                let narrowed = *f as f32;
                if f.is_finite() && !narrowed.is_finite() {
                    return Err(format!("${n}: {f} does not fit float4"));
                }
                Param::F32(narrowed)
            }
            Type::INT2 | Type::INT4 | Type::INT8 => {
                return Err(format!(
                    "${n}: {f} is not an integer ({} wants one)",
                    ty.name()
                ));
            }
            Type::BOOL | Type::BYTEA => return Err(wrong("a float")),
            _ if is_text_like(ty) => Param::Str(f.to_string()),
            _ => Param::TextForm(f.to_string()),
        },
        Value::Text(t) => match *ty {
            Type::BYTEA => Param::Bytes(t.as_bytes().to_vec()),
            _ if is_text_like(ty) => Param::Str(t.clone()),
            _ => Param::TextForm(t.clone()),
        },
        Value::Blob(b) => match *ty {
            Type::BYTEA => Param::Bytes(b.clone()),
            _ if is_text_like(ty) => Param::Str(
                String::from_utf8(b.clone()).map_err(|_| wrong("a blob that is not UTF-8"))?,
            ),
            _ => return Err(wrong("a blob")),
        },
    })
}

fn fits<T: TryFrom<i64>>(n: usize, i: i64, ty: &Type) -> Result<T, String> {
    T::try_from(i).map_err(|_| format!("${n}: {i} does not fit {}", ty.name()))
}

/// A domain's underlying type (the server describes domain parameters by the domain).
fn base_type(ty: &Type) -> &Type {
    match ty.kind() {
        Kind::Domain(base) => base_type(base),
        _ => ty,
    }
}

/// One value of a result row, converted as it is read.
pub(super) struct Cell(pub(super) Value);

impl<'a> FromSql<'a> for Cell {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> Result<Self, BoxError> {
        value(base_type(ty), raw).map(Cell)
    }

    fn from_sql_null(_ty: &Type) -> Result<Self, BoxError> {
        Ok(Cell(Value::Null))
    }

    fn accepts(ty: &Type) -> bool {
        readable(base_type(ty))
    }
}

/// Whether updraft reads values of `ty` (anything else: the query is refused with a hint
/// to cast the column to text).
pub(super) fn readable(ty: &Type) -> bool {
    let ty = base_type(ty);
    is_text_like(ty)
        || matches!(
            *ty,
            Type::BOOL
                | Type::INT2
                | Type::INT4
                | Type::INT8
                | Type::OID
                | Type::FLOAT4
                | Type::FLOAT8
                | Type::BYTEA
                | Type::CHAR
                | Type::JSON
                | Type::JSONB
                | Type::UUID
                | Type::NUMERIC
                | Type::DATE
                | Type::TIME
                | Type::TIMESTAMP
                | Type::TIMESTAMPTZ
                | Type::INTERVAL
                | Type::VOID
        )
}

fn value(ty: &Type, raw: &[u8]) -> Result<Value, BoxError> {
    Ok(match *ty {
        // What `SELECT f()` of a function returning nothing gives.
        Type::VOID => Value::Null,
        Type::BOOL => Value::Int(i64::from(bool::from_sql(ty, raw)?)),
        Type::INT2 => Value::Int(i16::from_sql(ty, raw)?.into()),
        Type::INT4 => Value::Int(i32::from_sql(ty, raw)?.into()),
        Type::INT8 => Value::Int(i64::from_sql(ty, raw)?),
        Type::OID => Value::Int(u32::from_sql(ty, raw)?.into()),
        Type::FLOAT4 => Value::Float(f32::from_sql(ty, raw)?.into()),
        Type::FLOAT8 => Value::Float(f64::from_sql(ty, raw)?),
        Type::BYTEA => Value::Blob(raw.to_vec()),
        Type::CHAR => Value::Text(String::from_utf8_lossy(raw).into_owned()),
        Type::JSON => Value::Text(std::str::from_utf8(raw)?.to_owned()),
        // jsonb's binary form is a version byte (1), then the text.
        Type::JSONB => Value::Text(std::str::from_utf8(raw.get(1..).unwrap_or_default())?.into()),
        Type::UUID => Value::Text(uuid::Uuid::from_sql(ty, raw)?.hyphenated().to_string()),
        Type::NUMERIC => Value::Text(numeric(raw)?),
        Type::DATE => Value::Text(date(raw)?),
        Type::TIME => Value::Text(NaiveTime::from_sql(ty, raw)?.to_string()),
        Type::TIMESTAMP => Value::Text(timestamp(raw, false)?),
        Type::TIMESTAMPTZ => Value::Text(timestamp(raw, true)?),
        Type::INTERVAL => Value::Text(interval(raw)?),
        _ => Value::Text(std::str::from_utf8(raw)?.to_owned()),
    })
}

/// The `N` bytes at `at` of a binary value.
fn be<const N: usize>(raw: &[u8], at: usize) -> Result<[u8; N], BoxError> {
    raw.get(at..at + N)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| "a value is shorter than its type".into())
}

/// The server's epoch for dates and times.
fn epoch() -> NaiveDateTime {
    NaiveDate::from_ymd_opt(2000, 1, 1)
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .unwrap_or_default()
}

/// `YYYY-MM-DD`, or `infinity` / `-infinity`.
fn date(raw: &[u8]) -> Result<String, BoxError> {
    let days = i32::from_be_bytes(be(raw, 0)?);
    match days {
        i32::MAX => return Ok("infinity".into()),
        i32::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let date = epoch()
        .date()
        .checked_add_signed(chrono::Duration::days(days.into()))
        .ok_or("a date out of range")?;
    Ok(date.format("%Y-%m-%d").to_string())
}

/// ISO 8601: `2026-12-07T06:22:09.123456` (with `Z` for timestamptz, which the server
/// keeps in UTC), or `infinity` / `-infinity`.
fn timestamp(raw: &[u8], utc: bool) -> Result<String, BoxError> {
    let micros = i64::from_be_bytes(be(raw, 0)?);
    match micros {
        i64::MAX => return Ok("infinity".into()),
        i64::MIN => return Ok("-infinity".into()),
        _ => {}
    }
    let at = epoch()
        .checked_add_signed(chrono::Duration::microseconds(micros))
        .ok_or("a timestamp out of range")?;
    Ok(if utc {
        DateTime::<Utc>::from_naive_utc_and_offset(at, Utc)
            .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
    } else {
        at.format("%Y-%m-%dT%H:%M:%S%.f").to_string()
    })
}

/// ISO 8601 duration: `P1Y2M3DT4H5M6.5S` (`PT0S` for zero).
fn interval(raw: &[u8]) -> Result<String, BoxError> {
    let micros = i64::from_be_bytes(be(raw, 0)?);
    let days = i32::from_be_bytes(be(raw, 8)?);
    let months = i32::from_be_bytes(be(raw, 12)?);
    let mut out = String::from("P");
    let (years, months) = (months / 12, months % 12);
    for (n, unit) in [(years, 'Y'), (months, 'M'), (days, 'D')] {
        if n != 0 {
            let _ = write!(out, "{n}{unit}");
        }
    }
    if micros != 0 {
        out.push('T');
        let (hours, rest) = (micros / 3_600_000_000, micros % 3_600_000_000);
        let (minutes, rest) = (rest / 60_000_000, rest % 60_000_000);
        for (n, unit) in [(hours, 'H'), (minutes, 'M')] {
            if n != 0 {
                let _ = write!(out, "{n}{unit}");
            }
        }
        if rest != 0 {
            let seconds = format!("{:.6}", rest as f64 / 1e6);
            let seconds = seconds.trim_end_matches('0').trim_end_matches('.');
            let _ = write!(out, "{seconds}S");
        }
    }
    if out == "P" {
        out.push_str("T0S");
    }
    Ok(out)
}

/// A numeric's decimal string, as the server prints it (`-12.3400`, `NaN`, `Infinity`).
fn numeric(raw: &[u8]) -> Result<String, BoxError> {
    let ndigits =
        usize::try_from(i16::from_be_bytes(be(raw, 0)?)).map_err(|_| "a negative digit count")?;
    let weight = i32::from(i16::from_be_bytes(be(raw, 2)?));
    let sign = u16::from_be_bytes(be(raw, 4)?);
    let dscale =
        usize::try_from(i16::from_be_bytes(be(raw, 6)?)).map_err(|_| "a negative scale")?;
    match sign {
        0xC000 => return Ok("NaN".into()),
        0xD000 => return Ok("Infinity".into()),
        0xF000 => return Ok("-Infinity".into()),
        _ => {}
    }
    let digits = (0..ndigits)
        .map(|i| be(raw, 8 + 2 * i).map(i16::from_be_bytes))
        .collect::<Result<Vec<_>, _>>()?;
    // Base-10000 digits: digits[i] is worth 10000^(weight - i).
    let digit_at = |power: i32| -> i16 {
        usize::try_from(weight - power)
            .ok()
            .and_then(|i| digits.get(i).copied())
            .unwrap_or(0)
    };
    let mut out = String::new();
    if sign == 0x4000 {
        out.push('-');
    }
    if weight < 0 {
        out.push('0');
    } else {
        let _ = write!(out, "{}", digit_at(weight));
        for power in (0..weight).rev() {
            let _ = write!(out, "{:04}", digit_at(power));
        }
    }
    if dscale > 0 {
        out.push('.');
        let mut fraction = String::new();
        let mut power = -1;
        while fraction.len() < dscale {
            let _ = write!(fraction, "{:04}", digit_at(power));
            power -= 1;
        }
        fraction.truncate(dscale);
        out.push_str(&fraction);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn numeric_bytes(ndigits: i16, weight: i16, sign: u16, dscale: i16, digits: &[i16]) -> Vec<u8> {
        let mut raw = Vec::new();
        for v in [ndigits, weight, sign as i16, dscale] {
            raw.extend_from_slice(&v.to_be_bytes());
        }
        for d in digits {
            raw.extend_from_slice(&d.to_be_bytes());
        }
        raw
    }

    #[test]
    fn numerics_print_as_the_server_does() {
        // 12345.678 = 1|2345|6780, weight 1, scale 3
        assert_eq!(
            numeric(&numeric_bytes(3, 1, 0, 3, &[1, 2345, 6780])).unwrap(),
            "12345.678"
        );
        // -0.0012 (scale 4): digit 12 at 10000^-1
        assert_eq!(
            numeric(&numeric_bytes(1, -1, 0x4000, 4, &[12])).unwrap(),
            "-0.0012"
        );
        // 100000000 = 1|0000|0000 stored as [1], weight 2
        assert_eq!(
            numeric(&numeric_bytes(1, 2, 0, 0, &[1])).unwrap(),
            "100000000"
        );
        assert_eq!(numeric(&numeric_bytes(0, 0, 0, 2, &[])).unwrap(), "0.00");
        assert_eq!(
            numeric(&numeric_bytes(0, 0, 0xC000, 0, &[])).unwrap(),
            "NaN"
        );
    }

    #[test]
    fn intervals_are_iso_8601() {
        let raw = |micros: i64, days: i32, months: i32| {
            let mut r = micros.to_be_bytes().to_vec();
            r.extend_from_slice(&days.to_be_bytes());
            r.extend_from_slice(&months.to_be_bytes());
            r
        };
        assert_eq!(
            interval(&raw(4 * 3_600_000_000 + 5 * 60_000_000 + 6_500_000, 3, 14)).unwrap(),
            "P1Y2M3DT4H5M6.5S"
        );
        assert_eq!(interval(&raw(0, 0, 0)).unwrap(), "PT0S");
    }

    #[test]
    fn parameters_fit_their_declared_type_or_say_why_not() {
        let e = param(2, &Value::Int(3_000_000_000), &Type::INT4).unwrap_err();
        assert_eq!(e, "$2: 3000000000 does not fit int4");
        assert!(matches!(
            param(1, &Value::Int(7), &Type::INT2),
            Ok(Param::I16(7))
        ));
        let e = param(1, &Value::Int(2), &Type::BOOL).unwrap_err();
        assert!(e.contains("0 or 1"), "{e}");
        let e = param(3, &Value::Float(2.5), &Type::INT8).unwrap_err();
        assert!(e.starts_with("$3: 2.5 is not an integer"), "{e}");
        assert!(matches!(
            param(1, &Value::Text("12.50".into()), &Type::NUMERIC),
            Ok(Param::TextForm(t)) if t == "12.50"
        ));
        assert!(matches!(
            param(1, &Value::Int(5), &Type::TEXT),
            Ok(Param::Str(t)) if t == "5"
        ));
        let e = param(1, &Value::Blob(vec![1]), &Type::JSONB).unwrap_err();
        assert!(e.contains("a blob cannot be given as jsonb"), "{e}");
    }
}
