//! A fresh PostgreSQL database per test, so suites run in parallel against
//! one server. Include it from any suite with
//! `#[path = "../support/postgres.rs"] mod postgres_support;`.
//!
//! `COUNTERSIGN_TEST_POSTGRES_URL` names a server and a database to connect
//! to for administration (e.g. `postgres://postgres@127.0.0.1:5432/postgres`;
//! `.ci/run` sets it). Each [`TestDb::create`] makes a uniquely named
//! database there and drops it when the value is dropped (best effort, with
//! `FORCE`, so connections a test left open do not keep it). Unset, the
//! tests skip with a note on stderr, and SQLite-only machines stay green.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU32, Ordering};

use sqlx::{Connection, Executor, PgConnection};

pub const URL_VAR: &str = "COUNTERSIGN_TEST_POSTGRES_URL";

pub struct TestDb {
    /// The URL of the new database: what a test gives the service.
    pub url: String,
    pub name: String,
    admin: String,
}

impl TestDb {
    /// A new empty database, or `None` (with a printed note) when
    /// `COUNTERSIGN_TEST_POSTGRES_URL` is unset. A set but unusable URL
    /// fails the test: CI must not skip silently.
    pub async fn create(test: &str) -> Option<TestDb> {
        let Ok(admin) = std::env::var(URL_VAR) else {
            eprintln!("note: {URL_VAR} is not set; skipping the PostgreSQL test {test}");
            return None;
        };
        let name = unique_name(test);
        let mut conn = PgConnection::connect(&admin)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to {URL_VAR}: {e}"));
        sweep_stale(&mut conn).await;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\"")))
            .await
            .unwrap_or_else(|e| panic!("cannot create database {name}: {e}"));
        let _ = conn.close().await;
        let mut url = url::Url::parse(&admin).expect("a URL");
        url.set_path(&format!("/{name}"));
        Some(TestDb {
            url: url.to_string(),
            name,
            admin,
        })
    }
}

impl TestDb {
    /// Keeps the database after this value is dropped (a service that is
    /// stopped and started again in one test reopens it); the next test
    /// process drops it once this one has exited ([`sweep_stale`]).
    pub fn keep(self) -> String {
        let url = self.url.clone();
        std::mem::forget(self);
        url
    }
}

/// Drops the test databases of test processes that have exited (kept
/// ones, and any a killed run left), once per process.
async fn sweep_stale(conn: &mut PgConnection) {
    static SWEPT: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    if SWEPT.swap(true, Ordering::SeqCst) {
        return;
    }
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'cs\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        // cs_<stem>_<pid>_<n>_<nanos>
        let pid = name.rsplit('_').nth(2).and_then(|p| p.parse::<u32>().ok());
        let alive = pid.is_some_and(|p| std::path::Path::new(&format!("/proc/{p}")).exists());
        if pid.is_some() && !alive {
            let _ = conn
                .execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await;
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let (admin, name) = (self.admin.clone(), self.name.clone());
        // Drop runs outside async; a thread with its own runtime can block.
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .ok()?;
            rt.block_on(async {
                let mut conn = PgConnection::connect(&admin).await.ok()?;
                conn.execute(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
                )))
                .await
                .ok()?;
                conn.close().await.ok()
            })
        })
        .join();
        if !matches!(dropped, Ok(Some(()))) {
            eprintln!("note: could not drop test database {}", self.name);
        }
    }
}

/// `cs_<test>_<pid>_<n>`: unique across the parallel tests of one process
/// and across processes; at most 63 bytes (PostgreSQL's identifier limit).
fn unique_name(test: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let stem: String = test
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(36)
        .collect();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!("cs_{stem}_{}_{n}_{nanos:x}", std::process::id())
}
