//! Rejects admin requests whose query string names a parameter more than once
//! (`/admin/v1/logs?model=a&model=b`): the handlers read one value per name, so a repeated name
//! would silently keep only one of them. Answered 400 `invalid_request` with `param` = the
//! repeated name, before the handler runs. Names are compared after percent-decoding
//! (`application/x-www-form-urlencoded`, WHATWG URL Standard §5.1), so `%6Dodel` counts as
//! `model`.

use std::collections::HashSet;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::http::AdminError;
use crate::input::bad;

/// The first parameter name that occurs more than once in `query`, if any.
pub fn repeated_name(query: &str) -> Option<String> {
    let mut seen = HashSet::new();
    form_urlencoded::parse(query.as_bytes()).map(|(name, _)| name).find(|name| !seen.insert(name.clone())).map(|n| n.into_owned())
}

/// Middleware: 400 for a repeated query parameter (module doc), otherwise the next layer.
pub async fn reject_repeated(request: Request, next: Next) -> Response {
    if let Some(name) = request.uri().query().and_then(repeated_name) {
        let shown: String = name.chars().take(64).collect();
        return AdminError(bad(&shown, format!("the query parameter `{shown}` is given more than once; give it once")))
            .into_response();
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_repeated_names() {
        assert_eq!(repeated_name("model=a&model=b").as_deref(), Some("model"));
        assert_eq!(repeated_name("limit=1&model=a&%6Dodel=b").as_deref(), Some("model"));
        assert_eq!(repeated_name("model=a&limit=2&status=200"), None);
        assert_eq!(repeated_name(""), None);
    }
}
