use countersign::store::postgres;

use crate::Pg;

#[tokio::test]
async fn migrations_apply_twice_and_the_second_run_changes_nothing() {
    let Some(pg) = Pg::seeded("migrations_twice", 300).await else {
        return;
    };
    let applied = || async {
        sqlx::query_as::<_, (i64, bool)>(
            "SELECT version, success FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&pg.pool)
        .await
        .unwrap()
    };
    let first = applied().await;
    // The same numbers as the SQLite migrations (migrations/NNNN_*.sql).
    let mut sqlite: Vec<i64> =
        std::fs::read_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/migrations"))
            .unwrap()
            .filter_map(|e| {
                let name = e.unwrap().file_name().into_string().unwrap();
                name.strip_suffix(".sql")?.split('_').next()?.parse().ok()
            })
            .collect();
    sqlite.sort();
    assert_eq!(first.iter().map(|(v, _)| *v).collect::<Vec<_>>(), sqlite);
    assert!(first.iter().all(|(_, ok)| *ok));

    postgres::migrate(&pg.db.url)
        .await
        .expect("a second run succeeds");
    assert_eq!(applied().await, first);
    let report = postgres::trail::verify(&pg.pool, pg.signer.verifying_key())
        .await
        .unwrap()
        .expect("the trail still verifies");
    assert_eq!(report.events, 300);
}
