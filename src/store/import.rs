//! Bulk-loading a ready-made trail into a fresh database file, faster than
//! the writer could append it: the benchmark seeds millions of events this
//! way before the service starts. Not for a live database: it turns off the
//! journal and fsync while loading (the file is scratch until complete).
//!
//! Speed: one connection, multi-row prepared INSERTs in large transactions;
//! the audit indexes are dropped first and rebuilt once at the end from the
//! migration's own SQL, which sorts once instead of updating five B-trees
//! per row.

use std::path::Path;

use anyhow::Context;
use sqlx::sqlite::{SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{Connection, Executor, Sqlite, SqliteConnection};

use super::audit::{Signer, StoredEvent};

const ROWS_PER_INSERT: usize = 128;
const COLUMNS: &str = "INSERT INTO audit_events (seq, ts, actor, request_id, action, kind, data, prev_hash, hash) VALUES ";

/// An import under way: events go in with [`append`](Self::append), each
/// call one transaction; [`finish`](Self::finish) signs the head.
pub struct TrailImport {
    conn: SqliteConnection,
    db: String,
    /// (name, SQL) of the audit indexes dropped for the load.
    indexes: Vec<(String, String)>,
    bulk_sql: String,
}

impl TrailImport {
    /// Creates (and migrates) the database at `db`, which must hold no
    /// events yet, and prepares it for loading.
    pub async fn open(db: &Path) -> anyhow::Result<Self> {
        let db_str = db.to_str().context("the database path is UTF-8")?;
        super::migrate(db_str).await?;
        let opts = SqliteConnectOptions::new()
            .filename(db)
            .journal_mode(SqliteJournalMode::Off)
            .synchronous(SqliteSynchronous::Off)
            .pragma("cache_size", "-262144")
            .pragma("temp_store", "memory");
        let mut conn = SqliteConnection::connect_with(&opts).await?;
        let indexes: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'audit_events' AND sql IS NOT NULL",
        )
        .fetch_all(&mut conn)
        .await?;
        for (name, _) in &indexes {
            conn.execute(sqlx::AssertSqlSafe(format!("DROP INDEX {name}")))
                .await?;
        }
        let bulk_sql = format!(
            "{COLUMNS}{}",
            vec!["(?, ?, ?, ?, ?, ?, ?, ?, ?)"; ROWS_PER_INSERT].join(", ")
        );
        Ok(Self {
            conn,
            db: db_str.to_string(),
            indexes,
            bulk_sql,
        })
    }

    /// Writes `rows` (already chained, in seq order) in one transaction.
    pub async fn append(&mut self, rows: &[StoredEvent]) -> anyhow::Result<()> {
        self.conn.execute("BEGIN").await?;
        let mut chunks = rows.chunks_exact(ROWS_PER_INSERT);
        for chunk in &mut chunks {
            let mut q = sqlx::query(sqlx::AssertSqlSafe(self.bulk_sql.as_str()));
            for r in chunk {
                q = bind(q, r);
            }
            q.execute(&mut self.conn).await?;
        }
        for r in chunks.remainder() {
            let q = sqlx::query(sqlx::AssertSqlSafe(format!(
                "{COLUMNS}(?, ?, ?, ?, ?, ?, ?, ?, ?)"
            )));
            bind(q, r).execute(&mut self.conn).await?;
        }
        self.conn.execute("COMMIT").await?;
        Ok(())
    }

    /// Signs the head (`seq`, `hash`), rebuilds the indexes, puts the file
    /// back in the service's durability mode and derives the tables the
    /// trail implies, so `audit verify` accepts the result.
    pub async fn finish(mut self, signer: &Signer, seq: i64, hash: &str) -> anyhow::Result<()> {
        sqlx::query(
            "INSERT INTO audit_signatures (seq, hash, signature, public_key) VALUES (?, ?, ?, ?)",
        )
        .bind(seq)
        .bind(hash)
        .bind(signer.sign(hash))
        .bind(signer.public_hex())
        .execute(&mut self.conn)
        .await?;
        for (_, sql) in &self.indexes {
            self.conn.execute(sqlx::AssertSqlSafe(sql.clone())).await?;
        }
        self.conn.execute("PRAGMA journal_mode = WAL").await?;
        self.conn.close().await?;
        super::trail::materialize_from_trail(&self.db)?;
        Ok(())
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

fn bind<'q>(q: Query<'q>, r: &'q StoredEvent) -> Query<'q> {
    q.bind(r.seq)
        .bind(&r.ts)
        .bind(&r.actor)
        .bind(&r.request_id)
        .bind(&r.action)
        .bind(&r.kind)
        .bind(&r.data)
        .bind(&r.prev_hash)
        .bind(&r.hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::audit::{GENESIS, event_hash};

    #[tokio::test]
    async fn an_imported_trail_verifies_with_its_signed_head() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("seed.db");
        let signer = Signer::load_or_create(&dir.path().join("key.pem")).unwrap();
        let (mut seq, mut head) = (0, GENESIS.to_string());
        let mut import = TrailImport::open(&db).await.unwrap();
        // Two transactions, each with full multi-row INSERTs and a remainder.
        for _ in 0..2 {
            let mut rows = vec![];
            for _ in 0..(ROWS_PER_INSERT + 3) {
                seq += 1;
                let (ts, data) = ("2026-01-01T00:00:00.000Z", format!("{{\"n\":{seq}}}"));
                let hash = event_hash(&head, seq, ts, "operator:root", "", "", "seed.event", &data);
                rows.push(StoredEvent {
                    seq,
                    ts: ts.into(),
                    actor: "operator:root".into(),
                    request_id: String::new(),
                    action: String::new(),
                    kind: "seed.event".into(),
                    data,
                    prev_hash: std::mem::replace(&mut head, hash.clone()),
                    hash,
                });
            }
            import.append(&rows).await.unwrap();
        }
        import.finish(&signer, seq, &head).await.unwrap();
        let report = crate::store::trail::verify(db.to_str().unwrap(), signer.verifying_key())
            .await
            .unwrap()
            .expect("the imported chain verifies");
        assert_eq!(report.events, seq as u64);
        assert_eq!(report.head_hash, head);
        assert_eq!(report.last_signed_seq, seq);
    }
}
