//! Self-tests of the fake kube-apiserver against the real-apiserver captures.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use support::fake_apiserver::{FakeApiServer, Options};

#[test]
fn starts() {
    let fake = FakeApiServer::start(Options::default());
    assert!(fake.url().starts_with("http://127.0.0.1:"));
}
