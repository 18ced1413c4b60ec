//! The controller's JSON API, as the dashboard calls it: URLs, one-shot
//! `GET`s, and what can go wrong with them.
//!
//! The dashboard is served by the controller it talks to, so every URL is
//! relative to the page's origin. A request that cannot reach the
//! controller at all marks the connection down (the banner); one the
//! controller answers with an error is the page's to show.

use std::fmt;

use conduit_api::json::ApiError;
use serde::de::DeserializeOwned;
use wasm_bindgen::JsCast;
use wasm_bindgen_futures::JsFuture;

use crate::connection;

/// A URL of the API with its query string, parameters percent-encoded;
/// empty values are left out, so optional filters can be passed as is.
pub(crate) fn url(path: &str, params: &[(&str, &str)]) -> String {
    let query: Vec<String> = params
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={}", js_sys::encode_uri_component(v)))
        .collect();
    if query.is_empty() {
        path.to_string()
    } else {
        format!("{path}?{}", query.join("&"))
    }
}

/// Why a request produced no data.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum FetchError {
    /// The controller did not answer (down, restarting, network gone).
    Unreachable(String),
    /// The controller answered with an error.
    Api { status: u16, error: ApiError },
    /// The answer was not what this dashboard understands (a controller of
    /// another version, a proxy in between).
    Invalid(String),
}

impl fmt::Display for FetchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreachable(why) => write!(f, "cannot reach the controller: {why}"),
            Self::Api { status, error } => write!(f, "{} (HTTP {status})", error.error),
            Self::Invalid(why) => write!(f, "unexpected answer from the controller: {why}"),
        }
    }
}

/// `GET url` and decode the JSON body as `T`.
pub(crate) async fn get<T: DeserializeOwned>(url: &str) -> Result<T, FetchError> {
    let (status, body) = match fetch_text(url).await {
        Ok(answer) => answer,
        Err(why) => {
            connection::report_unreachable(&why);
            return Err(FetchError::Unreachable(why));
        }
    };
    connection::report_reachable();
    if (200..300).contains(&status) {
        return serde_json::from_str(&body).map_err(|e| FetchError::Invalid(e.to_string()));
    }
    let error = serde_json::from_str::<ApiError>(&body).unwrap_or_else(|_| ApiError {
        error: format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
        code: "internal".into(),
    });
    Err(FetchError::Api { status, error })
}

/// Why the event stream at `url` does not open: the controller's error
/// answer (an unknown Deployment, a bad filter), or `None` when it opens
/// now. The request is aborted as soon as a success status arrives, so
/// the check does not become a second stream.
pub(crate) async fn stream_error(url: &str) -> Option<FetchError> {
    let window = web_sys::window()?;
    let abort = web_sys::AbortController::new().ok()?;
    let init = web_sys::RequestInit::new();
    init.set_signal(Some(&abort.signal()));
    let response = match JsFuture::from(window.fetch_with_str_and_init(url, &init)).await {
        Ok(r) => r.dyn_into::<web_sys::Response>().ok()?,
        Err(e) => {
            let why = describe(e);
            connection::report_unreachable(&why);
            return Some(FetchError::Unreachable(why));
        }
    };
    connection::report_reachable();
    if response.ok() {
        abort.abort();
        return None;
    }
    let status = response.status();
    let text = JsFuture::from(response.text().ok()?).await.ok()?;
    let body = text.as_string().unwrap_or_default();
    Some(FetchError::Api {
        status,
        error: api_error(status, &body),
    })
}

/// The controller's error body, or one made from whatever came instead.
fn api_error(status: u16, body: &str) -> ApiError {
    serde_json::from_str::<ApiError>(body).unwrap_or_else(|_| ApiError {
        error: format!(
            "HTTP {status}: {}",
            body.chars().take(200).collect::<String>()
        ),
        code: "internal".into(),
    })
}

/// The status and body of `GET url`; `Err` when no answer came.
async fn fetch_text(url: &str) -> Result<(u16, String), String> {
    let window = web_sys::window().ok_or("no window")?;
    let response = JsFuture::from(window.fetch_with_str(url))
        .await
        .map_err(describe)?;
    let response: web_sys::Response = response.dyn_into().map_err(describe)?;
    let text = JsFuture::from(response.text().map_err(describe)?)
        .await
        .map_err(describe)?;
    Ok((response.status(), text.as_string().unwrap_or_default()))
}

/// A JavaScript error as text (`TypeError: Failed to fetch`).
pub(crate) fn describe(e: wasm_bindgen::JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.to_string()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}
