//! The full-trail reads at scale: seeds 1,000,000 events and times export
//! (NDJSON, CSV) and verify. A measurement, not a pass/fail check (the
//! machine is shared); run it in release:
//! `COUNTERSIGN_TEST_POSTGRES_URL=… cargo test --release --test postgres -- --ignored --nocapture`.

use std::time::Instant;

use countersign::store::postgres::{self, seed};
use countersign::store::trail::ExportFormat;

use crate::Pg;

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .trim()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement: seeds a million events"]
async fn a_million_events_stream_from_postgres() {
    let events: u64 = std::env::var("COUNTERSIGN_TRAIL_EVENTS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(1_000_000);
    let Some(pg) = Pg::new("throughput").await else {
        return;
    };
    let seeded = seed::seed_postgres(&pg.pool, &seed::SeedOptions::new(events), pg.signer.clone())
        .await
        .unwrap();
    println!(
        "seeded {} events ({} signatures) in {:.2} s: {:.0} events/s (load {})",
        seeded.events,
        seeded.signatures,
        seeded.seconds,
        seeded.events as f64 / seeded.seconds,
        load()
    );
    sqlx::query("VACUUM ANALYZE audit_events")
        .execute(&pg.pool)
        .await
        .unwrap();
    for round in 0..2 {
        for format in [ExportFormat::Ndjson, ExportFormat::Csv] {
            let t = Instant::now();
            let bytes = pg.export(format).await;
            let s = t.elapsed().as_secs_f64();
            println!(
                "round {round}: export {format:?}: {} bytes in {s:.2} s: {:.0} events/s (load {})",
                bytes.len(),
                events as f64 / s,
                load()
            );
        }
        let t = Instant::now();
        let report = postgres::trail::verify(&pg.pool, pg.signer.verifying_key())
            .await
            .unwrap()
            .unwrap();
        let s = t.elapsed().as_secs_f64();
        assert_eq!(report.events, events);
        println!(
            "round {round}: verify: {} events, {} signatures in {s:.2} s: {:.0} events/s (load {})",
            report.events,
            report.signatures,
            events as f64 / s,
            load()
        );
    }
}
