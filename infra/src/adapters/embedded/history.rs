//! A shop's records of a period, for backtests: read from the time index on the store's
//! reader thread and parsed on every core while the reading goes on. Parsing, not reading, is
//! most of the work, and a million records must read in seconds.

use std::sync::Mutex;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use rusqlite::{Connection, params};

use super::store::{RECORD_COLUMNS, RecordRow, apply_alert_rows};
use crate::domain::TransactionRecord;
use crate::domain::listing::{order_micros, order_micros_after};
use crate::domain::rules::backtest::Period;
use crate::ports::{HistoryBound, HistoryRead};

/// Rows handed to a parser at a time: enough to make the hand-off cheap, few enough that the
/// parsers start early.
const ROWS_PER_CHUNK: usize = 2048;

/// A chunk of rows, numbered in the order read.
type Chunk = (usize, Vec<RecordRow>);
/// A chunk parsed: each record with whether it has alerts (whose progress is read after).
type Parsed = (usize, Vec<rusqlite::Result<(TransactionRecord, bool)>>);

/// The shop's records whose timestamp is in `period`, in the time index's order, or
/// `TooMany` past the bound.
pub(super) fn read(
    connection: &Connection,
    shop_id: &str,
    period: Period,
    bound: HistoryBound,
) -> rusqlite::Result<HistoryRead> {
    let mut statement = connection.prepare_cached(&format!(
        "SELECT {RECORD_COLUMNS} FROM transactions
          WHERE shop_id = ?1 AND occurred_at_us >= ?2 AND occurred_at_us < ?3"
    ))?;
    let from = period.from.map_or(i64::MIN, order_micros);
    let to = period.to.map_or(i64::MAX, order_micros_after);
    let mut rows = statement.query(params![shop_id, from, to])?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (sender, receiver) = sync_channel::<Chunk>(2 * cores);
    let receiver = Mutex::new(receiver);
    let (read, mut chunks) = std::thread::scope(|scope| {
        let parsers: Vec<_> = (0..cores)
            .map(|_| scope.spawn(|| parse_chunks(&receiver)))
            .collect();
        let read = send_chunks(&mut rows, bound, sender);
        let parsed: Vec<Parsed> = parsers
            .into_iter()
            .flat_map(|parser| parser.join().expect("parsing a record does not panic"))
            .collect();
        (read, parsed)
    });
    let Some(bytes) = read? else {
        return Ok(HistoryRead::TooMany);
    };
    chunks.sort_unstable_by_key(|(index, _)| *index);
    let mut records = Vec::with_capacity(chunks.iter().map(|(_, chunk)| chunk.len()).sum());
    for parsed in chunks.into_iter().flat_map(|(_, chunk)| chunk) {
        let (mut record, alerted) = parsed?;
        if alerted {
            apply_alert_rows(connection, &mut record)?;
        }
        records.push(record);
    }
    Ok(HistoryRead::Complete(records, bytes))
}

/// Reads every row to the parsers, a chunk at a time; the bytes read, or `None` past the bound.
fn send_chunks(
    rows: &mut rusqlite::Rows<'_>,
    bound: HistoryBound,
    sender: SyncSender<Chunk>,
) -> rusqlite::Result<Option<usize>> {
    let (mut count, mut bytes, mut index) = (0, 0, 0);
    let mut chunk = Vec::with_capacity(ROWS_PER_CHUNK);
    while let Some(row) = rows.next()? {
        let row = RecordRow::read(row)?;
        count += 1;
        bytes += row.json.len();
        if !bound.admits(count, bytes) {
            return Ok(None);
        }
        chunk.push(row);
        if chunk.len() == ROWS_PER_CHUNK {
            let full = std::mem::replace(&mut chunk, Vec::with_capacity(ROWS_PER_CHUNK));
            // The parsers only stop when the sender is dropped, so they are there to receive.
            let _ = sender.send((index, full));
            index += 1;
        }
    }
    let _ = sender.send((index, chunk));
    Ok(Some(bytes))
}

fn parse_chunks(receiver: &Mutex<Receiver<Chunk>>) -> Vec<Parsed> {
    let mut parsed = Vec::new();
    loop {
        let next = receiver
            .lock()
            .expect("a parser holds the lock only to receive")
            .recv();
        let Ok((index, rows)) = next else {
            return parsed;
        };
        let records = rows
            .into_iter()
            .map(|row| {
                let alerted = row.alert_count > 0;
                row.parse().map(|record| (record, alerted))
            })
            .collect();
        parsed.push((index, records));
    }
}
