//! How a request to the API server failed: the error every stage of the source shares, at the
//! bottom of its imports.

use crate::wire::frame;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("request failed: {0}")]
    Transport(#[source] kube::Error),
    #[error("reading the response failed: {0}")]
    Body(String),
    /// A `Status` answer (HTTP error, or an in-stream ERROR frame).
    #[error("API server answered {code}: {message}")]
    Status {
        code: u16,
        reason: String,
        message: String,
        /// An expired `continue` answer carries a fresh token.
        continue_token: Option<String>,
    },
}

impl ApiError {
    /// 410 Gone: the resourceVersion or continue token is older than the server keeps.
    pub fn is_gone(&self) -> bool {
        matches!(self, ApiError::Status { code: 410, .. })
    }

    /// 422 Invalid: the server refused the request's options (for a streaming list: the
    /// WatchList feature is off, or the server predates it).
    pub fn is_invalid(&self) -> bool {
        matches!(self, ApiError::Status { code: 422, .. })
    }

    pub fn from_status_body(code: u16, body: &[u8]) -> ApiError {
        match frame::parse_status(body) {
            Ok(s) => ApiError::Status {
                code: s.code.and_then(|c| u16::try_from(c).ok()).unwrap_or(code),
                reason: s.reason.unwrap_or_default().into_owned(),
                message: s.message.unwrap_or_default().into_owned(),
                continue_token: s.continue_token.map(|c| c.into_owned()),
            },
            Err(_) => ApiError::Status {
                code,
                reason: String::new(),
                message: String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned(),
                continue_token: None,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expired_continue_answer_keeps_its_fresh_token() {
        let body = br#"{"kind":"Status","apiVersion":"v1","metadata":{"continue":"abc"},"status":"Failure","message":"too old","reason":"Expired","code":410}"#;
        let e = ApiError::from_status_body(410, body);
        assert!(e.is_gone());
        match e {
            ApiError::Status { continue_token, .. } => {
                assert_eq!(continue_token.as_deref(), Some("abc"))
            }
            other => panic!("{other:?}"),
        }
    }
}
