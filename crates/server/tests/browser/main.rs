//! chatd in a real browser: Debian's headless chromium, driven through chromedriver by the
//! small WebDriver client in `webdriver`, against servers started in process by the HTTP
//! suite's helpers. These tests fail, never skip, when chromium or chromedriver is missing
//! (`scripts/test.sh` installs them).
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod console;
mod cors;
mod harness;
// The HTTP suite's `spawn_app_with` and friends; what the browser tests leave unused is fine.
#[allow(dead_code)]
#[path = "../api/helpers.rs"]
mod helpers;
mod webdriver;
