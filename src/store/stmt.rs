//! One statement of the writer, with its values bound once for both
//! backends.
//!
//! The writer runs SQLite through rusqlite on its own thread (see
//! [`super::Store::open`]) and PostgreSQL through sqlx, so a write operation
//! cannot hand both the same sqlx query. It builds a [`Stmt`] instead:
//! the SQL for each backend, as before, and the values in order, once.
//! [`WriteCtx`](super::WriteCtx) runs it on the backend at hand and reads
//! the answer back as a count, a scalar or a [`Row`].

use std::borrow::Cow;

use rusqlite::types::{ToSqlOutput, ValueRef};
use sqlx::Arguments;
use sqlx::postgres::{PgArguments, PgRow};

/// One bound value. Every column the store writes is text or an integer
/// (times, ids and JSON go in as text; see `backend`).
#[derive(Debug, Clone)]
pub enum Arg<'a> {
    Text(Option<Cow<'a, str>>),
    Int(Option<i64>),
}

impl rusqlite::ToSql for Arg<'_> {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(match self {
            Arg::Text(Some(s)) => ToSqlOutput::Borrowed(ValueRef::Text(s.as_bytes())),
            Arg::Int(Some(i)) => ToSqlOutput::Borrowed(ValueRef::Integer(*i)),
            Arg::Text(None) | Arg::Int(None) => ToSqlOutput::Borrowed(ValueRef::Null),
        })
    }
}

/// What a statement may bind: text, optional text, integers.
pub trait IntoArg<'a> {
    fn into_arg(self) -> Arg<'a>;
}

impl<'a> IntoArg<'a> for &'a str {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(Some(Cow::Borrowed(self)))
    }
}

impl<'a> IntoArg<'a> for &'a String {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(Some(Cow::Borrowed(self)))
    }
}

impl<'a> IntoArg<'a> for String {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(Some(Cow::Owned(self)))
    }
}

impl<'a> IntoArg<'a> for Option<&'a str> {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(self.map(Cow::Borrowed))
    }
}

impl<'a> IntoArg<'a> for Option<String> {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(self.map(Cow::Owned))
    }
}

impl<'a> IntoArg<'a> for &'a Option<String> {
    fn into_arg(self) -> Arg<'a> {
        Arg::Text(self.as_deref().map(Cow::Borrowed))
    }
}

impl<'a> IntoArg<'a> for i64 {
    fn into_arg(self) -> Arg<'a> {
        Arg::Int(Some(self))
    }
}

impl<'a> IntoArg<'a> for Option<i64> {
    fn into_arg(self) -> Arg<'a> {
        Arg::Int(self)
    }
}

/// A statement for both backends and its values.
#[derive(Debug)]
pub struct Stmt<'a> {
    pub sqlite: Cow<'a, str>,
    pub postgres: Cow<'a, str>,
    pub args: Vec<Arg<'a>>,
}

/// `stmt!(sqlite: "… ?", postgres: "… $1", [a, b])`: the statement and
/// its values, bound once for both backends.
macro_rules! stmt {
    (sqlite: $s:expr, postgres: $p:expr $(, [$($arg:expr),* $(,)?])? $(,)?) => {
        $crate::store::stmt::Stmt {
            sqlite: ::std::borrow::Cow::from($s),
            postgres: ::std::borrow::Cow::from($p),
            args: vec![$($($crate::store::stmt::IntoArg::into_arg($arg)),*)?],
        }
    };
}

impl Stmt<'_> {
    /// The values as sqlx's PostgreSQL arguments. Each is encoded now, so
    /// nothing borrowed outlives the statement.
    pub fn pg_args(&self) -> Result<PgArguments, sqlx::Error> {
        let mut out = PgArguments::default();
        for a in &self.args {
            match a {
                Arg::Text(t) => out.add(t.as_deref()),
                Arg::Int(i) => out.add(*i),
            }
            .map_err(sqlx::Error::Encode)?;
        }
        Ok(out)
    }
}

/// A row type the writer reads on both backends: sqlx decodes it from
/// PostgreSQL, [`Row::from_sqlite`] from a rusqlite row.
pub trait Row: for<'r> sqlx::FromRow<'r, PgRow> + Send + Unpin {
    fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self>;
}

/// A single column the writer reads on both backends.
pub trait Scalar:
    rusqlite::types::FromSql
    + for<'r> sqlx::Decode<'r, sqlx::Postgres>
    + sqlx::Type<sqlx::Postgres>
    + Send
    + Unpin
{
}

impl<T> Scalar for T where
    T: rusqlite::types::FromSql
        + for<'r> sqlx::Decode<'r, sqlx::Postgres>
        + sqlx::Type<sqlx::Postgres>
        + Send
        + Unpin
{
}

macro_rules! tuple_row {
    ($($t:ident $i:tt),+) => {
        impl<$($t: Scalar),+> Row for ($($t,)+) {
            fn from_sqlite(r: &rusqlite::Row<'_>) -> rusqlite::Result<Self> {
                Ok(($(r.get::<_, $t>($i)?,)+))
            }
        }
    };
}

tuple_row!(A 0);
tuple_row!(A 0, B 1);
tuple_row!(A 0, B 1, C 2);
tuple_row!(A 0, B 1, C 2, D 3, E 4);

/// Implements [`Row`] for a struct whose fields are its columns, read by
/// name (so the SELECT's order does not matter, only its names).
macro_rules! sqlite_row {
    ($ty:ty { $($field:ident),+ $(,)? }) => {
        impl $crate::store::stmt::Row for $ty {
            fn from_sqlite(r: &::rusqlite::Row<'_>) -> ::rusqlite::Result<Self> {
                Ok(Self { $($field: r.get(stringify!($field))?),+ })
            }
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_bound_in_order_with_nulls_for_absent_ones() {
        let s = stmt!(
            sqlite: "?, ?, ?",
            postgres: "$1, $2, $3",
            ["a", None::<String>, 7i64],
        );
        assert_eq!(s.args.len(), 3);
        assert!(matches!(&s.args[0], Arg::Text(Some(t)) if t == "a"));
        assert!(matches!(&s.args[1], Arg::Text(None)));
        assert!(matches!(&s.args[2], Arg::Int(Some(7))));
    }

    #[test]
    fn a_statement_runs_on_sqlite_with_its_values() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let s = stmt!(
            sqlite: "SELECT ? || '-' || ?, ?",
            postgres: "",
            ["x", String::from("y"), 3i64],
        );
        let (text, n): (String, i64) = conn
            .query_row(&s.sqlite, rusqlite::params_from_iter(&s.args), |r| {
                <(String, i64)>::from_sqlite(r)
            })
            .unwrap();
        assert_eq!((text.as_str(), n), ("x-y", 3));
    }
}
