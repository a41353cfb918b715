//! The live view's static files, embedded in the binary from `web/` at the repository root, so a node
//! serves its page with no files beside it and the browser fetches nothing from anywhere else.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};

/// `(file name, content type, contents)` of every file the live view loads.
pub const LIVE_VIEW_FILES: &[(&str, &str, &str)] = &[
    ("index.html", "text/html; charset=utf-8", include_str!("../../../../web/index.html")),
    ("live.css", "text/css; charset=utf-8", include_str!("../../../../web/live.css")),
    ("live.js", "text/javascript; charset=utf-8", include_str!("../../../../web/live.js")),
    ("common.css", "text/css; charset=utf-8", include_str!("../../../../web/common.css")),
];

/// The file `name` of the live view, or a 404 naming the pages there are.
pub fn asset(name: &str) -> Response {
    match LIVE_VIEW_FILES.iter().find(|(file, _, _)| *file == name) {
        // `no-cache`: after an upgrade the page must not run an old script against a new `/cluster`.
        Some((_, content_type, body)) => {
            ([(header::CONTENT_TYPE, *content_type), (header::CACHE_CONTROL, "no-cache")], *body)
                .into_response()
        }
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no page at /{name}; try /, /cluster, /status, /metrics, /health or /snapshot\n"),
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_embedded_files_and_nothing_from_the_network() {
        for (name, _, body) in LIVE_VIEW_FILES {
            assert!(!body.contains("http://") && !body.contains("https://"), "{name} names a URL");
            assert!(!body.contains("//cdn"), "{name} loads from a CDN");
        }
        let (_, _, index) = LIVE_VIEW_FILES[0];
        for (name, _, _) in &LIVE_VIEW_FILES[1..] {
            assert!(index.contains(name), "index.html loads {name}");
        }
    }
}
