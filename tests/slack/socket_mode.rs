//! Slack over Socket Mode: the service opens the WebSocket itself
//! (`apps.connections.open` with the app-level token against the fake Web
//! API, then the fake Socket Mode server of `fake_socket`), and clicks,
//! the deny form and `/audit` arrive over it with no signing secret and no
//! public URL. Every envelope is acknowledged with its id; a refresh or a
//! dropped connection is followed by a new one; an envelope delivered
//! twice is handled once.

use std::io::{BufRead, BufReader};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use countersign::config::Secret;
use serde_json::{Value, json};

use crate::fake_slack::{Failure, FakeSlack};
use crate::fake_socket::{FakeSocket, TICKET};
use crate::helpers::*;
use crate::support::*;

const APPROVE: &str = "countersign_approve";
const DENY: &str = "countersign_deny";
pub const APP_TOKEN: &str = "xapp-1-A0COUNTERSIGN-app-token-never-logged";
const AUDITORS: &str = "groups:\n  auditors: [user:carol@example.com]\nrules:\n  - name: exports\n    action: db.export\n    effect: require_approval\n";

/// The service on Socket Mode only: an app token, no signing secret.
async fn spawn_socket(policy: Option<&str>) -> (SlackTest, FakeSocket) {
    let socket = FakeSocket::start().await;
    let fake = FakeSlack::start().await;
    fake.serve_socket_mode(socket.url());
    let t = spawn_slack_on(fake, policy, |s| {
        s.slack.app_token = Some(Secret::new(APP_TOKEN));
        s.slack.signing_secret = None;
    })
    .await;
    wait_connected(&t, 1).await;
    (t, socket)
}

async fn readyz(t: &SlackTest) -> Value {
    let res = t.app.client.get(t.app.url("/readyz")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    res.json().await.unwrap()
}

/// Waits until `/readyz` shows the `n`th connection up.
async fn wait_connected(t: &SlackTest, n: u64) {
    eventually(&format!("Socket Mode connection {n}"), || async {
        let r = readyz(t).await;
        r["slack_socket_mode"]["connected"] == true
            && r["slack_socket_mode"]["connections_opened"].as_u64() >= Some(n)
    })
    .await;
}

fn object(fields: Vec<(&'static str, String)>) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(k, v)| (k.into(), json!(v)))
            .collect(),
    )
}

#[tokio::test]
async fn the_service_opens_the_socket_with_the_app_token_and_readyz_says_it_is_connected() {
    let (t, socket) = spawn_socket(None).await;
    let opened = t.fake.calls("apps.connections.open");
    assert_eq!(opened.len(), 1);
    assert_eq!(
        opened[0].authorization.as_deref(),
        Some(format!("Bearer {APP_TOKEN}").as_str()),
        "the app-level token, not the bot token"
    );
    assert_eq!(socket.connections(), 1);
    let r = readyz(&t).await;
    assert_eq!(r["status"], "ready");
    assert_eq!(r["slack_socket_mode"]["connected"], true);
    // With no signing secret there is nothing to check an HTTP request
    // from Slack with: the endpoints are not served.
    let res = t.click(BOB, APPROVE, "x").await;
    assert_eq!(res.status(), 404);
}

#[tokio::test]
async fn an_approvers_click_over_the_socket_approves_and_the_agents_long_poll_returns() {
    let (t, socket) = spawn_socket(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let poll = {
        let client = t.app.client.clone();
        let url = t.app.url(&format!("/v1/approvals/{id}?wait=30"));
        let agent = agent.clone();
        tokio::spawn(async move {
            let res = client.get(url).bearer_auth(agent).send().await.unwrap();
            res.json::<Value>().await.unwrap()
        })
    };

    let click = t.block_actions(BOB, APPROVE, &button(&post, APPROVE).unwrap());
    let envelope = socket.deliver("interactive", click);
    let ack = socket.wait_ack(&envelope).await;
    assert_eq!(
        ack,
        json!({ "envelope_id": envelope }),
        "a bare acknowledgement"
    );

    let answered = tokio::time::timeout(Duration::from_secs(15), poll)
        .await
        .expect("the long-poll is answered")
        .unwrap();
    assert_eq!(answered["status"], "approved");
    assert_eq!(
        answered["approvals"][0]["principal"],
        "user:bob@example.com"
    );
    assert_eq!(answered["approvals"][0]["channel"], "slack");
    let update = t.wait_update("approved").await;
    assert!(
        button(&update, APPROVE).is_none(),
        "buttons removed once final"
    );
    assert!(
        t.fake.calls("chat.postEphemeral").is_empty(),
        "no complaint to Bob"
    );
}

#[tokio::test]
async fn the_deny_form_over_the_socket_keeps_the_modal_open_without_a_reason_and_denies_with_one() {
    let (t, socket) = spawn_socket(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;

    let e = socket.deliver(
        "interactive",
        t.block_actions(BOB, DENY, &button(&post, DENY).unwrap()),
    );
    socket.wait_ack(&e).await;
    let opened = t.fake.wait_for("views.open", 1).await.remove(0);
    assert_eq!(opened.body["trigger_id"], format!("trigger-{BOB}"));

    let e = socket.deliver("interactive", view_submission(BOB, &opened, "   "));
    let ack = socket.wait_ack(&e).await;
    assert_eq!(ack["envelope_id"], e.as_str());
    assert_eq!(ack["payload"]["response_action"], "errors", "{ack}");
    assert!(ack["payload"]["errors"]["reason"].is_string(), "{ack}");
    assert_eq!(t.status(&id).await, "pending");

    let e = socket.deliver(
        "interactive",
        view_submission(BOB, &opened, "Not during the freeze"),
    );
    let ack = socket.wait_ack(&e).await;
    assert_eq!(
        ack,
        json!({ "envelope_id": e }),
        "an empty answer closes the modal"
    );
    eventually("the denial", || async { t.status(&id).await == "denied" }).await;
    let a: Value = t.app.approval(&agent, &id).await;
    assert_eq!(a["denial"]["principal"], "user:bob@example.com");
    assert_eq!(a["denial"]["comment"], "Not during the freeze");
    assert_eq!(a["denial"]["channel"], "slack");
}

#[tokio::test]
async fn audit_over_the_socket_is_answered_in_the_acknowledgement() {
    let (t, socket) = spawn_socket(Some(AUDITORS)).await;
    let agent = t.app.agent().await;
    let (pending, _) = t.create_posted(&agent, export_request()).await;

    let e = socket.deliver("slash_commands", object(t.audit_fields(CAROL, "pending")));
    let ack = socket.wait_ack(&e).await;
    assert_eq!(ack["envelope_id"], e.as_str());
    let answer = &ack["payload"];
    assert_eq!(answer["response_type"], "ephemeral", "{ack}");
    assert!(answer["blocks"].to_string().contains(&pending), "{answer}");

    // Who may ask is decided as over HTTP: Bob is no auditor.
    let e = socket.deliver("slash_commands", object(t.audit_fields(BOB, "pending")));
    let ack = socket.wait_ack(&e).await;
    assert!(!ack["payload"].to_string().contains(&pending), "{ack}");
}

#[tokio::test]
async fn a_click_from_the_requesters_own_slack_account_is_refused_as_over_http() {
    let (t, socket) = spawn_socket(None).await;
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let before = t.app.audit_kinds(&id).await;

    // Olivia owns the API key the agent used.
    let click = t.block_actions(OLIVIA, APPROVE, &button(&post, APPROVE).unwrap());
    let e = socket.deliver("interactive", click);
    socket.wait_ack(&e).await;

    let told = t.ephemeral_to(OLIVIA).await;
    assert!(
        told.contains("You own the API key that requested this action"),
        "{told}"
    );
    let after = t.app.audit_kinds(&id).await;
    assert_eq!(after.len(), before.len() + 1, "one audit event: {after:?}");
    assert_eq!(after.last().unwrap(), "decision.blocked");
    assert_eq!(t.decisions(&id).await, 0);
    assert_eq!(t.status(&id).await, "pending");
}

#[tokio::test]
async fn the_same_envelope_delivered_twice_is_handled_once_and_acknowledged_twice() {
    let (t, socket) = spawn_socket(None).await;
    let agent = t.app.agent().await;
    let (_, post) = t.create_posted(&agent, export_request()).await;

    // Each handling of a Deny click opens a modal: count them.
    let envelope = socket.envelope(
        "interactive",
        t.block_actions(BOB, DENY, &button(&post, DENY).unwrap()),
    );
    let id = envelope["envelope_id"].as_str().unwrap().to_string();
    socket.send(&envelope);
    let mut again = envelope.clone();
    again["retry_attempt"] = json!(1);
    again["retry_reason"] = json!("timeout");
    socket.send(&again);

    let acks = socket.wait_acks(&id, 2).await;
    assert!(
        acks.iter().all(|a| *a == json!({ "envelope_id": id })),
        "{acks:?}"
    );
    t.fake.wait_for("views.open", 1).await;
    assert_eq!(t.fake.calls("views.open").len(), 1, "handled once");
    assert!(
        countersign::store::socket_envelopes::is_claimed(&t.app.app.store, &id)
            .await
            .unwrap()
    );
}

#[tokio::test]
async fn envelopes_the_service_does_not_act_on_are_acknowledged_too() {
    let (_t, socket) = spawn_socket(None).await;
    let e = socket.deliver(
        "events_api",
        json!({ "type": "event_callback", "event": { "type": "app_mention" } }),
    );
    assert_eq!(socket.wait_ack(&e).await, json!({ "envelope_id": e }));
    let e = socket.deliver(
        "interactive",
        json!({ "type": "shortcut", "callback_id": "x" }),
    );
    assert_eq!(socket.wait_ack(&e).await, json!({ "envelope_id": e }));
    // A payload with a key twice is refused, and still acknowledged: it
    // would never read better on Slack's retry.
    socket.send_raw(
        0,
        r#"{"envelope_id":"twice-1","type":"interactive","payload":{"type":"block_actions","type":"view_submission"}}"#
            .into(),
    );
    assert_eq!(
        socket.wait_ack("twice-1").await,
        json!({ "envelope_id": "twice-1" })
    );
}

#[tokio::test]
async fn a_refresh_disconnect_makes_the_service_reconnect_and_keep_working() {
    let (t, socket) = spawn_socket(None).await;
    socket.disconnect("refresh_requested");
    socket.wait_connections(2).await;
    wait_connected(&t, 2).await;
    assert_eq!(t.fake.calls("apps.connections.open").len(), 2);
    approve_over_the_socket(&t, &socket).await;
}

/// A request posted, approved by Bob over the socket, and approved.
async fn approve_over_the_socket(t: &SlackTest, socket: &FakeSocket) {
    let agent = t.app.agent().await;
    let (id, post) = t.create_posted(&agent, export_request()).await;
    let e = socket.deliver(
        "interactive",
        t.block_actions(BOB, APPROVE, &button(&post, APPROVE).unwrap()),
    );
    socket.wait_ack(&e).await;
    eventually("the approval", || async {
        t.status(&id).await == "approved"
    })
    .await;
}

#[tokio::test]
async fn a_dropped_connection_is_reestablished() {
    let (t, socket) = spawn_socket(None).await;
    socket.drop_latest();
    socket.wait_connections(2).await;
    wait_connected(&t, 2).await;
    approve_over_the_socket(&t, &socket).await;
}

#[tokio::test]
async fn readyz_says_the_socket_is_down_while_slack_refuses_to_open_one_and_why() {
    let socket = FakeSocket::start().await;
    let fake = FakeSlack::start().await;
    fake.fail(
        "apps.connections.open",
        [Failure::SlackError("invalid_auth")],
    );
    fake.serve_socket_mode(socket.url());
    let t = spawn_slack_on(fake, None, |s| {
        s.slack.app_token = Some(Secret::new(APP_TOKEN));
        s.slack.signing_secret = None;
    })
    .await;
    eventually("the refusal to be reported", || async {
        let r = readyz(&t).await;
        r["slack_socket_mode"]["connected"] == false
            && r["slack_socket_mode"]["last_problem"]
                .as_str()
                .is_some_and(|p| p.contains("invalid_auth"))
    })
    .await;
    // The next attempt, after the backoff, gets a connection.
    wait_connected(&t, 1).await;
    assert_eq!(socket.connections(), 1);
}

#[tokio::test]
async fn without_a_signing_secret_or_an_app_token_the_service_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    configure(&mut settings, "http://127.0.0.1:9/api");
    settings.slack.signing_secret = None;
    settings.slack.app_token = None;
    let err = countersign::startup::Server::build(settings)
        .await
        .err()
        .expect("the service refuses to start")
        .to_string();
    assert!(err.contains("COUNTERSIGN_SLACK_SIGNING_SECRET"), "{err}");
    assert!(err.contains("COUNTERSIGN_SLACK_APP_TOKEN"), "{err}");
}

#[tokio::test]
async fn an_app_token_that_is_not_one_is_refused_at_start_without_being_quoted() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = settings_in(dir.path());
    configure(&mut settings, "http://127.0.0.1:9/api");
    settings.slack.app_token = Some(Secret::new("xoxb-a-bot-token-by-mistake"));
    let err = countersign::startup::Server::build(settings)
        .await
        .err()
        .expect("the service refuses to start")
        .to_string();
    assert!(err.contains("xapp-"), "{err}");
    assert!(!err.contains("xoxb-a-bot-token-by-mistake"), "{err}");
}

#[tokio::test]
async fn the_app_token_and_the_socket_ticket_never_appear_in_the_logs() {
    let socket = FakeSocket::start().await;
    let fake = FakeSlack::start().await;
    fake.fail(
        "apps.connections.open",
        [Failure::SlackError("invalid_auth")],
    );
    fake.serve_socket_mode(socket.url());
    for (id, email) in [(BOB, "bob@example.com"), (CAROL, "carol@example.com")] {
        fake.user(id, Some(email));
    }
    let dir = tempfile::tempdir().unwrap();
    let api_url = fake.api_url();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_countersign"))
        .current_dir(dir.path())
        .args(["--log-format", "json", "serve", "--listen", "127.0.0.1:0"])
        .env("RUST_LOG", "debug")
        .env("COUNTERSIGN_SLACK_BOT_TOKEN", TOKEN)
        .env("COUNTERSIGN_SLACK_APP_TOKEN", APP_TOKEN)
        .env("COUNTERSIGN_SLACK_API_URL", &api_url)
        .env("COUNTERSIGN_SLACK_CHANNEL", CHANNEL)
        .stderr(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let lines = Arc::new(Mutex::new(Vec::<String>::new()));
    let stderr = child.stderr.take().unwrap();
    let sink = lines.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            sink.lock().unwrap().push(line);
        }
    });
    let _guard = ChildGuard(child);

    // Refused once, then connected; then an envelope, a refresh and a drop.
    socket.wait_connections(1).await;
    let e = socket.deliver(
        "slash_commands",
        json!({ "team_id": TEAM, "user_id": CAROL, "text": "help" }),
    );
    socket.wait_ack(&e).await;
    socket.disconnect("refresh_requested");
    socket.wait_connections(2).await;
    socket.drop_latest();
    socket.wait_connections(3).await;
    let e = socket.deliver(
        "interactive",
        json!({ "type": "block_actions", "user": { "id": BOB }, "actions": [] }),
    );
    socket.wait_ack(&e).await;

    let logged = lines.lock().unwrap().join("\n");
    assert!(
        logged.contains("Slack Socket Mode connected"),
        "the logs were read"
    );
    for secret in [APP_TOKEN, TOKEN, TICKET] {
        assert!(!logged.contains(secret), "{secret} is in the logs");
    }
}

#[tokio::test]
async fn with_both_a_signing_secret_and_an_app_token_slack_is_taken_over_http_and_the_socket() {
    let socket = FakeSocket::start().await;
    let fake = FakeSlack::start().await;
    fake.serve_socket_mode(socket.url());
    let t = spawn_slack_on(fake, Some(AUDITORS), |s| {
        s.slack.app_token = Some(Secret::new(APP_TOKEN));
    })
    .await;
    wait_connected(&t, 1).await;
    let agent = t.app.agent().await;
    let (id, _) = t.create_posted(&agent, export_request()).await;

    let over_http = t.audit(CAROL, "pending").await;
    let e = socket.deliver("slash_commands", object(t.audit_fields(CAROL, "pending")));
    let over_socket = socket.wait_ack(&e).await["payload"].clone();
    assert!(over_http["blocks"].to_string().contains(&id));
    assert_eq!(over_http, over_socket, "one answer, whichever way it came");
}
