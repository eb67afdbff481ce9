//! The reminders and escalation sweepers of three replicas race for every
//! pending request, once a second each: the trail is the state, so each
//! request is still reminded `remind_max` times and escalated once, and
//! Slack hears each of them once.

use std::time::{Duration, Instant};

use crate::cluster::Cluster;
use crate::fake_slack::FakeSlack;

const POLICY: &str = "groups:\n  oncall: [user:dan@example.com]\nrules:\n  - name: exports\n    effect: require_approval\n    approvers: [user:bob@example.com]\n    remind_every: 1s\n    remind_max: 3\n    escalate_after: 2s\n    escalate_to: [group:oncall]\n    escalate_channel: C0ONCALL\n";

fn count(export: &str, id: &str, kind: &str) -> usize {
    let kind = format!("\"kind\":\"{kind}\"");
    export
        .lines()
        .filter(|l| l.contains(id) && l.contains(&kind))
        .count()
}

// Multi-threaded: the fake Slack must keep answering the replicas while
// this test blocks on the CLI's exports.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_remind_each_request_remind_max_times_and_escalate_it_once() {
    let _one = crate::SERIAL.lock().await;
    let fake = FakeSlack::start().await;
    fake.user("U0BOB", Some("bob@example.com"));
    fake.user("U0DAN", Some("dan@example.com"));
    let dir = tempfile::tempdir().unwrap();
    let policy = dir.path().join("policy.yaml");
    std::fs::write(&policy, POLICY).unwrap();
    let api_url = fake.api_url();
    let env = [
        ("COUNTERSIGN_POLICY", policy.to_str().unwrap()),
        ("COUNTERSIGN_SLACK_BOT_TOKEN", "xoxb-replicas"),
        (
            "COUNTERSIGN_SLACK_SIGNING_SECRET",
            "replicas-signing-secret",
        ),
        ("COUNTERSIGN_SLACK_API_URL", api_url.as_str()),
        ("COUNTERSIGN_SLACK_CHANNEL", "C0APPROVALS"),
    ];
    let Some(cluster) = Cluster::start("replicas_sweepers", 3, &env).await else {
        return;
    };
    let agent = cluster.agent();
    let client = reqwest::Client::new();
    let mut ids = vec![];
    for i in 0..6 {
        ids.push(cluster.replicas[i % 3].create(&client, &agent).await);
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let export = cluster.cli(&["audit", "export"]);
        let done = ids.iter().all(|id| {
            count(&export, id, "request.reminded") >= 3
                && count(&export, id, "slack.escalation_posted") >= 1
        });
        if done {
            break;
        }
        assert!(Instant::now() < deadline, "the sweeps never finished");
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // Two more sweeps of every replica: nothing is due any more.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let export = cluster.cli(&["audit", "export"]);
    for id in &ids {
        assert_eq!(count(&export, id, "request.reminded"), 3, "{id} reminders");
        assert_eq!(
            count(&export, id, "request.escalated"),
            1,
            "{id} escalations"
        );
        assert_eq!(
            count(&export, id, "slack.reminded"),
            3,
            "{id} sent reminders"
        );
        assert_eq!(
            count(&export, id, "slack.escalation_posted"),
            1,
            "{id} notices"
        );
        let notices = fake
            .successes("chat.postMessage")
            .into_iter()
            .filter(|c| c.body["channel"] == "C0ONCALL")
            .filter(|c| c.body["text"].as_str().unwrap_or("").contains(id.as_str()))
            .count();
        assert_eq!(notices, 1, "{id} was announced {notices} times");
    }
    let replies = fake
        .successes("chat.postMessage")
        .into_iter()
        .filter(|c| c.body.get("thread_ts").is_some())
        .count();
    assert_eq!(replies, 3 * ids.len(), "one thread reply per reminder");
    cluster.verified();
}
