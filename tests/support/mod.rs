#![allow(dead_code)]
pub mod daemon;
pub mod fake_apiserver;
pub mod notify;
pub mod scenario;
