//! What the console refuses without a browser's help: state-changing
//! POSTs without the session's CSRF token, and the headers every
//! response carries.

use crate::decisions::csrf_in;
use crate::harness::{BOB, spawn};
use crate::helpers::export_request;

#[tokio::test]
async fn a_decision_posted_without_its_csrf_token_is_refused_and_changes_nothing() {
    let t = spawn().await;
    let (id, _) = t.request(export_request()).await;
    let (client, cookie) = t.http_session(BOB).await;
    let decide = t.url(&format!("/ui/requests/{id}/decide"));
    for form in [
        vec![("verdict", "approve")],
        vec![("verdict", "approve"), ("csrf", "")],
        vec![("verdict", "approve"), ("csrf", "not-the-sessions-token")],
    ] {
        let res = client
            .post(&decide)
            .header("cookie", &cookie)
            .form(&form)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 403, "{form:?}");
    }
    // Nor without a session at all, token or not.
    let res = client
        .post(&decide)
        .form(&[("verdict", "approve")])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    assert_eq!(t.status(&id).await, "pending");
    assert_eq!(t.slack.count_kind(&id, "decision.approve").await, 0);

    // Logging out needs it too; with it, the session ends.
    let logout = t.url("/ui/logout");
    let res = client
        .post(&logout)
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 403);
    let page = client
        .get(t.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200, "still signed in");
    let csrf = csrf_in(&page.text().await.unwrap());
    let res = client
        .post(&logout)
        .header("cookie", &cookie)
        .form(&[("csrf", csrf.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
    let res = client
        .get(t.url("/ui/"))
        .header("cookie", &cookie)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303, "signed out: sent to sign in");
    assert!(
        res.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/ui/login")
    );
}

#[tokio::test]
async fn every_console_response_carries_a_strict_content_security_policy() {
    let t = spawn().await;
    let (client, cookie) = t.http_session(BOB).await;
    for path in [
        "/ui/",
        "/ui/login",
        "/ui/static/console.css",
        "/ui/requests/not-an-id",
    ] {
        let res = client
            .get(t.url(path))
            .header("cookie", &cookie)
            .send()
            .await
            .unwrap();
        assert!(res.status().as_u16() < 500, "{path}: {}", res.status());
        let h = res.headers();
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("script-src 'self'"),
            "{csp}"
        );
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline"), "{csp}");
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
    }
    // The cookie itself: HttpOnly, SameSite=Strict, only for the console.
    let link = t.login_link(BOB).await;
    let res = client
        .post(&link)
        .form(&[("next", "/ui/")])
        .send()
        .await
        .unwrap();
    let set = res.headers()["set-cookie"].to_str().unwrap().to_string();
    assert!(
        set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/ui"),
        "{set}"
    );
    assert!(!set.contains("Secure"), "plain http on loopback: {set}");
}

#[tokio::test]
async fn a_link_from_another_site_is_opened_again_as_a_same_site_navigation_that_carries_the_cookie()
 {
    let t = spawn().await;
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    // What a browser sends for a click in Slack: no cookie (SameSite=Strict).
    let res = client
        .get(t.url("/ui/requests/01a1fcb0-d246-75b3-94a1-07fd18b71b2a"))
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let page = res.text().await.unwrap();
    // The path, HTML-escaped as every value is (`/` is `&#x2f;`).
    let to = "/ui/requests/01a1fcb0-d246-75b3-94a1-07fd18b71b2a".replace('/', "&#x2f;");
    assert!(
        page.contains(&format!("http-equiv=\"refresh\" content=\"0; url={to}\"")),
        "{page}"
    );
    // The same navigation from our own pages goes to sign-in.
    let res = client
        .get(t.url("/ui/requests/01a1fcb0-d246-75b3-94a1-07fd18b71b2a"))
        .header("sec-fetch-site", "same-origin")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 303);
}
