//! The PostgreSQL backend's schema and full-trail reads, against a real
//! server: each test in its own fresh database (tests/support/postgres.rs),
//! skipped with a note when `COUNTERSIGN_TEST_POSTGRES_URL` is unset.

#[path = "../support/postgres.rs"]
mod postgres_support;

mod chain_lock;
mod cli;
mod exports;
mod migrations;
mod tampering;
mod throughput;
mod times;

use std::sync::Arc;

use bytes::Bytes;
use countersign::store::audit::Signer;
use countersign::store::postgres::{self, seed};
use countersign::store::trail::ExportFormat;
use postgres_support::TestDb;
use sqlx::{Connection, Executor, PgConnection, PgPool};

/// A migrated database with a pool, a signing key, and somewhere to put files.
pub struct Pg {
    pub db: TestDb,
    pub pool: PgPool,
    pub signer: Arc<Signer>,
    pub dir: tempfile::TempDir,
}

impl Pg {
    pub async fn new(test: &str) -> Option<Pg> {
        let db = TestDb::create(test).await?;
        postgres::migrate(&db.url).await.expect("migrations apply");
        let pool = postgres::connect_with(&db.url, 4).await.expect("a pool");
        let dir = tempfile::tempdir().unwrap();
        let signer = Arc::new(Signer::load_or_create(&dir.path().join("audit-key.pem")).unwrap());
        Some(Pg {
            db,
            pool,
            signer,
            dir,
        })
    }

    /// As [`Pg::new`], with a seeded trail of `events` events.
    pub async fn seeded(test: &str, events: u64) -> Option<Pg> {
        let pg = Pg::new(test).await?;
        seed::seed_postgres(&pg.pool, &seed::SeedOptions::new(events), pg.signer.clone())
            .await
            .expect("the trail is seeded");
        Some(pg)
    }

    /// A SQLite file holding the same seeded events, signed with the same key.
    pub async fn sqlite_twin(&self, events: u64) -> String {
        let db = self.dir.path().join("twin.db").display().to_string();
        seed::seed_sqlite(&db, &seed::SeedOptions::new(events), self.signer.clone())
            .await
            .expect("the SQLite twin is seeded");
        db
    }

    /// A connection of its own, as someone with psql would have.
    pub async fn psql(&self) -> PgConnection {
        PgConnection::connect(&self.db.url)
            .await
            .expect("a connection")
    }

    /// Runs statements as the database's owner, with the triggers off: what
    /// an attacker with full write access does before editing the trail.
    pub async fn tamper(&self, sql: &[&str]) {
        let mut conn = self.psql().await;
        conn.execute("SET session_replication_role = replica")
            .await
            .unwrap();
        for s in sql {
            conn.execute(sqlx::AssertSqlSafe(s.to_string()))
                .await
                .unwrap_or_else(|e| panic!("{s}: {e}"));
        }
        conn.close().await.unwrap();
    }

    pub async fn export(&self, format: ExportFormat) -> Vec<u8> {
        let (tx, rx) = tokio::sync::mpsc::channel(16);
        let pool = self.pool.clone();
        let task = tokio::spawn(async move { postgres::trail::export(&pool, format, tx).await });
        let bytes = collect(rx).await;
        task.await.unwrap().expect("the export succeeds");
        bytes
    }
}

pub async fn collect(
    mut rx: tokio::sync::mpsc::Receiver<Result<Bytes, std::io::Error>>,
) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(chunk) = rx.recv().await {
        out.extend_from_slice(&chunk.expect("a chunk"));
    }
    out
}

/// The SQLite export of a file, as `countersign audit export` streams it.
pub async fn sqlite_export(db: &str, format: ExportFormat) -> Vec<u8> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let db_owned = db.to_string();
    let task =
        tokio::spawn(async move { countersign::store::trail::export(&db_owned, format, tx).await });
    let bytes = collect(rx).await;
    task.await.unwrap().expect("the SQLite export succeeds");
    bytes
}

/// Runs statements on a SQLite file with its triggers dropped (as
/// tests/api/tamper.rs does).
pub async fn tamper_sqlite(db: &str, sql: &[&str]) {
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite:{db}"))
        .await
        .unwrap();
    for t in [
        "audit_events_no_update",
        "audit_events_no_delete",
        "audit_signatures_no_update",
        "audit_signatures_no_delete",
    ] {
        conn.execute(sqlx::AssertSqlSafe(format!("DROP TRIGGER IF EXISTS {t}")))
            .await
            .unwrap();
    }
    for s in sql {
        conn.execute(sqlx::AssertSqlSafe(s.to_string()))
            .await
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
    conn.close().await.unwrap();
}
