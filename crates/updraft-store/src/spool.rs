//! The spool of a streamed sql `load`: pushed rows wait in an unnamed temporary file (never
//! in memory) until the one commit reads them back. Every sql backend's load uses it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, Write};
use std::path::{Path, PathBuf};

use crate::sql::Value;

/// Buffer size: large enough that a chunk of rows is a few writes.
const BUFFER: usize = 256 << 10;

const NULL: u8 = 0;
const INT: u8 = 1;
const FLOAT: u8 = 2;
const TEXT: u8 = 3;
const BLOB: u8 = 4;

/// The rows of a streamed load waiting for its commit, in a spool.
pub(crate) struct PendingLoad {
    width: usize,
    rows: u64,
    /// None once a push was cut off half way (its caller went): the spool is then unusable.
    spool: Option<Spool>,
}

/// Why a push failed.
pub(crate) enum PushError {
    /// A row of the wrong width (the message names it).
    Width(String),
    /// The spool failed, or an earlier push was cut off.
    Spool(String),
}

impl PendingLoad {
    /// A load of rows of `width` values, spooled in `dir` (or the system's temporary folder).
    pub(crate) async fn start(dir: Option<PathBuf>, width: usize) -> Result<Self, String> {
        let spool = tokio::task::spawn_blocking(move || match dir {
            Some(dir) => Spool::create_in(&dir),
            None => Spool::create(),
        })
        .await
        .map_err(|e| e.to_string())?
        .map_err(|e| format!("cannot open a spool file for the load: {e}"))?;
        Ok(Self {
            width,
            rows: 0,
            spool: Some(spool),
        })
    }

    /// Adds rows, each of the load's width.
    pub(crate) async fn push(&mut self, rows: Vec<Vec<Value>>) -> Result<(), PushError> {
        if let Some((i, row)) = rows.iter().enumerate().find(|(_, r)| r.len() != self.width) {
            return Err(PushError::Width(format!(
                "row {} of the load has {} value(s) but the statement has {} parameter(s)",
                self.rows + i as u64 + 1,
                row.len(),
                self.width
            )));
        }
        let mut spool = self.spool.take().ok_or_else(cut_off)?;
        let count = rows.len() as u64;
        let spool = tokio::task::spawn_blocking(move || spool.write(&rows).map(|()| spool))
            .await
            .map_err(|e| PushError::Spool(e.to_string()))?
            .map_err(|e| PushError::Spool(format!("cannot spool the load's rows: {e}")))?;
        self.spool = Some(spool);
        self.rows += count;
        Ok(())
    }

    /// The rows pushed so far.
    pub(crate) fn rows(&self) -> u64 {
        self.rows
    }

    /// The values in a row.
    pub(crate) fn width(&self) -> usize {
        self.width
    }

    /// The spool, rewound for the commit.
    pub(crate) async fn into_reader(mut self) -> Result<SpoolReader, String> {
        let spool = self.spool.take().ok_or_else(|| match cut_off() {
            PushError::Spool(m) | PushError::Width(m) => m,
        })?;
        tokio::task::spawn_blocking(move || spool.into_reader())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| format!("cannot read the spool: {e}"))
    }
}

fn cut_off() -> PushError {
    PushError::Spool("an earlier push of this load was cut off; start the load again".into())
}

/// Rows being written to a spool.
pub(crate) struct Spool {
    file: BufWriter<File>,
}

impl Spool {
    /// A new spool in `dir` (blocking: call it off the async threads).
    pub(crate) fn create_in(dir: &Path) -> std::io::Result<Self> {
        Ok(Self {
            file: BufWriter::with_capacity(BUFFER, tempfile::tempfile_in(dir)?),
        })
    }

    /// A new spool in the system's temporary folder (blocking).
    pub(crate) fn create() -> std::io::Result<Self> {
        Ok(Self {
            file: BufWriter::with_capacity(BUFFER, tempfile::tempfile()?),
        })
    }

    /// Appends the values of `rows` (blocking).
    pub(crate) fn write(&mut self, rows: &[Vec<Value>]) -> std::io::Result<()> {
        rows.iter()
            .flatten()
            .try_for_each(|v| encode(&mut self.file, v))
    }

    /// Flushes and rewinds it for reading (blocking).
    pub(crate) fn into_reader(self) -> std::io::Result<SpoolReader> {
        let mut file = self.file.into_inner().map_err(|e| e.into_error())?;
        file.rewind()?;
        Ok(SpoolReader {
            file: BufReader::with_capacity(BUFFER, file),
        })
    }
}

/// A spool read back, value by value in the order written.
pub(crate) struct SpoolReader {
    file: BufReader<File>,
}

impl SpoolReader {
    /// The next value (blocking).
    pub(crate) fn next_value(&mut self) -> std::io::Result<Value> {
        decode(&mut self.file)
    }

    /// The next row of `width` values (blocking).
    pub(crate) fn next_row(&mut self, width: usize) -> std::io::Result<Vec<Value>> {
        (0..width).map(|_| self.next_value()).collect()
    }
}

fn encode(out: &mut impl Write, v: &Value) -> std::io::Result<()> {
    match v {
        Value::Null => out.write_all(&[NULL]),
        Value::Int(i) => {
            out.write_all(&[INT])?;
            out.write_all(&i.to_le_bytes())
        }
        Value::Float(f) => {
            out.write_all(&[FLOAT])?;
            out.write_all(&f.to_le_bytes())
        }
        Value::Text(t) => encode_bytes(out, TEXT, t.as_bytes()),
        Value::Blob(b) => encode_bytes(out, BLOB, b),
    }
}

fn encode_bytes(out: &mut impl Write, tag: u8, bytes: &[u8]) -> std::io::Result<()> {
    out.write_all(&[tag])?;
    out.write_all(&(bytes.len() as u64).to_le_bytes())?;
    out.write_all(bytes)
}

fn decode(input: &mut impl Read) -> std::io::Result<Value> {
    let mut tag = [0u8; 1];
    input.read_exact(&mut tag)?;
    let mut word = [0u8; 8];
    Ok(match tag[0] {
        NULL => Value::Null,
        INT => {
            input.read_exact(&mut word)?;
            Value::Int(i64::from_le_bytes(word))
        }
        FLOAT => {
            input.read_exact(&mut word)?;
            Value::Float(f64::from_le_bytes(word))
        }
        TEXT | BLOB => {
            input.read_exact(&mut word)?;
            let len = usize::try_from(u64::from_le_bytes(word))
                .map_err(|_| std::io::Error::other("a spooled value is too long"))?;
            let mut bytes = vec![0u8; len];
            input.read_exact(&mut bytes)?;
            if tag[0] == TEXT {
                Value::Text(String::from_utf8(bytes).map_err(std::io::Error::other)?)
            } else {
                Value::Blob(bytes)
            }
        }
        other => {
            return Err(std::io::Error::other(format!(
                "unknown spooled value tag {other}"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_come_back_as_written() {
        let rows = vec![
            vec![Value::Null, Value::Int(-7), Value::Float(2.5)],
            vec![
                Value::Text("é ☕".into()),
                Value::Blob(vec![0, 255]),
                Value::Text(String::new()),
            ],
        ];
        let mut spool = Spool::create().unwrap();
        spool.write(&rows).unwrap();
        let mut back = spool.into_reader().unwrap();
        assert_eq!(back.next_row(3).unwrap(), rows[0]);
        assert_eq!(back.next_row(3).unwrap(), rows[1]);
        assert!(back.next_value().is_err(), "the end");
    }
}
