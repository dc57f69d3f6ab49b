//! The initial sync in pages: the fallback when the server cannot stream lists.

use super::api::EventsApi;
use super::api_error::ApiError;
use super::diagnose::Problem;
use super::watcher::{REQUEST_TIMEOUT, Stopped, Watcher};
use crate::backoff::Backoff;
use crate::metrics::{RelistCause, Request};
use crate::wire::list_page::ListReader;

impl Watcher<'_> {
    /// Lists every event page by page (the fallback when the server cannot stream lists).
    /// Ok(None) after a failure that was waited out.
    ///
    /// The next page is fetched while the current one is written: the server renders and sends
    /// it meanwhile, so the list takes about as long as the slower of the two, not their sum.
    pub(super) async fn list_all(
        &mut self,
        backoff: &mut Backoff,
    ) -> Result<Option<String>, Stopped> {
        // The continue token of the request in flight.
        let mut token: Option<String> = None;
        let mut list_rv: Option<String> = None;
        let mut pages = 0u32;
        let mut next: Option<PageFetch> = None;
        self.progress.listing();
        self.pipeline.list_started();
        loop {
            let mut fetch = match next.take() {
                Some(f) => f,
                None => PageFetch::start(&self.api, token.clone()),
            };
            let page = tokio::select! {
                p = tokio::time::timeout(REQUEST_TIMEOUT, fetch.result()) => p,
                _ = self.shutdown.changed() => return Err(Stopped),
            };
            self.metrics.answer(Request::List, &page);
            let page = page.unwrap_or_else(|_| {
                Err(ApiError::Body(format!(
                    "no answer to a list request within {}s",
                    REQUEST_TIMEOUT.as_secs()
                )))
            });
            let body = match page {
                Ok(b) => b,
                Err(e) if e.is_gone() && token.is_some() => {
                    // The server offers a token to carry on inconsistently; starting over is
                    // simpler to reason about and the store absorbs the repeats.
                    tracing::info!("the list's continue token expired; starting the list again");
                    self.metrics.relist(RelistCause::Expired);
                    token = None;
                    list_rv = None;
                    self.pipeline.list_started();
                    continue;
                }
                Err(e) => {
                    let problem = self.api.diagnose(&e);
                    self.retry_later(backoff, "listing events", &problem)
                        .await?;
                    return Ok(None);
                }
            };
            let mut reader = match ListReader::new(&body) {
                Ok(r) => r,
                Err(e) => {
                    let cause = Problem::transient(format!("unreadable list page: {e}"));
                    self.retry_later(backoff, "listing events", &cause).await?;
                    return Ok(None);
                }
            };
            // kube-apiserver writes the list's metadata before its items: fetch the next page
            // while this one is written.
            let early_token = reader.envelope().continue_token.is_some();
            if early_token {
                token = reader
                    .envelope()
                    .continue_token
                    .as_deref()
                    .map(str::to_owned);
                next = Some(PageFetch::start(&self.api, token.clone()));
            }
            loop {
                match reader.next_item() {
                    Ok(Some(item)) => {
                        self.pipeline.offer_read_item(item);
                        if self.pipeline.batch_full() {
                            self.commit().await?;
                        }
                    }
                    Ok(None) => break,
                    Err(e) => {
                        // The items before the break are queued, and written with the next
                        // batch; the list starts over and the store skips them then.
                        let cause = Problem::transient(format!("unreadable list page: {e}"));
                        self.retry_later(backoff, "listing events", &cause).await?;
                        return Ok(None);
                    }
                }
            }
            let envelope = reader.into_envelope();
            backoff.success("listing events");
            self.progress.beat();
            pages += 1;
            if !early_token {
                token = envelope.continue_token.as_deref().map(str::to_owned);
                if token.is_some() {
                    next = Some(PageFetch::start(&self.api, token.clone()));
                }
            }
            self.commit().await?;
            if list_rv.is_none() {
                list_rv = envelope.resource_version.map(|v| v.into_owned());
            }
            if token.is_none() {
                break;
            }
        }
        let Some(rv) = list_rv else {
            let cause = Problem::transient("the list carried no resourceVersion");
            self.retry_later(backoff, "listing events", &cause).await?;
            return Ok(None);
        };
        self.pipeline.list_finished();
        let c = self.pipeline.counters();
        tracing::info!(resource_version = %rv, pages, written = c.written, skipped = c.skipped, "listed all events; watching from here");
        self.progress
            .store(self.pipeline.store_stats().to_string(), c);
        self.progress.listed(&rv);
        Ok(Some(rv))
    }
}

/// A list request running on its own task, so the next page arrives while this one is
/// written. Dropping it cancels the request.
struct PageFetch(tokio::task::JoinHandle<Result<bytes::Bytes, ApiError>>);

impl PageFetch {
    fn start(api: &EventsApi, token: Option<String>) -> PageFetch {
        let api = api.clone();
        PageFetch(tokio::spawn(async move {
            api.list_page(token.as_deref()).await
        }))
    }

    async fn result(&mut self) -> Result<bytes::Bytes, ApiError> {
        match (&mut self.0).await {
            Ok(r) => r,
            Err(e) => Err(ApiError::Body(format!("the list request failed: {e}"))),
        }
    }
}

impl Drop for PageFetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}
