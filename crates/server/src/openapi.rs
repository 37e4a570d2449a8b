//! The OpenAPI 3.1 description of the API, generated from the code: handlers carry
//! `#[utoipa::path]` (in `routes`), response shapes derive `ToSchema` (in `views`), and the
//! error answers here are read back from [`ApiError`]'s one table and its real responses,
//! so the document cannot promise a status, code or header the server does not send.
//!
//! Served at `GET /openapi.json`; `chatd openapi` prints the same text; `/openapi.json` at
//! the repository's root is a copy that a test keeps equal.

use std::sync::LazyLock;

use axum::http::header;
use axum::response::IntoResponse;
use utoipa::openapi::header::HeaderBuilder;
use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Type};
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};
use utoipa::{Modify, OpenApi, ToResponse};

use crate::error::ApiError;

/// The document as pretty JSON with a final newline, built once.
pub fn json() -> &'static str {
    static JSON: LazyLock<String> = LazyLock::new(|| {
        let mut text = crate::routes::ApiDoc::openapi().to_pretty_json().expect("the document serializes");
        text.push('\n');
        text
    });
    &JSON
}

/// What the parameters are. The extractors read raw strings, so that every refusal gets the
/// API's error shape; these types only describe what they accept, and no code reads them.
#[allow(dead_code)]
pub mod params {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    use utoipa::openapi::{RefOr, Schema};
    use utoipa::{IntoParams, PartialSchema, ToSchema};

    /// An application's name: 1–80 characters, not only white space, no control characters.
    #[derive(Debug)]
    pub struct AppName;

    impl PartialSchema for AppName {
        fn schema() -> RefOr<Schema> {
            let max = chatd_core::AppName::MAX_CHARS;
            let printable = r"[^\x00-\x1F\x7F-\x9F]";
            let pattern = format!(r"^{printable}*[^\s\x00-\x1F\x7F-\x9F]{printable}*$");
            let description = format!("1–{max} characters, not only white space, no control characters.");
            text(1, Some(max), &pattern, description)
        }
    }
    impl ToSchema for AppName {}

    /// A message's text: not only white space, no NUL.
    #[derive(Debug)]
    pub struct MessageText;

    impl PartialSchema for MessageText {
        fn schema() -> RefOr<Schema> {
            let max = chatd_core::MessageBody::DEFAULT_MAX_BYTES;
            let description = format!(
                "Not only white space, no NUL; at most {max} bytes of UTF-8 by default (`--max-message-bytes`), \
                 more is refused with 413."
            );
            text(1, None, r"^[^\x00]*[^\s\x00][^\x00]*$", description)
        }
    }
    impl ToSchema for MessageText {}

    /// A string schema.
    fn text(min: usize, max: Option<usize>, pattern: &str, description: String) -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(min))
            .max_length(max)
            .pattern(Some(pattern))
            .description(Some(description))
            .into()
    }

    /// The body of creating or renaming an application, as JSON or as a form. Other
    /// properties are ignored (a form key given twice is refused), so send none.
    #[derive(Debug, ToSchema)]
    #[schema(max_properties = 1)]
    pub struct NameBody {
        name: AppName,
    }

    /// The body of creating or editing a message, as JSON or as a form. Other properties
    /// are ignored (a form key given twice is refused), so send none.
    #[derive(Debug, ToSchema)]
    #[schema(max_properties = 1)]
    pub struct TextBody {
        body: MessageText,
    }

    /// `name` from the query string, for clients that send no body; a body's `name` wins.
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct NameQuery {
        name: Option<AppName>,
    }

    /// `body` from the query string, for clients that send no body; a request body's `body` wins.
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct TextQuery {
        body: Option<MessageText>,
    }

    /// `limit` and `order` of every list (SPEC §3 "Lists").
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct PageQuery {
        /// Rows per page. When more rows exist, a `Link: <…>; rel="next"` header leads on.
        #[param(minimum = 1, maximum = 1000, default = json!(100))]
        limit: Option<u32>,
        #[param(schema_with = direction)]
        order: Option<String>,
    }

    /// `asc` (the default) or `desc`.
    fn direction() -> ObjectBuilder {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .enum_values(Some(["asc", "desc"]))
            .default(Some("asc".into()))
            .description(Some("Ascending or descending by number (applications: by creation)."))
    }

    /// The keyset cursors of a list of chats or messages: exclusive bounds on the number.
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct NumberCursor {
        /// Only rows numbered above this (`0`: from the first).
        #[param(minimum = 0)]
        after: Option<i64>,
        /// Only rows numbered below this (`0`: none).
        #[param(minimum = 0)]
        before: Option<i64>,
    }

    /// The keyset cursors of the list of applications: the token of a listed application.
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct TokenCursor {
        /// Only applications created after this one.
        after: Option<String>,
        /// Only applications created before this one.
        before: Option<String>,
    }

    /// The parameters of a search (SPEC §5).
    #[derive(Debug, IntoParams)]
    #[into_params(parameter_in = Query)]
    pub struct SearchQuery {
        /// Terms split on white space, each of which must occur in a body, case- and
        /// diacritic-insensitively; a quoted part must occur as written.
        #[param(min_length = 1, max_length = 256)]
        keyword: String,
        /// Another name for `keyword`, read when `keyword` is absent.
        #[param(min_length = 1, max_length = 256)]
        q: Option<String>,
        /// Results at most.
        #[param(minimum = 1, maximum = 1000, default = json!(50))]
        limit: Option<u32>,
        /// Results to skip. The server takes any `offset + limit` up to 10000; any offset up
        /// to 9000 works with any `limit`.
        #[param(minimum = 0, maximum = 9000, default = json!(0))]
        offset: Option<u32>,
    }
}

// ------------------------------------------------------------------------- errors

/// A string schema.
fn text() -> ObjectBuilder {
    ObjectBuilder::new().schema_type(Type::String)
}

/// The JSON error answer of SPEC §3 for `codes`, with the headers it carries.
fn error_response(when: &str, codes: &[&str], headers: &[(&str, &str)]) -> Response {
    let schema = ObjectBuilder::new()
        .property("error", text().enum_values(Some(codes.to_vec())))
        .required("error")
        .property("message", text().description(Some("One readable sentence.")))
        .required("message")
        .property("field", text().description(Some("The parameter at fault, when there is one.")))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)));
    let listed = codes.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join(", ");
    let mut response = ResponseBuilder::new()
        .description(format!("{when} (`error`: {listed})"))
        .content("application/json", ContentBuilder::new().schema(Some(schema)).build());
    for (name, description) in headers {
        let header = HeaderBuilder::new().schema(Some(text())).description(Some(*description)).build();
        response = response.header(*name, header);
    }
    response.build()
}

/// The answer the server really gives for `cases`: codes from the table, headers from
/// the responses they render to.
fn answer_for<const N: usize>(when: &str, cases: [ApiError; N]) -> Response {
    let mut codes = Vec::new();
    let mut headers: Vec<(&str, &str)> = Vec::new();
    for case in cases {
        codes.push(case.parts().1);
        let sent = case.into_response();
        let documented = [
            (header::RETRY_AFTER, ("Retry-After", "Seconds to wait before retrying.")),
            (header::WWW_AUTHENTICATE, ("WWW-Authenticate", "`Bearer`")),
        ];
        for (name, doc) in documented {
            if sent.headers().contains_key(name) && !headers.contains(&doc) {
                headers.push(doc);
            }
        }
    }
    error_response(when, &codes, &headers)
}

macro_rules! error_answers {
    ($($(#[doc = $doc:literal])+ $name:ident => [$($case:expr),+ $(,)?];)+) => {
    $(
        $(#[doc = $doc])+
        #[derive(Debug)]
        pub struct $name;

        impl<'s> ToResponse<'s> for $name {
            fn response() -> (&'s str, RefOr<Response>) {
                (stringify!($name), answer_for(concat!($($doc),+).trim(), [$($case),+]).into())
            }
        }
    )+

        /// Each error answer's name and the statuses of the cases it stands for.
        #[cfg(test)]
        fn error_statuses() -> Vec<(&'static str, Vec<u16>)> {
            vec![$((stringify!($name), [$($case),+].iter().map(|c| c.parts().0.as_u16()).collect())),+]
        }
    };
}

error_answers! {
    /// Malformed JSON or form, invalid URL encoding, a parameter given twice, a path that is not UTF-8, a chat or message number that is not a positive integer, a cursor that names no listed application, or a malformed `Idempotency-Key`.
    BadRequest => [ApiError::bad_request(None, String::new())];
    /// An admin key is configured and the request does not present it as a Bearer token.
    Unauthorized => [ApiError::Unauthorized];
    /// No application has this token.
    NoApplication => [ApiError::ApplicationNotFound];
    /// No application has this token, or it has no chat with this number.
    NoChat => [ApiError::ApplicationNotFound, ApiError::ChatNotFound];
    /// No application has this token, it has no chat with this number, or the chat has no message with this number.
    NoMessage => [ApiError::ApplicationNotFound, ApiError::ChatNotFound, ApiError::MessageNotFound];
    /// The request body is over the request limit (1 MiB by default), or `body` is over the message limit (64 KiB by default).
    PayloadTooLarge => [ApiError::PayloadTooLarge { message: String::new(), field: None }];
    /// The request body is neither JSON nor a form (`application/x-www-form-urlencoded`).
    UnsupportedMediaType => [ApiError::UnsupportedMediaType];
    /// A parameter is missing, blank, too long, of the wrong JSON type or out of range; `field` names it.
    InvalidParameter => [ApiError::InvalidParameter { field: "name", message: String::new() }];
    /// The `Idempotency-Key` was sent within 24 hours with other parameters; nothing was written.
    KeyReused => [ApiError::IdempotencyKeyReused];
    /// A parameter is missing, blank, too long, of the wrong JSON type or out of range (`invalid_parameter`; `field` names it), or the `Idempotency-Key` was sent within 24 hours with other parameters (`idempotency_key_reused`); nothing was written.
    InvalidOrKeyReused => [ApiError::InvalidParameter { field: "name", message: String::new() }, ApiError::IdempotencyKeyReused];
    /// The write queue is full or too many connections are open (`overloaded`), or storage is unavailable (`unavailable`); nothing was written.
    Unavailable => [ApiError::Overloaded, ApiError::TooManyConnections, ApiError::Unavailable(String::new())];
    /// The request, body included, did not arrive and complete within the request time limit (30 s by default); a write it carried may or may not have been stored.
    RequestTimeout => [ApiError::RequestTimeout];
    /// Over the request rate of this client IP or of this application token.
    RateLimited => [ApiError::RateLimited { retry_after: 1 }];
    /// A bug; the detail is logged on the server only.
    Internal => [ApiError::Internal("".into())];
}

/// What follows for every operation from the extractors and layers they share, so that
/// single operations' attributes need not repeat it:
///
/// - a request body is read by [`Params`](crate::extract::Params): it is accepted as a form
///   as well as JSON, and can be refused with 413 (too large) or 415 (another type);
/// - a keyset list (an operation taking `after`) answers with a `Link` header when more
///   rows exist (see `routes::list_response`);
/// - any request can get 408, 429, 500 or 503;
/// - one handler serving PUT and PATCH gets an operation id per method (`update_x` and
///   `update_x_patch`);
/// - the admin key is a bearer security scheme.
#[derive(Debug)]
pub struct Common;

impl Modify for Common {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let reference = |name: &str| RefOr::Ref(utoipa::openapi::Ref::from_response_name(name));
        let everywhere = [
            ("408", RequestTimeout::response().0),
            ("429", RateLimited::response().0),
            ("500", Internal::response().0),
            ("503", Unavailable::response().0),
        ];
        let with_body = [("413", PayloadTooLarge::response().0), ("415", UnsupportedMediaType::response().0)];
        for item in openapi.paths.paths.values_mut() {
            if let (Some(put), Some(patch)) = (&item.put, &mut item.patch)
                && put.operation_id.is_some()
                && put.operation_id == patch.operation_id
            {
                patch.operation_id = put.operation_id.as_ref().map(|id| format!("{id}_patch"));
            }
            let operations =
                [&mut item.get, &mut item.put, &mut item.post, &mut item.patch, &mut item.delete];
            for operation in operations.into_iter().flatten() {
                let mut answers = everywhere.to_vec();
                if let Some(RefOr::T(body)) = operation.request_body.as_mut()
                    && let Some(json) = body.content.get("application/json").cloned()
                {
                    body.content.insert("application/x-www-form-urlencoded".to_owned(), json);
                    answers.extend(with_body);
                }
                let is_list = operation
                    .parameters
                    .iter()
                    .flatten()
                    .any(|p| matches!(p, RefOr::T(p) if p.name == "after"));
                if let (true, Some(RefOr::T(ok))) = (is_list, operation.responses.responses.get_mut("200")) {
                    let next = r#"`<…>; rel="next"`: the next page, when more rows exist."#;
                    let header = HeaderBuilder::new().schema(Some(text())).description(Some(next)).build();
                    ok.headers.insert("Link".to_owned(), RefOr::T(header));
                }
                for (status, name) in answers {
                    operation.responses.responses.entry(status.to_owned()).or_insert_with(|| reference(name));
                }
            }
        }
        let scheme = HttpBuilder::new()
            .scheme(HttpAuthScheme::Bearer)
            .description(Some("The operator's admin key (`--admin-key`); without one, listing is open."))
            .build();
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme("admin_key", SecurityScheme::Http(scheme));
        }
    }
}

#[cfg(test)]
mod tests {
    use chatd_core::{Limit, search};
    use serde_json::Value;

    /// Every operation's error answers stand under the status their cases really have.
    #[test]
    fn error_answers_are_documented_under_their_status() {
        let statuses = super::error_statuses();
        for (_, of_cases) in &statuses {
            assert!(of_cases.windows(2).all(|w| w[0] == w[1]), "one answer, one status: {statuses:?}");
        }
        let doc: Value = serde_json::from_str(super::json()).expect("the document is JSON");
        let mut checked = 0;
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for (method, operation) in item.as_object().expect("operations") {
                for (status, answer) in operation["responses"].as_object().expect("responses") {
                    let Some(reference) = answer["$ref"].as_str() else { continue };
                    let name = reference.rsplit('/').next().unwrap_or_default();
                    let (_, of_cases) = statuses.iter().find(|(n, _)| *n == name).expect("a known answer");
                    assert_eq!(status, &of_cases[0].to_string(), "{method} {path}: {name}");
                    checked += 1;
                }
            }
        }
        assert!(checked > 50, "{checked}");
    }

    /// The bounds written as literals in the parameter attributes are the code's constants.
    #[test]
    fn documented_bounds_are_the_code_s() {
        let doc: Value = serde_json::from_str(super::json()).expect("the document is JSON");
        let schema = |path: &str, name: &str| {
            let parameters = doc["paths"][path]["get"]["parameters"].as_array().expect("parameters").clone();
            parameters.into_iter().find(|p| p["name"] == name).expect("the parameter")["schema"].clone()
        };
        let list = "/applications/{token}/chats";
        assert_eq!(schema(list, "limit")["maximum"], Limit::MAX);
        assert_eq!(schema(list, "limit")["default"], Limit::DEFAULT.get());
        let found = "/applications/{token}/chats/{chat}/messages/search";
        assert_eq!(schema(found, "limit")["maximum"], search::MAX_LIMIT);
        assert_eq!(schema(found, "limit")["default"], search::DEFAULT_LIMIT);
        assert_eq!(schema(found, "offset")["maximum"], search::MAX_DEPTH - search::MAX_LIMIT);
        assert_eq!(schema(found, "keyword")["maxLength"], search::MAX_KEYWORD_CHARS);
        assert_eq!(schema(found, "q")["maxLength"], search::MAX_KEYWORD_CHARS);
    }
}
