use countersign::store::audit::verify_export;
use countersign::store::postgres;
use countersign::store::trail::ExportFormat;

use crate::{Pg, sqlite_export};

/// Where two byte strings first differ, with a little context, for a
/// readable failure.
fn first_difference(a: &[u8], b: &[u8]) -> Option<String> {
    let at = a
        .iter()
        .zip(b)
        .position(|(x, y)| x != y)
        .or_else(|| (a.len() != b.len()).then_some(a.len().min(b.len())))?;
    let show = |s: &[u8]| {
        String::from_utf8_lossy(&s[at.saturating_sub(80)..(at + 80).min(s.len())]).into_owned()
    };
    Some(format!(
        "at byte {at}:\n  postgres: {}\n  sqlite:   {}",
        show(a),
        show(b)
    ))
}

#[tokio::test]
async fn the_ndjson_and_csv_exports_of_a_seeded_chain_equal_sqlites_for_the_same_events() {
    // Enough events for many 64 KiB chunks and every kind of escaping.
    let events = 3_000;
    let Some(pg) = Pg::seeded("exports_equal", events).await else {
        return;
    };
    let twin = pg.sqlite_twin(events).await;
    for format in [ExportFormat::Ndjson, ExportFormat::Csv] {
        let from_pg = pg.export(format).await;
        let from_sqlite = sqlite_export(&twin, format).await;
        assert!(
            from_pg.len() > 500_000,
            "{format:?}: {} bytes",
            from_pg.len()
        );
        if let Some(diff) = first_difference(&from_pg, &from_sqlite) {
            panic!("{format:?} exports differ {diff}");
        }
        let report = verify_export(&from_pg[..], pg.signer.verifying_key())
            .unwrap()
            .expect("the export verifies offline");
        assert_eq!(report.events, events);
    }
}

#[tokio::test]
async fn both_backends_verify_the_same_chain_to_the_same_report() {
    let events = 1_000;
    let Some(pg) = Pg::seeded("verify_same_report", events).await else {
        return;
    };
    let twin = pg.sqlite_twin(events).await;
    let key = pg.signer.verifying_key();
    let p = postgres::trail::verify(&pg.pool, key)
        .await
        .unwrap()
        .unwrap();
    let s = countersign::store::trail::verify(&twin, key)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            p.events,
            p.signatures,
            p.head_seq,
            p.last_signed_seq,
            &p.head_hash
        ),
        (
            s.events,
            s.signatures,
            s.head_seq,
            s.last_signed_seq,
            &s.head_hash
        )
    );
    assert_eq!((p.events, p.signatures), (1_000, 16));
}

#[tokio::test]
async fn an_empty_trail_exports_and_verifies_as_sqlites_does() {
    let Some(pg) = Pg::new("exports_empty").await else {
        return;
    };
    let twin = pg.sqlite_twin(0).await;
    for format in [ExportFormat::Ndjson, ExportFormat::Csv] {
        assert_eq!(
            pg.export(format).await,
            sqlite_export(&twin, format).await,
            "{format:?}"
        );
    }
    let report = postgres::trail::verify(&pg.pool, pg.signer.verifying_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((report.events, report.head_seq), (0, 0));
}

#[tokio::test]
async fn an_export_whose_reader_leaves_early_stops_and_the_pool_stays_usable() {
    let Some(pg) = Pg::seeded("exports_reader_leaves", 3_000).await else {
        return;
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel(1);
    let pool = pg.pool.clone();
    let task =
        tokio::spawn(async move { postgres::trail::export(&pool, ExportFormat::Ndjson, tx).await });
    rx.recv().await.expect("a first chunk").unwrap();
    drop(rx);
    task.await
        .unwrap()
        .expect("a reader leaving is not an error");
    // Every connection of the pool still answers.
    for _ in 0..8 {
        let one: i32 = sqlx::query_scalar("SELECT 1")
            .fetch_one(&pg.pool)
            .await
            .unwrap();
        assert_eq!(one, 1);
    }
    let report = postgres::trail::verify(&pg.pool, pg.signer.verifying_key())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(report.events, 3_000);
}
