//! The PostgreSQL backend's groundwork: which backend a `db` setting names,
//! the connection pool, migrations, the chain lock that serialises appends
//! across replicas, and (in `trail`) the full-trail reads.
//!
//! Several replicas share one database, so everything here assumes other
//! writers: appends take [`CHAIN_LOCK_KEY`] inside their transaction, and
//! the schema's triggers (migrations/postgres) refuse a rewritten trail or
//! a broken chain from any client, not only from this service.

pub mod copy;
pub mod listen;
pub mod seed;
pub mod trail;

use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};

/// Which store a `db` setting (`COUNTERSIGN_DB`) selects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// A file path, or a `sqlite:` URL.
    Sqlite,
    /// A `postgres://` or `postgresql://` URL.
    Postgres,
}

/// Classifies a `db` setting. Any other `scheme://` is refused rather than
/// taken for a file name: `mysql://…` must not quietly create a SQLite file
/// called `mysql:`.
pub fn backend_of(db: &str) -> Result<Backend, String> {
    let db = db.trim();
    if db.is_empty() {
        return Err("the database setting is empty".into());
    }
    let lower = db.to_ascii_lowercase();
    if lower.starts_with("postgres://") || lower.starts_with("postgresql://") {
        return Ok(Backend::Postgres);
    }
    if lower.starts_with("sqlite:") {
        return Ok(Backend::Sqlite);
    }
    if let Some((scheme, _)) = db.split_once("://")
        && !scheme.is_empty()
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
    {
        return Err(format!(
            "unsupported database URL scheme '{scheme}://': use a file path, sqlite:, postgres:// or postgresql://"
        ));
    }
    Ok(Backend::Sqlite)
}

/// The URL with any password removed, for messages and logs.
pub fn redacted(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.to_string()
        }
        Err(_) => "<unparsable database URL>".into(),
    }
}

/// Every statement of the service's own connections is cut off after this
/// long, so a stuck query fails (and the request gets an error) instead of
/// holding a connection forever. Full-trail reads lift it for their own
/// transaction (`SET LOCAL statement_timeout = 0`).
pub const STATEMENT_TIMEOUT: Duration = Duration::from_secs(30);
/// A lock wait longer than this fails the statement: a replica that holds
/// the chain lock commits in milliseconds, so a long wait means trouble.
pub const LOCK_TIMEOUT: Duration = Duration::from_secs(10);
/// A session left idle inside a transaction (a crashed task) is ended by
/// the server, which releases its locks, the chain lock included.
pub const IDLE_IN_TRANSACTION_TIMEOUT: Duration = Duration::from_secs(60);

/// The advisory lock every append to the trail takes, in its transaction
/// (`pg_advisory_xact_lock`), before it reads the chain head: appends from
/// all replicas form one gapless sequence. The value is "countsig" in
/// ASCII, so it is recognisable in `pg_locks`.
pub const CHAIN_LOCK_KEY: i64 = 0x636f_756e_7473_6967;

/// Connection options: the URL's, plus the service's timeouts and an
/// application name (visible in `pg_stat_activity`).
pub fn connect_options(url: &str) -> anyhow::Result<PgConnectOptions> {
    options_with(url, STATEMENT_TIMEOUT)
}

/// The options with another statement timeout (zero: none).
fn options_with(url: &str, statement_timeout: Duration) -> anyhow::Result<PgConnectOptions> {
    let ms = |d: Duration| format!("{}ms", d.as_millis());
    Ok(PgConnectOptions::from_str(url)
        .map_err(|e| anyhow::anyhow!("bad database URL '{}': {e}", redacted(url)))?
        .application_name("countersign")
        .options([
            ("statement_timeout", ms(statement_timeout)),
            ("lock_timeout", ms(LOCK_TIMEOUT)),
            (
                "idle_in_transaction_session_timeout",
                ms(IDLE_IN_TRANSACTION_TIMEOUT),
            ),
        ]))
}

/// A pool of `max_connections` (at least 1): one connection kept open, a
/// bounded wait for a free one (a request waits 3 s at most, then fails
/// closed with a 503: during an outage callers hear so quickly), idle connections closed after 10 minutes and every connection
/// renewed after 30 (so a failover or a restarted server is picked up).
pub async fn connect_with(url: &str, max_connections: u32) -> anyhow::Result<PgPool> {
    let opts = connect_options(url)?;
    PgPoolOptions::new()
        .max_connections(max_connections.max(1))
        .min_connections(1)
        .acquire_timeout(Duration::from_secs(3))
        .idle_timeout(Some(Duration::from_secs(600)))
        .max_lifetime(Some(Duration::from_secs(1800)))
        .test_before_acquire(true)
        .connect_with(opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", redacted(url)))
}

/// [`connect_with`] with the default of 16 connections.
pub async fn connect(url: &str) -> anyhow::Result<PgPool> {
    connect_with(url, 16).await
}

/// Applies migrations/postgres. sqlx holds an advisory lock while it runs,
/// so replicas starting at once apply each migration once. No statement
/// timeout here: building an index on a long trail may take minutes.
pub async fn migrate(url: &str) -> anyhow::Result<()> {
    let opts = options_with(url, Duration::ZERO)?;
    let mut conn = PgConnection::connect_with(&opts)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {}: {e}", redacted(url)))?;
    sqlx::migrate!("./migrations/postgres")
        .run(&mut conn)
        .await
        .map_err(|e| anyhow::anyhow!("cannot migrate {}: {e}", redacted(url)))?;
    conn.close().await?;
    Ok(())
}

/// A read-only transaction that sees one snapshot (REPEATABLE READ), for
/// reads that must agree with each other while replicas commit; with
/// `unbounded`, no statement timeout (whole-table checks of `audit verify`).
pub async fn read_snapshot(
    pool: &PgPool,
    unbounded: bool,
) -> sqlx::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")
        .execute(&mut *tx)
        .await?;
    if unbounded {
        sqlx::query("SET LOCAL statement_timeout = 0")
            .execute(&mut *tx)
            .await?;
    }
    Ok(tx)
}

/// The chain head as an append sees it: the last event's seq, hash and time
/// (seq 0, the genesis hash and no time for an empty trail).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainHead {
    pub seq: i64,
    pub hash: String,
    pub ts: Option<String>,
}

/// Takes the chain lock for the rest of the open transaction on `conn`,
/// then reads the head. Another replica's append waits here until this
/// transaction ends, so both cannot build on the same head.
pub async fn lock_chain_head(conn: &mut PgConnection) -> sqlx::Result<ChainHead> {
    sqlx::query("SELECT pg_advisory_xact_lock($1)")
        .bind(CHAIN_LOCK_KEY)
        .execute(&mut *conn)
        .await?;
    let head: Option<(i64, String, String)> =
        sqlx::query_as("SELECT seq, hash, ts FROM audit_events ORDER BY seq DESC LIMIT 1")
            .fetch_optional(&mut *conn)
            .await?;
    Ok(match head {
        Some((seq, hash, ts)) => ChainHead {
            seq,
            hash,
            ts: Some(ts),
        },
        None => ChainHead {
            seq: 0,
            hash: super::audit::GENESIS.into(),
            ts: None,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn postgres_urls_select_postgres_in_either_spelling() {
        for url in [
            "postgres://postgres@127.0.0.1:5432/postgres",
            "postgresql://u:p@db.internal/countersign?sslmode=require",
            "POSTGRES://host/db",
        ] {
            assert_eq!(backend_of(url), Ok(Backend::Postgres), "{url}");
        }
    }

    #[test]
    fn paths_and_sqlite_urls_select_sqlite() {
        for db in [
            "countersign.db",
            "/var/lib/countersign/countersign.db",
            "./data/db.sqlite",
            "sqlite:countersign.db",
            "sqlite://countersign.db?mode=rwc",
            "sqlite::memory:",
            "a file with spaces.db",
        ] {
            assert_eq!(backend_of(db), Ok(Backend::Sqlite), "{db}");
        }
    }

    #[test]
    fn other_schemes_and_an_empty_setting_are_refused() {
        for db in [
            "mysql://root@localhost/db",
            "http://example.com/db",
            "",
            "  ",
        ] {
            assert!(backend_of(db).is_err(), "{db:?}");
        }
    }

    #[test]
    fn a_password_never_reaches_a_message() {
        let shown = redacted("postgres://app:s3cret@db.internal:5432/countersign");
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("db.internal:5432/countersign"), "{shown}");
        assert_eq!(redacted("not a url"), "<unparsable database URL>");
    }
}
