//! The console's one stylesheet and one script, compiled in and served
//! from `/ui/static/` (the Content-Security-Policy admits only these).

use axum::extract::Path;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

const CSS: &str = include_str!("../../templates/console/console.css");
const JS: &str = include_str!("../../templates/console/console.js");

pub async fn serve(Path(file): Path<String>) -> Response {
    let (ctype, body) = match file.as_str() {
        "console.css" => ("text/css; charset=utf-8", CSS),
        "console.js" => ("text/javascript; charset=utf-8", JS),
        _ => return (StatusCode::NOT_FOUND, "no such file").into_response(),
    };
    (
        [
            (header::CONTENT_TYPE, ctype),
            (header::CACHE_CONTROL, "public, max-age=300"),
        ],
        body,
    )
        .into_response()
}
