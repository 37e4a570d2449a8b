//! The WebDriver client itself, on a page of its own: each call does what it says.

use std::time::Duration;

use serde_json::json;

use crate::webdriver::Browser;

/// A page with a form, a list and a script that logs to the console.
const PAGE: &str = r#"<!doctype html><title>harness</title>
<input id="name" value="">
<button id="greet" onclick="document.getElementById('out').textContent = 'hello ' + document.getElementById('name').value">greet</button>
<p id="out" data-kind="greeting"></p>
<ul><li>one</li><li>two</li><li hidden>three</li></ul>
<script>
  console.log("a log line");
  console.error("an error line");
  setTimeout(() => { window.late = 42; }, 300);
</script>"#;

fn data_url(html: &str) -> String {
    let encoded: String =
        percent_encoding::utf8_percent_encode(html, percent_encoding::NON_ALPHANUMERIC).collect();
    format!("data:text/html;charset=utf-8,{encoded}")
}

#[tokio::test]
async fn the_webdriver_client_drives_a_headless_chromium() {
    let browser = Browser::start().await;
    let url = data_url(PAGE);
    browser.goto(&url).await;
    assert!(browser.url().await.starts_with("data:text/html"));

    // Elements: typing, clicking, reading text, attributes and properties.
    let name = browser.find("#name").await;
    name.send_keys("wor").await;
    name.clear().await;
    name.send_keys("world").await;
    assert_eq!(name.property("value").await, "world");
    assert_eq!(name.attribute("value").await.as_deref(), Some(""), "the markup's value");
    browser.find("#greet").await.click().await;
    let out = browser.find("#out").await;
    assert_eq!(out.text().await, "hello world");
    assert_eq!(out.attribute("data-kind").await.as_deref(), Some("greeting"));
    assert_eq!(out.attribute("data-missing").await, None);
    assert_eq!(out.property("textContent").await, "hello world");
    assert!(browser.try_find("#absent").await.is_none());
    let items = browser.find("ul").await.find_all("li").await;
    assert_eq!(items.len(), 3);
    assert_eq!(browser.find_all("li").await.len(), 3);
    assert!(items[0].is_displayed().await);
    assert!(!items[2].is_displayed().await, "a hidden element is not displayed");
    assert_eq!(browser.find("ul").await.find("li").await.text().await, "one");

    // Scripts: arguments (an element among them), sync and async results.
    let sum = "return arguments[0] + arguments[1].textContent.length";
    assert_eq!(browser.execute(sum, &[json!(1), out.to_arg()]).await, 12);
    let later = "const done = arguments[arguments.length - 1]; Promise.resolve(arguments[0] * 2).then(done);";
    assert_eq!(browser.execute_async(later, &[json!(21)]).await, 42);

    // Waiting: the value once true; a condition that throws meanwhile counts as false.
    assert_eq!(browser.wait_until("window.late", Duration::from_secs(5)).await, 42);
    assert_eq!(
        browser.wait_until("document.querySelector('#out').textContent", Duration::from_secs(1)).await,
        "hello world"
    );
    let waiting = tokio::spawn(async move {
        let browser = browser;
        browser.wait_until("window.never.there", Duration::from_millis(300)).await;
    });
    let failed = waiting.await.expect_err("a condition never true panics");
    let failed = failed.into_panic();
    let message = failed.downcast_ref::<String>().unwrap();
    assert!(message.contains("window.never.there") && message.contains("javascript error"), "{message}");
}

#[tokio::test]
async fn the_console_log_alerts_and_screenshots_are_observed() {
    let browser = Browser::start().await;
    browser.goto(&data_url(PAGE)).await;

    let log = browser.console_log().await;
    assert!(log.iter().any(|e| e.level == "INFO" && e.message.contains("a log line")), "{log:?}");
    assert!(log.windows(2).all(|w| 0 < w[0].timestamp && w[0].timestamp <= w[1].timestamp), "{log:?}");
    let errors = browser.console_errors().await;
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors[0].message.contains("an error line") && errors[0].source == "console-api", "{errors:?}");
    // Entries read once stay in the log, and a reload adds its own.
    browser.refresh().await;
    assert_eq!(browser.console_errors().await.len(), 2);

    assert!(!browser.alert_open().await);
    browser.execute("setTimeout(() => alert('<b>hi</b>'), 10)", &[]).await;
    let mut text = None;
    for _ in 0..100 {
        text = browser.alert_text().await;
        if text.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(text.as_deref(), Some("<b>hi</b>"), "an alert that fired stays open to be seen");
    browser.dismiss_alert().await;
    assert!(!browser.alert_open().await);

    let png = browser.screenshot().await;
    assert!(png.len() > 100);
    browser.close().await;
}
