//! The server's `max_allowed_packet` bounds what one statement and one value may carry.
//! Over it the server drops the connection, which the sink took for an outage: it
//! reconnected and sent the same rows again until `errors.retry_timeout`, then the
//! pipeline stopped with "broken pipe" and no word of the cause. So a value too large
//! for the server is that record's error, and rows go in statements that fit.

use mysql_async::Value as M;

/// mysql_async sends a statement's values as long data (COM_STMT_SEND_LONG_DATA) once
/// its packet would pass 16 MiB − 1; below that, in the COM_STMT_EXECUTE packet.
const MAX_PAYLOAD: usize = 16_777_215;

/// A long-data packet's header before the value's bytes: command, statement id, param.
/// Measured on MariaDB 10.11 with max_allowed_packet 16 MiB: a value of 16 777 208
/// bytes went in, one of 16 777 209 dropped the connection (7 header bytes, and the
/// packet must stay under the limit).
const LONG_DATA_HEADER: usize = 8;

/// COM_STMT_EXECUTE's header (command, statement id, flags, iteration count, the
/// new-params flag) and room to spare for the NULL bitmap's rounding.
const EXECUTE_HEADER: usize = 64;

#[derive(Debug, Clone, Copy)]
pub struct PacketLimit {
    /// The server's `@@max_allowed_packet`.
    pub max: usize,
}

impl Default for PacketLimit {
    /// MariaDB's and MySQL 8's default is 16 MiB and 64 MiB; until the server says.
    fn default() -> Self {
        Self { max: 16_777_216 }
    }
}

/// A value's bytes in COM_STMT_EXECUTE: its type (2 bytes), a length prefix, the data.
fn value_bytes(v: &M) -> usize {
    2 + match v {
        M::NULL => 0,
        M::Bytes(b) => 9 + b.len(),
        M::Float(_) => 4,
        M::Date(..) | M::Time(..) => 13,
        M::Int(_) | M::UInt(_) | M::Double(_) => 8,
    }
}

/// A row's bytes in a statement's packet.
pub fn row_bytes(row: &[M]) -> usize {
    row.iter().map(value_bytes).sum::<usize>() + row.len().div_ceil(8)
}

impl PacketLimit {
    /// Why the server cannot take `row` in any statement, if it cannot.
    pub fn refuses<'a>(&self, row: &[M], column: impl Fn(usize) -> &'a str) -> Option<String> {
        for (i, v) in row.iter().enumerate() {
            if let M::Bytes(b) = v {
                if b.len() + LONG_DATA_HEADER > self.max {
                    return Some(format!(
                        "column `{}`: the value is {} bytes, more than the server's max_allowed_packet ({}) allows; raise it on the server (SET GLOBAL max_allowed_packet) or make the value smaller",
                        column(i),
                        b.len(),
                        self.max
                    ));
                }
            }
        }
        // Below 16 MiB a row goes in the execute packet whole, which must fit too.
        let size = EXECUTE_HEADER + row_bytes(row);
        (size <= MAX_PAYLOAD && size > self.max).then(|| {
            format!(
                "the row is {size} bytes, more than the server's max_allowed_packet ({}) allows; raise it on the server (SET GLOBAL max_allowed_packet) or make the row smaller",
                self.max
            )
        })
    }

    /// The bytes of rows one multi-row statement may carry.
    pub fn statement_budget(&self) -> usize {
        self.max.min(MAX_PAYLOAD).saturating_sub(EXECUTE_HEADER)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_and_rows_over_the_packet_are_named() {
        let names = ["id", "text"];
        let columns = |i: usize| names[i];
        let limit = PacketLimit { max: 1000 };
        let row = |n: usize| vec![M::Int(1), M::Bytes(vec![b'y'; n])];
        assert!(limit.refuses(&row(100), columns).is_none());
        let why = limit.refuses(&row(993), columns).unwrap();
        assert!(
            why.contains("column `text`: the value is 993 bytes"),
            "{why}"
        );
        // Fits as long data, not in the execute packet.
        let why = limit.refuses(&row(950), columns).unwrap();
        assert!(why.starts_with("the row is"), "{why}");
        let big = PacketLimit { max: 64 << 20 };
        assert!(big.refuses(&row(30_000_000), columns).is_none());
        assert_eq!(big.statement_budget(), MAX_PAYLOAD - EXECUTE_HEADER);
        assert_eq!(limit.statement_budget(), 1000 - EXECUTE_HEADER);
    }
}
