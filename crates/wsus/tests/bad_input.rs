//! Hostile and broken answers: every parser returns a typed error and never panics.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::spec_message;
use patchbay_wsus::messages::{
    get_auth_config, get_authorization_cookie, get_config_data, get_cookie, get_revision_id_list,
    get_update_data,
};
use patchbay_wsus::{BlobError, DEFAULT_MAX_BLOB_BYTES, MalformedXml, WsusError, update_xml};
use proptest::prelude::*;

fn xml_error(result: Result<impl std::fmt::Debug, WsusError>) -> MalformedXml {
    match result {
        Err(WsusError::Xml { source, .. }) => source,
        other => panic!("expected an XML error, got {other:?}"),
    }
}

fn cookie_response(inner: &str) -> String {
    format!(
        r#"<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetCookieResponse xmlns="http://www.microsoft.com/SoftwareDistribution"><GetCookieResult>{inner}</GetCookieResult></GetCookieResponse></soap:Body></soap:Envelope>"#
    )
}

#[test]
fn dtds_are_refused() {
    let billion_laughs = r#"<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol9 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
]>
<soap:Envelope xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/"><soap:Body><GetCookieResponse><GetCookieResult><Expiration>&lol9;</Expiration></GetCookieResult></GetCookieResponse></soap:Body></soap:Envelope>"#;
    let error = xml_error(get_cookie::parse_response(billion_laughs.as_bytes()));
    assert!(matches!(error, MalformedXml::DocType { .. }), "{error:?}");
    assert!(error.to_string().contains("DTD"), "{error}");

    let external = r#"<?xml version="1.0"?><!DOCTYPE foo [<!ENTITY xxe SYSTEM "file:///etc/passwd">]><GetAuthConfigResponse>&xxe;</GetAuthConfigResponse>"#;
    assert!(matches!(
        xml_error(get_auth_config::parse_response(external.as_bytes())),
        MalformedXml::DocType { .. }
    ));
}

#[test]
fn undeclared_entities_are_refused() {
    let body = cookie_response("<Expiration>&xxe;</Expiration><EncryptedData>AQID</EncryptedData>");
    assert!(matches!(
        xml_error(get_cookie::parse_response(body.as_bytes())),
        MalformedXml::UnknownEntity { name, .. } if name == "xxe"
    ));
    // Character references are fine.
    let body = cookie_response(
        "<Expiration>2030-01-01T00:00:00&#90;</Expiration><EncryptedData>AQ&#x49;D</EncryptedData>",
    );
    assert_eq!(
        get_cookie::parse_response(body.as_bytes())
            .unwrap()
            .encrypted_data,
        [1, 2, 3]
    );
}

#[test]
fn broken_documents_are_reported() {
    let full = cookie_response(
        "<Expiration>2030-01-01T00:00:00Z</Expiration><EncryptedData>AQID</EncryptedData>",
    );
    let unterminated = &full[..full.len() - 30];
    assert!(matches!(
        xml_error(get_cookie::parse_response(unterminated.as_bytes())),
        MalformedXml::Truncated { .. } | MalformedXml::Syntax { .. }
    ));
    let mismatched = full.replace("</GetCookieResult>", "</GetCookieResul>");
    assert!(matches!(
        xml_error(get_cookie::parse_response(mismatched.as_bytes())),
        MalformedXml::Syntax { .. }
    ));
    let two_roots = format!("{full}{full}");
    assert!(matches!(
        xml_error(get_cookie::parse_response(two_roots.as_bytes())),
        MalformedXml::Syntax { .. }
    ));
    assert_eq!(
        xml_error(get_cookie::parse_response(b"")),
        MalformedXml::NoRoot
    );
    assert_eq!(
        xml_error(get_cookie::parse_response(b"<!-- nothing -->")),
        MalformedXml::NoRoot
    );
    assert!(matches!(
        xml_error(get_cookie::parse_response(b"<a>\xFF\xFE</a>")),
        MalformedXml::NotUtf8 { offset: 3 }
    ));
    let deep = format!("{}{}", "<a>".repeat(10_000), "</a>".repeat(10_000));
    assert!(matches!(
        xml_error(get_cookie::parse_response(deep.as_bytes())),
        MalformedXml::TooDeep { limit: 256, .. }
    ));
    // A UTF-8 byte-order mark is fine.
    let with_bom = [b"\xEF\xBB\xBF".as_slice(), full.as_bytes()].concat();
    assert!(get_cookie::parse_response(&with_bom).is_ok());
}

#[test]
fn wrong_root_elements_are_reported() {
    let html = b"<html><head><title>502 Bad Gateway</title></head></html>";
    let error = get_config_data::parse_response(html).unwrap_err();
    assert!(
        matches!(&error, WsusError::UnexpectedElement { found, expected: "GetConfigDataResponse", .. } if found == "html")
    );
    assert!(error.to_string().contains("<html>"), "{error}");
    // Another operation's answer.
    let other = spec_message("get_cookie_response.xml").replace("</soap:Body>", "");
    let other = format!(
        "<soap:Envelope xmlns:soap=\"http://schemas.xmlsoap.org/soap/envelope/\"><soap:Body>{other}</soap:Body></soap:Envelope>"
    );
    assert!(get_cookie::parse_response(other.as_bytes()).is_ok());
    assert!(matches!(
        get_revision_id_list::parse_response(other.as_bytes()),
        Err(WsusError::UnexpectedElement { .. })
    ));
}

#[test]
fn garbage_base64_is_reported() {
    let body = cookie_response(
        "<Expiration>2030-01-01T00:00:00Z</Expiration><EncryptedData>not*base64!</EncryptedData>",
    );
    let error = get_cookie::parse_response(body.as_bytes()).unwrap_err();
    assert!(
        matches!(
            &error,
            WsusError::Invalid {
                element: "EncryptedData",
                ..
            }
        ),
        "{error:?}"
    );

    let auth = r#"<GetAuthorizationCookieResponse><GetAuthorizationCookieResult><PlugInId>DssTargeting</PlugInId><CookieData>@@@@</CookieData></GetAuthorizationCookieResult></GetAuthorizationCookieResponse>"#;
    assert!(matches!(
        get_authorization_cookie::parse_response(auth.as_bytes()),
        Err(WsusError::Invalid {
            element: "CookieData",
            ..
        })
    ));

    let update = r#"<GetUpdateDataResponse><GetUpdateDataResult><updates><ServerSyncUpdateData>
        <Id><UpdateID>0fa1201d-4330-4fa8-8ae9-b877473b6441</UpdateID><RevisionNumber>1</RevisionNumber></Id>
        <XmlUpdateBlobCompressed>%%%</XmlUpdateBlobCompressed></ServerSyncUpdateData></updates></GetUpdateDataResult></GetUpdateDataResponse>"#;
    match get_update_data::parse_response(update.as_bytes(), DEFAULT_MAX_BLOB_BYTES) {
        Err(WsusError::Blob {
            update,
            source: BlobError::Base64 { .. },
        }) => {
            assert_eq!(update.update_id, "0fa1201d-4330-4fa8-8ae9-b877473b6441");
        }
        other => panic!("{other:?}"),
    }
    let not_a_cab = update.replace("%%%", "PHhtbC8+");
    assert!(matches!(
        get_update_data::parse_response(not_a_cab.as_bytes(), DEFAULT_MAX_BLOB_BYTES),
        Err(WsusError::Blob {
            source: BlobError::NotCabinet,
            ..
        })
    ));
}

#[test]
fn long_values_are_clipped_in_errors() {
    let long = "x".repeat(10_001);
    let body = cookie_response(&format!(
        "<Expiration>2030-01-01T00:00:00Z</Expiration><EncryptedData>{long}</EncryptedData>"
    ));
    let error = get_cookie::parse_response(body.as_bytes()).unwrap_err();
    assert!(error.to_string().len() < 400, "{error}");
}

const SPEC_RESPONSES: &[&str] = &[
    "get_auth_config_response.xml",
    "get_authorization_cookie_response.xml",
    "get_cookie_response.xml",
    "get_config_data_response.xml",
    "get_revision_id_list_response.xml",
    "get_update_data_response.xml",
    "fault_invalid_cookie.xml",
];

/// Runs every parser on a body; only panics matter here.
fn parse_everything(body: &[u8]) {
    let _ = get_auth_config::parse_response(body);
    let _ = get_authorization_cookie::parse_response(body);
    let _ = get_cookie::parse_response(body);
    let _ = get_config_data::parse_response(body);
    let _ = get_revision_id_list::parse_response(body);
    let _ = get_update_data::parse_response(body, 1 << 20);
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = update_xml::parse(text);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
        parse_everything(&body);
    }

    #[test]
    fn cut_and_damaged_spec_messages_never_panic(
        which in 0..SPEC_RESPONSES.len(),
        cut in any::<usize>(),
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 0..6),
    ) {
        let mut body = spec_message(SPEC_RESPONSES[which]).into_bytes();
        body.truncate(cut % (body.len() + 1));
        for (at, byte) in edits {
            if !body.is_empty() {
                let at = at % body.len();
                body[at] = byte;
            }
        }
        parse_everything(&body);
    }

    #[test]
    fn xml_like_text_never_panics(text in "[<>/=\"a-zA-Z:&;#x0-9 !\\[\\]-]{0,300}") {
        parse_everything(text.as_bytes());
    }
}
