//! The two backends behind one store: a value of either kind, and the
//! macro each operation uses to run its statement on the backend at hand.
//!
//! Each operation writes its SQL once per backend, side by side, and binds
//! the same values: `?` placeholders for SQLite, `$n` for PostgreSQL, and
//! on PostgreSQL the casts its native column types need. Values go in as
//! text (`$1::uuid`, `$2::timestamptz`, `$3::json`) and come out as text
//! (`id::text`, `cs_ts(created_at)`, `details::text`), so one row type
//! serves both and every time reads back as the exact `clock::fmt` text
//! that SQLite stores (migrations/postgres/0007 defines `cs_ts`).

use sqlx::{PgConnection, PgPool, SqliteConnection, SqlitePool};

/// A value for SQLite or for PostgreSQL: a pool, a connection, a
/// transaction.
#[derive(Debug, Clone)]
pub enum Db<S, P> {
    Sqlite(S),
    Postgres(P),
}

impl<S, P> Db<S, P> {
    pub fn as_ref(&self) -> Db<&S, &P> {
        match self {
            Db::Sqlite(s) => Db::Sqlite(s),
            Db::Postgres(p) => Db::Postgres(p),
        }
    }

    pub fn as_mut(&mut self) -> Db<&mut S, &mut P> {
        match self {
            Db::Sqlite(s) => Db::Sqlite(s),
            Db::Postgres(p) => Db::Postgres(p),
        }
    }

    pub fn backend(&self) -> super::postgres::Backend {
        match self {
            Db::Sqlite(_) => super::postgres::Backend::Sqlite,
            Db::Postgres(_) => super::postgres::Backend::Postgres,
        }
    }
}

/// The read pool.
pub type Pool = Db<SqlitePool, PgPool>;
/// The writer's connection: rusqlite's on SQLite, owned by the writer's
/// thread (see `super::stmt`), sqlx's on PostgreSQL.
pub type Conn = Db<rusqlite::Connection, PgConnection>;
/// A read transaction.
pub type ReadTx =
    Db<sqlx::Transaction<'static, sqlx::Sqlite>, sqlx::Transaction<'static, sqlx::Postgres>>;

impl ReadTx {
    /// The transaction's connection, for the statements inside it.
    pub fn conn(&mut self) -> Db<&mut SqliteConnection, &mut PgConnection> {
        match self {
            Db::Sqlite(t) => Db::Sqlite(&mut **t),
            Db::Postgres(t) => Db::Postgres(&mut **t),
        }
    }

    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Db::Sqlite(t) => t.commit().await,
            Db::Postgres(t) => t.commit().await,
        }
    }
}

impl Pool {
    /// A read transaction that sees one snapshot, as SQLite's does: on
    /// PostgreSQL, READ COMMITTED would give each statement its own, and a
    /// commit between reading a request's row and its events would look
    /// like tampering.
    pub async fn begin(&self) -> Result<ReadTx, sqlx::Error> {
        Ok(match self {
            Db::Sqlite(p) => Db::Sqlite(p.begin().await?),
            Db::Postgres(p) => Db::Postgres(super::postgres::read_snapshot(p, false).await?),
        })
    }
}

/// Runs one statement on the backend `$db` holds:
/// `on!(db, sqlite: "… ?", postgres: "… $1", |sql, e| query(sql).bind(x).fetch_one(e).await?)`.
/// The closure-like body is expanded once per backend, with `sql` the
/// statement for it and `e` its executor (a pool or a connection), so the
/// binds are written once and type-checked against both drivers.
macro_rules! on {
    ($db:expr, sqlite: $s:expr, postgres: $p:expr, |$sql:ident, $e:ident| $body:expr) => {
        match $db {
            $crate::store::backend::Db::Sqlite($e) => {
                let $sql = $s;
                $body
            }
            $crate::store::backend::Db::Postgres($e) => {
                let $sql = $p;
                $body
            }
        }
    };
}

/// `?` placeholders in order, as `$1, $2, …` from `start`: for dynamic
/// statements (a variable number of kinds, of rows) whose SQLite text is
/// built with `?`.
pub fn numbered(sql: &str, start: usize) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = start;
    for c in sql.chars() {
        if c == '?' {
            out.push('$');
            out.push_str(&n.to_string());
            n += 1;
        } else {
            out.push(c);
        }
    }
    out
}

/// SQLite's GLOB as a PostgreSQL regular expression (`~`), anchored: `*`
/// any run, `?` one character, `[…]` / `[^…]` a class; everything else
/// literal. Action and audit globs use it, so both backends match alike.
pub fn glob_to_regex(glob: &str) -> String {
    let chars: Vec<char> = glob.chars().collect();
    let mut re = String::from("^");
    let mut i = 0;
    while i < chars.len() {
        match chars[i] {
            '*' => re.push_str(".*"),
            '?' => re.push('.'),
            '[' => {
                // A class runs to the next `]` (a `]` right after `[` or
                // `[^` is a member); unclosed, the `[` is literal.
                let negated = chars.get(i + 1) == Some(&'^');
                let first = i + 1 + usize::from(negated);
                match (first + 1..chars.len()).find(|&j| chars[j] == ']') {
                    Some(close) => {
                        re.push('[');
                        if negated {
                            re.push('^');
                        }
                        for &m in &chars[first..close] {
                            if matches!(m, '\\' | '[' | ']' | '^') {
                                re.push('\\');
                            }
                            re.push(m);
                        }
                        re.push(']');
                        i = close;
                    }
                    None => re.push_str("\\["),
                }
            }
            c if "\\.+()|{}^$]".contains(c) => {
                re.push('\\');
                re.push(c);
            }
            c => re.push(c),
        }
        i += 1;
    }
    re.push('$');
    re
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn question_marks_are_numbered_in_order() {
        assert_eq!(
            numbered("a = ? AND b IN (?, ?)", 2),
            "a = $2 AND b IN ($3, $4)"
        );
    }

    #[test]
    fn a_glob_becomes_an_anchored_regex_with_its_metacharacters_literal() {
        assert_eq!(glob_to_regex("db.*"), "^db\\..*$");
        assert_eq!(glob_to_regex("a?c"), "^a.c$");
        assert_eq!(glob_to_regex("[ab]x"), "^[ab]x$");
        assert_eq!(glob_to_regex("[^ab]x"), "^[^ab]x$");
        assert_eq!(glob_to_regex("a(b)+$"), "^a\\(b\\)\\+\\$$");
        assert_eq!(glob_to_regex("[open"), "^\\[open$");
    }
}
