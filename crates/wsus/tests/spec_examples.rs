//! The spec's Protocol Examples (MS-WSUSSS section 4, Samples 1, 2 and 4): our parsers read the responses, our builders write the requests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use chrono::{DateTime, Utc};
use common::{body_element, parse_tree, spec_fixture_verbatim, spec_message};
use patchbay_wsus::messages::{
    get_auth_config, get_authorization_cookie, get_config_data, get_cookie, get_revision_id_list,
    get_update_data,
};
use patchbay_wsus::{
    AuthorizationCookie, BlobError, Cookie, DEFAULT_MAX_BLOB_BYTES, ErrorCode, FaultReaction,
    Language, PROTOCOL_VERSION, SoapVersion, SyncFilter, UpdateIdentity, UpdateType, WsusError,
    update_xml,
};

fn time(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn identity(update_id: &str, revision_number: i32) -> UpdateIdentity {
    UpdateIdentity::new(update_id, revision_number).unwrap()
}

/// The base64 text of `element` somewhere in a spec message, comments and whitespace removed.
fn spec_base64(file: &str, path: &[&str]) -> Vec<u8> {
    let mut node = body_element(&spec_message(file));
    for name in path {
        node = node.child(name).clone();
    }
    STANDARD.decode(&node.text).unwrap()
}

#[test]
fn sample_1_get_auth_config() {
    let config =
        get_auth_config::parse_response(spec_message("get_auth_config_response.xml").as_bytes())
            .unwrap();
    assert_eq!(config.plugin_id, "DssTargeting");
    assert_eq!(
        config.service_url,
        "DssAuthWebService/DssAuthWebService.asmx"
    );
}

#[test]
fn sample_1_get_authorization_cookie_has_an_undecodable_trimmed_cookie() {
    // The spec trimmed CookieData to 65 base64 characters, which no encoder produces.
    let error = get_authorization_cookie::parse_response(
        spec_message("get_authorization_cookie_response.xml").as_bytes(),
    )
    .unwrap_err();
    assert!(
        matches!(
            &error,
            WsusError::Invalid {
                operation: "GetAuthorizationCookie",
                element: "CookieData",
                ..
            }
        ),
        "{error:?}"
    );
    assert!(error.to_string().contains("not base64"), "{error}");
}

#[test]
fn sample_1_get_authorization_cookie_with_a_whole_cookie() {
    // The same answer with the 64-character cookie the GetCookie request carries.
    let message =
        spec_message("get_authorization_cookie_response.xml").replace("bLUHLWP\n", "bLUHLW\n");
    let cookie = get_authorization_cookie::parse_response(message.as_bytes()).unwrap();
    assert_eq!(cookie.plugin_id, "DssTargeting");
    assert_eq!(
        cookie.cookie_data,
        spec_base64(
            "get_cookie_request.xml",
            &["authCookies", "AuthorizationCookie", "CookieData"]
        )
    );
    assert_eq!(cookie.cookie_data.len(), 48);
}

#[test]
fn sample_1_get_cookie() {
    let cookie =
        get_cookie::parse_response(spec_message("get_cookie_response.xml").as_bytes()).unwrap();
    assert_eq!(cookie.expiration, time("2006-06-08T19:32:23.7190987Z"));
    assert_eq!(cookie.encrypted_data.len(), 168);
    assert_eq!(cookie.encrypted_data[..4], [0x79, 0xdc, 0xcb, 0x9c]);
    assert!(cookie.is_expired_at(Utc::now()));
    assert!(!cookie.is_expired_at(time("2006-06-08T19:30:00Z")));
}

#[test]
fn sample_2_get_config_data() {
    let config =
        get_config_data::parse_response(spec_message("get_config_data_response.xml").as_bytes())
            .unwrap();
    assert!(config.catalog_only_sync);
    assert!(config.lazy_sync);
    assert!(!config.server_hosts_psf_files);
    assert_eq!(config.max_updates_per_request, 100);
    assert_eq!(config.new_config_anchor, "14030,2006-06-08 15:38:16.022");
    assert_eq!(config.protocol_version, None);
    assert_eq!(
        config.languages,
        vec![
            Language {
                id: 0,
                short: "all".into(),
                long: "all".into(),
                enabled: true
            },
            Language {
                id: 1033,
                short: "en".into(),
                long: "English".into(),
                enabled: false
            },
        ]
    );
}

#[test]
fn sample_2_get_revision_id_list() {
    let list = get_revision_id_list::parse_response(
        spec_message("get_revision_id_list_response.xml").as_bytes(),
    )
    .unwrap();
    assert_eq!(list.anchor, "4742,2006-05-26 18:59:26.192");
    assert_eq!(
        list.new_revisions,
        vec![
            identity("0287014e-6772-4b4d-81f7-42063ac26e8a", 100),
            identity("ff2a96fb-cc89-4e5e-83b2-7d48aa179840", 101),
        ]
    );
}

#[test]
fn sample_2_get_update_data_fails_on_the_trimmed_compressed_blob() {
    let message = spec_message("get_update_data_response.xml");
    let error =
        get_update_data::parse_response(message.as_bytes(), DEFAULT_MAX_BLOB_BYTES).unwrap_err();
    assert_eq!(
        error,
        WsusError::Blob {
            update: identity("0fa1201d-4330-4fa8-8ae9-b877473b6441", 1),
            source: BlobError::Truncated {
                expected: 2911,
                actual: 132
            },
        }
    );
    let shown = error.to_string();
    assert!(
        shown.contains("0fa1201d-4330-4fa8-8ae9-b877473b6441") && shown.contains("truncated"),
        "{shown}"
    );
}

#[test]
fn sample_2_get_update_data_with_a_whole_compressed_blob() {
    // The trimmed CAB replaced by a real one for the same revision; the rest as in the spec.
    let category_xml = r#"<upd:Update xmlns:upd="http://schemas.microsoft.com/msus/2002/12/Update"><upd:UpdateIdentity UpdateID="0fa1201d-4330-4fa8-8ae9-b877473b6441" RevisionNumber="1" /><upd:Properties UpdateType="Category" /></upd:Update>"#;
    let cab = common_cab::utf16_cab(category_xml, cab::CompressionType::MsZip);
    let message = spec_message("get_update_data_response.xml");
    let start =
        message.find("<XmlUpdateBlobCompressed>").unwrap() + "<XmlUpdateBlobCompressed>".len();
    let end = message.find("</XmlUpdateBlobCompressed>").unwrap();
    let wrapped: Vec<String> = STANDARD
        .encode(&cab)
        .as_bytes()
        .chunks(76)
        .map(|line| String::from_utf8(line.to_vec()).unwrap())
        .collect();
    let message = format!(
        "{}{}{}",
        &message[..start],
        wrapped.join("\n\n"),
        &message[end..]
    );

    let data = get_update_data::parse_response(message.as_bytes(), DEFAULT_MAX_BLOB_BYTES).unwrap();
    assert_eq!(data.updates.len(), 2);
    assert!(data.file_urls.is_empty());

    let compressed = &data.updates[0];
    assert_eq!(
        compressed.identity,
        identity("0fa1201d-4330-4fa8-8ae9-b877473b6441", 1)
    );
    assert!(compressed.was_compressed);
    assert_eq!(compressed.xml, category_xml);
    assert!(compressed.file_digests.is_empty());

    let inline = &data.updates[1];
    assert_eq!(
        inline.identity,
        identity("17e993cd-cf5a-4276-9944-6af62ff7139c", 100)
    );
    assert!(!inline.was_compressed);
    assert!(inline.xml.starts_with("<upd:Update") && inline.xml.ends_with("</upd:Update>"));
    let detectoid = inline.metadata().unwrap();
    assert_eq!(detectoid.identity, inline.identity);
    assert_eq!(detectoid.update_type, UpdateType::Detectoid);
    assert_eq!(detectoid.title(&["en"]), Some("SQL 2005 English ia64"));
    assert_eq!(detectoid.publication_state.as_deref(), Some("Published"));
    assert_eq!(detectoid.prerequisites.len(), 1);
    assert_eq!(
        detectoid.prerequisites[0].any_of,
        vec!["60916385-7546-4e9b-836e-79d65e517bab"]
    );
    assert!(!detectoid.prerequisites[0].is_category);
    assert!(detectoid.category_ids().is_empty());
    assert!(!detectoid.is_expired());
    let _ = update_xml::parse(&inline.xml).unwrap();
}

#[test]
fn sample_4_fault() {
    let message = spec_message("fault_invalid_cookie.xml");
    // Any operation's parser reports the fault; the sample answers GetDeployments.
    let error = get_config_data::parse_response(message.as_bytes()).unwrap_err();
    let WsusError::Fault(fault) = &error else {
        panic!("expected a fault, got {error:?}");
    };
    assert_eq!(fault.code, "soap:Client");
    assert!(
        fault
            .reason
            .starts_with("System.Web.Services.Protocols.SoapException: Fault occurred")
    );
    assert_eq!(fault.error_code, Some(ErrorCode::InvalidCookie));
    assert_eq!(fault.message, None);
    assert_eq!(
        fault.id.as_deref(),
        Some("247dfffd-a6b4-4a57-b9d4-2e464b668cd3")
    );
    assert_eq!(
        fault.method.as_deref(),
        Some("http://www.microsoft.com/SoftwareDistribution/GetDeployments")
    );
    assert_eq!(fault.reaction(), FaultReaction::RestartProtocol);
    let shown = error.to_string();
    assert!(
        shown.contains("InvalidCookie") && shown.contains("247dfffd"),
        "{shown}"
    );
}

#[test]
fn the_fixtures_are_verbatim_and_need_the_documented_repairs() {
    // Unrepaired, the wrapped closing tag makes the GetUpdateData sample ill-formed.
    let raw = spec_fixture_verbatim("get_update_data_response.xml");
    assert!(matches!(
        get_update_data::parse_response(raw.as_bytes(), DEFAULT_MAX_BLOB_BYTES),
        Err(WsusError::Xml { .. })
    ));
    let raw = spec_fixture_verbatim("get_auth_config_response.xml");
    assert!(get_auth_config::parse_response(raw.as_bytes()).is_ok());
}

// --- Requests: ours are structurally equal to the spec's samples. ---

fn assert_same_request(spec_file: &str, ours: &patchbay_wsus::Request) {
    let spec = body_element(&spec_message(spec_file));
    for version in [SoapVersion::Soap11, SoapVersion::Soap12] {
        let envelope = ours.envelope(version);
        let root = parse_tree(&envelope);
        assert_eq!(root.namespace.as_deref(), Some(version.namespace()));
        assert_eq!(body_element(&envelope), spec, "{spec_file} vs {envelope}");
    }
}

fn spec_cookie(file: &str, expiration: &str) -> Cookie {
    Cookie {
        expiration: time(expiration),
        encrypted_data: spec_base64(file, &["cookie", "EncryptedData"]),
    }
}

#[test]
fn requests_match_sample_1() {
    assert_same_request("get_auth_config_request.xml", &get_auth_config::request());
    assert_same_request(
        "get_authorization_cookie_request.xml",
        &get_authorization_cookie::request(
            "HemantTest.redmond.microsoft.com",
            "ADB2FE48-0B2E-451e-8FC8-44B29845B0C6",
        ),
    );
    let authorization = AuthorizationCookie {
        plugin_id: "DssTargeting".into(),
        cookie_data: spec_base64(
            "get_cookie_request.xml",
            &["authCookies", "AuthorizationCookie", "CookieData"],
        ),
    };
    assert_eq!(
        PROTOCOL_VERSION, "1.2",
        "the sample announces 1.2, as we do"
    );
    assert_same_request(
        "get_cookie_request.xml",
        &get_cookie::request(&authorization, None, PROTOCOL_VERSION),
    );
}

#[test]
fn requests_match_sample_2() {
    let cookie = spec_cookie(
        "get_config_data_request.xml",
        "2006-06-08T19:32:23.7190987Z",
    );
    assert_same_request(
        "get_config_data_request.xml",
        &get_config_data::request(&cookie, None),
    );

    let cookie = spec_cookie(
        "get_revision_id_list_request.xml",
        "2006-05-26T22:59:25.1296674Z",
    );
    let filter = SyncFilter {
        get_config: true,
        get_63_language_only: false,
        ..SyncFilter::default()
    };
    assert_same_request(
        "get_revision_id_list_request.xml",
        &get_revision_id_list::request(&cookie, &filter).unwrap(),
    );

    let cookie = spec_cookie(
        "get_update_data_request.xml",
        "2006-05-27T22:42:23.0632331Z",
    );
    let ids = [
        identity("0287014e-6772-4b4d-81f7-42063ac26e8a", 100),
        identity("36b1c48e-c741-4047-9b09-d38698ed34b3", 101),
    ];
    assert_same_request(
        "get_update_data_request.xml",
        &get_update_data::request(&cookie, &ids),
    );
}

mod common_cab {
    //! Builds the CAB a USS would send, with a compression the `cab` crate can write.

    use std::io::{Cursor, Write as _};

    pub fn utf16_cab(xml: &str, compression: cab::CompressionType) -> Vec<u8> {
        let mut content = vec![0xFF, 0xFE];
        content.extend(xml.encode_utf16().flat_map(u16::to_le_bytes));
        let mut builder = cab::CabinetBuilder::new();
        builder.add_folder(compression).add_file("blob");
        let mut writer = builder.build(Cursor::new(Vec::new())).unwrap();
        while let Some(mut file) = writer.next_file().unwrap() {
            file.write_all(&content).unwrap();
        }
        writer.finish().unwrap().into_inner()
    }
}
