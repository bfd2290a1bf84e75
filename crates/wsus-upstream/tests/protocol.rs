//! The fake upstream over plain HTTP: authorization, GetConfigData, GetRevisionIdList filters and anchors, GetUpdateData, content and SOAP 1.2.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use common::*;
use patchbay_wsus_upstream::{
    CONTENT_OPERATION, FakeUpstream, FixtureCatalog, FixtureUpdate, SERVER_SYNC_NS, SoapVersion,
    UpstreamOptions, ids,
};
use sha1::{Digest as _, Sha1};
use sha2::Sha256;

async fn sample_server() -> FakeUpstream {
    FakeUpstream::start(FixtureCatalog::sample(), UpstreamOptions::default())
        .await
        .expect("server starts")
}

fn ids_of(list: &[(String, u32)]) -> HashSet<&str> {
    list.iter().map(|(id, _)| id.as_str()).collect()
}

#[tokio::test]
async fn authorization_sequence_issues_a_cookie() {
    let server = sample_server().await;
    assert!(server.url().starts_with("http://127.0.0.1:") && server.url().ends_with('/'));

    let config = call(&server, "GetAuthConfig", "").await;
    assert_eq!(config.status, 200);
    assert!(
        config
            .header("content-type")
            .is_some_and(|value| value.starts_with("text/xml"))
    );
    let text = config.text();
    assert!(text.contains("<PlugInID>DssTargeting</PlugInID>"));
    assert!(text.contains("<ServiceUrl>DssAuthWebService/DssAuthWebService.asmx</ServiceUrl>"));
    assert!(!text.contains("<Parameter"));

    let auth = call(
        &server,
        "GetAuthorizationCookie",
        &format!(
            "<accountName>dss01.contoso.example</accountName><accountGuid>{DSS_GUID}</accountGuid>"
        ),
    )
    .await;
    let auth_text = auth.text();
    assert!(auth_text.contains(
        "<GetAuthorizationCookieResponse xmlns=\"http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService\">"
    ));
    assert!(auth_text.contains("<PlugInId>DssTargeting</PlugInId>"));
    let cookie_data = between(&auth_text, "<CookieData>", "</CookieData>").expect("CookieData");

    let cookie = call(&server, "GetCookie", &get_cookie_body(cookie_data, "1.20")).await;
    assert_eq!(cookie.status, 200, "{}", cookie.text());
    let expiration = between(&cookie.text(), "<Expiration>", "</Expiration>")
        .expect("Expiration")
        .to_owned();
    // "2006-06-08T19:32:23.7190987Z"
    assert_eq!(expiration.len(), 28, "{expiration}");
    assert!(expiration.ends_with('Z') && expiration.as_bytes()[19] == b'.');
    let expires = chrono::DateTime::parse_from_rfc3339(&expiration).expect("xs:dateTime");
    let lifetime = expires.signed_duration_since(chrono::Utc::now());
    assert!(
        lifetime > chrono::TimeDelta::minutes(59) && lifetime <= chrono::TimeDelta::minutes(60)
    );
    assert!(
        between(&cookie.text(), "<EncryptedData>", "</EncryptedData>")
            .is_some_and(|data| !data.is_empty())
    );
}

#[tokio::test]
async fn authorization_inputs_are_validated() {
    let server = sample_server().await;
    for body in [
        format!("<accountName>bad_name!</accountName><accountGuid>{DSS_GUID}</accountGuid>"),
        "<accountName>dss.example</accountName><accountGuid>not-a-guid</accountGuid>".to_owned(),
        "<accountGuid>ADB2FE48-0B2E-451e-8FC8-44B29845B0C6</accountGuid>".to_owned(),
    ] {
        let response = call(&server, "GetAuthorizationCookie", &body).await;
        assert_eq!(response.status, 500);
        assert_eq!(
            response.error_code().as_deref(),
            Some("InvalidParameters"),
            "{body}"
        );
    }

    let cookie_data = authorization_cookie(&server).await;
    let two = format!(
        "<authCookies><AuthorizationCookie><PlugInId>DssTargeting</PlugInId><CookieData>{cookie_data}</CookieData></AuthorizationCookie>\
         <AuthorizationCookie><PlugInId>DssTargeting</PlugInId><CookieData>{cookie_data}</CookieData></AuthorizationCookie></authCookies>\
         <protocolVersion>1.20</protocolVersion>"
    );
    let cases = [
        (two, "InvalidParameters"),
        (
            get_cookie_body("AAAA", "1.20"),
            "InvalidAuthorizationCookie",
        ),
        (
            get_cookie_body(&BASE64.encode("auth|x|y|1|1AAAAAAAAAAAAAAAA"), "1.20"),
            "InvalidAuthorizationCookie",
        ),
        (get_cookie_body(&cookie_data, "1"), "InvalidParameters"),
        (
            get_cookie_body(&cookie_data, "2.0"),
            "IncompatibleProtocolVersion",
        ),
    ];
    for (body, expected) in cases {
        let response = call(&server, "GetCookie", &body).await;
        assert_eq!(response.error_code().as_deref(), Some(expected), "{body}");
    }

    let lenient = FakeUpstream::start(
        FixtureCatalog::sample(),
        UpstreamOptions {
            account_check: false,
            ..UpstreamOptions::default()
        },
    )
    .await
    .expect("server starts");
    let response = call(
        &lenient,
        "GetAuthorizationCookie",
        "<accountName>bad_name!</accountName><accountGuid>x</accountGuid>",
    )
    .await;
    assert_eq!(response.status, 200);
}

#[tokio::test]
async fn config_data_reports_the_server_configuration() {
    let server = FakeUpstream::start(
        FixtureCatalog::sample(),
        UpstreamOptions {
            max_updates_per_request: 25,
            ..UpstreamOptions::default()
        },
    )
    .await
    .expect("server starts");
    let cookie = authorize(&server).await;
    let response = call(&server, "GetConfigData", &cookie).await;
    assert_eq!(response.status, 200, "{}", response.text());
    let text = response.text();
    for needle in [
        "<CatalogOnlySync>true</CatalogOnlySync>",
        "<LazySync>true</LazySync>",
        "<ServerHostsPsfFiles>false</ServerHostsPsfFiles>",
        "<MaxNumberOfUpdatesPerRequest>25</MaxNumberOfUpdatesPerRequest>",
        "<ProtocolVersion>1.20</ProtocolVersion>",
        "<LanguageID>0</LanguageID><ShortLanguage>all</ShortLanguage><LongLanguage>all</LongLanguage><Enabled>true</Enabled>",
        "<LanguageID>1033</LanguageID><ShortLanguage>en</ShortLanguage>",
        "<LanguageID>1031</LanguageID><ShortLanguage>de</ShortLanguage>",
        "<MaxUpdatesPerRequestInGetUpdateDecryptionData>",
    ] {
        assert!(text.contains(needle), "{needle} missing from {text}");
    }
    let anchor = between(&text, "<NewConfigAnchor>", "</NewConfigAnchor>")
        .expect("anchor")
        .to_owned();
    assert!(anchor.starts_with("1,"), "{anchor}");

    server.set_protocol_version("1.8");
    let again = call(
        &server,
        "GetConfigData",
        &format!("{cookie}<configAnchor>{anchor}</configAnchor>"),
    )
    .await;
    assert!(
        again
            .text()
            .contains("<ProtocolVersion>1.8</ProtocolVersion>")
    );
    let garbled = call(
        &server,
        "GetConfigData",
        &format!("{cookie}<configAnchor>yesterday</configAnchor>"),
    )
    .await;
    assert_eq!(garbled.error_code().as_deref(), Some("InvalidParameters"));

    for bad_cookie in [
        "",
        "<cookie><Expiration>2030-01-01T00:00:00Z</Expiration></cookie>",
        "<cookie><EncryptedData>bm9wZQ==</EncryptedData></cookie>",
    ] {
        let response = call(&server, "GetConfigData", bad_cookie).await;
        assert_eq!(response.status, 500);
        let text = response.text();
        assert_eq!(
            response.error_code().as_deref(),
            Some("InvalidCookie"),
            "{text}"
        );
        assert!(text.contains("<faultcode>soap:Client</faultcode>"));
        assert!(text.contains(
            "<Method>\"http://www.microsoft.com/SoftwareDistribution/GetConfigData\"</Method>"
        ));
        assert!(between(&text, "<ID>", "</ID>").is_some_and(|id| id.len() == 36));
    }
}

#[tokio::test]
async fn revision_lists_split_config_from_updates_and_filter_by_product_and_classification() {
    let server = sample_server().await;
    let cookie = authorize(&server).await;

    let (_, config) = revision_ids(&server, &cookie, &filter(true, None, &[], &[])).await;
    assert_eq!(config.len(), 18);
    assert!(
        ids_of(&config).contains(ids::SECURITY_UPDATES)
            && ids_of(&config).contains(ids::DETECTOID_M365_INSTALLED)
    );
    assert!(config.contains(&(ids::DETECTOID_WINDOWS_11_X64.to_owned(), 100)));

    let (_, updates) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    assert_eq!(updates.len(), 15);
    assert!(ids_of(&updates).is_disjoint(&ids_of(&config)));
    assert!(updates.contains(&(ids::INTEL_WIFI_DRIVER.to_owned(), 200)));

    let windows_security = filter(
        false,
        None,
        &[(ids::WINDOWS_11, true)],
        &[(ids::SECURITY_UPDATES, true)],
    );
    let (_, list) = revision_ids(&server, &cookie, &windows_security).await;
    assert_eq!(
        ids_of(&list),
        HashSet::from([ids::KB_CUMULATIVE_OLD, ids::KB_CUMULATIVE_NEW])
    );

    // A product family selects its products' updates.
    let family = filter(
        false,
        None,
        &[(ids::WINDOWS_FAMILY, true)],
        &[(ids::SECURITY_UPDATES, true), (ids::DRIVERS, true)],
    );
    let (_, list) = revision_ids(&server, &cookie, &family).await;
    assert_eq!(
        ids_of(&list),
        HashSet::from([
            ids::KB_CUMULATIVE_OLD,
            ids::KB_CUMULATIVE_NEW,
            ids::SERVER_SSU,
            ids::SERVER_CUMULATIVE,
            ids::INTEL_WIFI_DRIVER
        ])
    );

    for half in [
        filter(false, None, &[(ids::WINDOWS_11, true)], &[]),
        filter(false, None, &[], &[(ids::SECURITY_UPDATES, true)]),
    ] {
        let response = call(&server, "GetRevisionIdList", &format!("{cookie}{half}")).await;
        assert_eq!(response.error_code().as_deref(), Some("InvalidParameters"));
    }
    let bad_anchor = call(
        &server,
        "GetRevisionIdList",
        &format!("{cookie}{}", filter(false, Some("not an anchor"), &[], &[])),
    )
    .await;
    assert_eq!(
        bad_anchor.error_code().as_deref(),
        Some("InvalidParameters")
    );
    let no_filter = call(&server, "GetRevisionIdList", &cookie).await;
    assert_eq!(no_filter.error_code().as_deref(), Some("InvalidParameters"));
}

#[tokio::test]
async fn anchors_make_revision_lists_incremental() {
    let server = sample_server().await;
    let cookie = authorize(&server).await;
    let catalog = server.catalog();

    let (config_anchor, _) = revision_ids(&server, &cookie, &filter(true, None, &[], &[])).await;
    let (anchor, all) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    assert_eq!(all.len(), 15);
    let (same_anchor, nothing) =
        revision_ids(&server, &cookie, &filter(false, Some(&anchor), &[], &[])).await;
    assert!(nothing.is_empty());
    assert!(same_anchor.starts_with("1,"));
    let (_, no_config) = revision_ids(
        &server,
        &cookie,
        &filter(true, Some(&config_anchor), &[], &[]),
    )
    .await;
    assert!(no_config.is_empty());

    // Delta=false on a matching product asks for everything in it regardless of the anchor.
    let full = filter(
        false,
        Some(&anchor),
        &[(ids::MICROSOFT_365_APPS, false)],
        &[(ids::UPDATES, true)],
    );
    let (_, m365) = revision_ids(&server, &cookie, &full).await;
    assert_eq!(
        ids_of(&m365),
        HashSet::from([ids::M365_BUNDLE, ids::M365_BUNDLE_X86, ids::M365_BUNDLE_X64])
    );

    assert_eq!(catalog.revise(ids::KB_CUMULATIVE_NEW), Ok(201));
    let (second_anchor, revised) =
        revision_ids(&server, &cookie, &filter(false, Some(&anchor), &[], &[])).await;
    assert_eq!(revised, vec![(ids::KB_CUMULATIVE_NEW.to_owned(), 201)]);
    assert!(second_anchor.starts_with("2,"));

    assert_eq!(catalog.expire(ids::KB_CUMULATIVE_OLD), Ok(201));
    let mut added = FixtureUpdate::software(
        "5d1c43bb-7f07-4d5e-9b54-8e4a0c7a1e21",
        "5035000",
        "A new update",
        ids::WINDOWS_11,
        ids::UPDATES,
    );
    added.revision_number = 300;
    catalog.add(added.clone()).expect("new update");
    assert!(catalog.add(added).is_err());
    assert_eq!(catalog.change_number(), 4);
    let (_, changed) = revision_ids(
        &server,
        &cookie,
        &filter(false, Some(&second_anchor), &[], &[]),
    )
    .await;
    assert_eq!(
        changed,
        vec![
            (ids::KB_CUMULATIVE_OLD.to_owned(), 201),
            ("5d1c43bb-7f07-4d5e-9b54-8e4a0c7a1e21".to_owned(), 300)
        ]
    );
    // Config revisions did not change.
    let (_, no_config) = revision_ids(
        &server,
        &cookie,
        &filter(true, Some(&config_anchor), &[], &[]),
    )
    .await;
    assert!(no_config.is_empty());

    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &changed),
    )
    .await;
    let (received, _) = parse_update_data(&response.text());
    assert!(received[0].xml.contains("PublicationState=\"Expired\""));
    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &revised),
    )
    .await;
    let (received, _) = parse_update_data(&response.text());
    assert!(
        received[0]
            .xml
            .contains("(KB5034123) (rev. 201)</upd:Title>"),
        "{}",
        received[0].xml
    );
    // The old revision is still served.
    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &[(ids::KB_CUMULATIVE_NEW.to_owned(), 200)]),
    )
    .await;
    assert_eq!(
        parse_update_data(&response.text()).0[0].revision_number,
        200
    );
}

#[tokio::test]
async fn update_data_is_batched_compressed_and_digested() {
    let server = sample_server().await;
    let cookie = authorize(&server).await;
    let (_, config) = revision_ids(&server, &cookie, &filter(true, None, &[], &[])).await;
    let (_, updates) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    let everything: Vec<(String, u32)> = config.into_iter().chain(updates).collect();
    assert_eq!(everything.len(), 33);

    let mut with_unknown = everything.clone();
    with_unknown.push(("00000000-0000-0000-0000-000000000001".to_owned(), 1));
    with_unknown.push((ids::KB_CUMULATIVE_NEW.to_owned(), 999));
    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &with_unknown),
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    let (received, urls) = parse_update_data(&response.text());
    assert_eq!(received.len(), 33, "unknown identities are skipped");

    for update in &received {
        let expected = server.sends_compressed(&update.update_id, update.revision_number);
        assert_eq!(Some(update.compressed), expected, "{}", update.update_id);
        assert!(update.xml.contains(&format!(
            "UpdateID=\"{}\" RevisionNumber=\"{}\"",
            update.update_id, update.revision_number
        )));
    }
    let compressed: Vec<&str> = received
        .iter()
        .filter(|u| u.compressed)
        .map(|u| u.update_id.as_str())
        .collect();
    assert_eq!(compressed.len(), 11);
    for id in [
        ids::OFFICE_FAMILY,
        ids::DEFINITION_UPDATES,
        ids::SERVER_SSU,
        ids::MSRT,
        ids::INTEL_WIFI_DRIVER,
    ] {
        assert!(compressed.contains(&id), "{id}");
    }

    let cumulative = received
        .iter()
        .find(|u| u.update_id == ids::KB_CUMULATIVE_NEW)
        .expect("cumulative");
    assert_eq!(cumulative.file_digests.len(), 2);
    for digest in &cumulative.file_digests {
        assert!(cumulative.xml.contains(&format!("Digest=\"{digest}\"")));
        let url = &urls
            .iter()
            .find(|(file_digest, _)| file_digest == digest)
            .expect("url for digest")
            .1;
        let sha1 = BASE64.decode(digest).expect("base64");
        assert!(
            url.starts_with(&format!("{}Content/{:02X}/", server.url(), sha1[19])),
            "{url}"
        );
    }
    let upgrade = received
        .iter()
        .find(|u| u.update_id == ids::WINDOWS_11_UPGRADE)
        .expect("upgrade");
    assert_eq!(
        upgrade.file_digests.len(),
        2,
        "the EULA file is a content file too"
    );
    let bundle = received
        .iter()
        .find(|u| u.update_id == ids::M365_BUNDLE)
        .expect("bundle");
    assert!(bundle.file_digests.is_empty());
    assert!(
        !response
            .text()
            .contains("<FileDigestList></FileDigestList>")
    );
    let unique: HashSet<&String> = urls.iter().map(|(digest, _)| digest).collect();
    assert_eq!(unique.len(), urls.len(), "fileUrls has one entry per file");
}

#[tokio::test]
async fn update_data_refuses_more_than_the_batch_limit() {
    let server = FakeUpstream::start(
        FixtureCatalog::sample(),
        UpstreamOptions {
            max_updates_per_request: 5,
            ..UpstreamOptions::default()
        },
    )
    .await
    .expect("server starts");
    let cookie = authorize(&server).await;
    let (_, updates) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &updates[..6]),
    )
    .await;
    assert_eq!(response.status, 500);
    assert_eq!(response.error_code().as_deref(), Some("InvalidParameters"));
    assert!(response.text().contains("updateIds"));
    let ok = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &updates[..5]),
    )
    .await;
    assert_eq!(parse_update_data(&ok.text()).0.len(), 5);
    let missing = call(&server, "GetUpdateData", &cookie).await;
    assert_eq!(missing.error_code().as_deref(), Some("InvalidParameters"));
    let garbage = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &[("nope".to_owned(), 1)]),
    )
    .await;
    assert_eq!(garbage.error_code().as_deref(), Some("InvalidParameters"));
}

#[tokio::test]
async fn content_downloads_match_the_metadata_and_honour_ranges() {
    let server = sample_server().await;
    let cookie = authorize(&server).await;
    let response = call(
        &server,
        "GetUpdateData",
        &update_ids_body(&cookie, &[(ids::KB_CUMULATIVE_NEW.to_owned(), 200)]),
    )
    .await;
    let (received, urls) = parse_update_data(&response.text());
    let xml = &received[0].xml;
    let (digest, url) = &urls[0];
    let path = url
        .strip_prefix(&server.url())
        .map(|rest| format!("/{rest}"))
        .expect("server URL");
    let file_name = path.rsplit('/').next().expect("file name");
    assert!(xml.contains(&format!(
        "Digest=\"{digest}\" DigestAlgorithm=\"SHA1\" FileName=\"{file_name}\""
    )));

    let whole = http(&server.url(), "GET", &path, &[], b"").await;
    assert_eq!(whole.status, 200);
    assert_eq!(whole.header("accept-ranges"), Some("bytes"));
    assert_eq!(BASE64.encode(Sha1::digest(&whole.body)), *digest);
    let sha256 = BASE64.encode(Sha256::digest(&whole.body));
    assert!(xml.contains(&format!(
        "<upd:AdditionalDigest Algorithm=\"SHA256\">{sha256}</upd:AdditionalDigest>"
    )));
    assert!(xml.contains(&format!("Size=\"{}\"", whole.body.len())));

    let total = whole.body.len();
    let part = http(
        &server.url(),
        "GET",
        &path,
        &[("Range", "bytes=100-1099")],
        b"",
    )
    .await;
    assert_eq!(part.status, 206);
    assert_eq!(
        part.header("content-range"),
        Some(format!("bytes 100-1099/{total}").as_str())
    );
    assert_eq!(part.body, whole.body[100..1100]);
    let tail = http(&server.url(), "GET", &path, &[("Range", "bytes=-10")], b"").await;
    assert_eq!(tail.body, whole.body[total - 10..]);
    let open = http(
        &server.url(),
        "GET",
        &path,
        &[("Range", &format!("bytes={}-", total - 3))],
        b"",
    )
    .await;
    assert_eq!((open.status, open.body.len()), (206, 3));
    for bad in [format!("bytes={total}-"), "bytes=50-10".to_owned()] {
        let response = http(&server.url(), "GET", &path, &[("Range", &bad)], b"").await;
        assert_eq!(response.status, 416, "{bad}");
        assert_eq!(
            response.header("content-range"),
            Some(format!("bytes */{total}").as_str())
        );
    }

    let lower = http(&server.url(), "GET", &path.to_ascii_lowercase(), &[], b"").await;
    assert_eq!(lower.status, 200, "folders and paths are case-insensitive");
    let wrong_folder = format!(
        "/Content/{}/{file_name}",
        if path.contains("/Content/00/") {
            "01"
        } else {
            "00"
        }
    );
    assert_eq!(
        http(&server.url(), "GET", &wrong_folder, &[], b"")
            .await
            .status,
        404
    );
    assert_eq!(
        http(&server.url(), "GET", "/Content/AB/nothing.cab", &[], b"")
            .await
            .status,
        404
    );

    let downloads: Vec<_> = server
        .requests()
        .into_iter()
        .filter(|r| r.operation == CONTENT_OPERATION)
        .collect();
    assert_eq!(downloads.len(), 9);
    assert_eq!(downloads[1].range.as_deref(), Some("bytes=100-1099"));
}

#[tokio::test]
async fn soap12_is_answered_in_soap12() {
    let server = sample_server().await;
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"utf-8\"?><soap12:Envelope xmlns:soap12=\"http://www.w3.org/2003/05/soap-envelope\">\
         <soap12:Body><GetAuthConfig xmlns=\"{SERVER_SYNC_NS}\" /></soap12:Body></soap12:Envelope>"
    );
    let post = |content_type: String, body: String| {
        let url = server.url();
        async move {
            http(
                &url,
                "POST",
                SERVER_SYNC_PATH,
                &[("Content-Type", content_type.as_str())],
                body.as_bytes(),
            )
            .await
        }
    };
    let ok = post(
        format!("application/soap+xml; charset=utf-8; action=\"{SERVER_SYNC_NS}/GetAuthConfig\""),
        body.clone(),
    )
    .await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert!(
        ok.header("content-type")
            .is_some_and(|value| value.starts_with("application/soap+xml"))
    );
    assert!(
        ok.text()
            .contains("xmlns:soap=\"http://www.w3.org/2003/05/soap-envelope\"")
    );
    assert!(ok.text().contains("<PlugInID>DssTargeting</PlugInID>"));

    let fault = post(
        format!("application/soap+xml; charset=utf-8; action=\"{SERVER_SYNC_NS}/GetConfigData\""),
        body.replace("<GetAuthConfig ", "<GetConfigData "),
    )
    .await;
    assert_eq!(fault.status, 500);
    let text = fault.text();
    assert!(
        text.contains("<soap:Code><soap:Value>soap:Sender</soap:Value></soap:Code>"),
        "{text}"
    );
    assert!(
        text.contains("<Detail><ErrorCode>InvalidCookie</ErrorCode>"),
        "{text}"
    );

    let mismatch = post(
        format!("application/soap+xml; action=\"{SERVER_SYNC_NS}/GetCookie\""),
        body.clone(),
    )
    .await;
    assert_eq!(mismatch.status, 500);
    assert_eq!(mismatch.error_code(), None);
    assert!(
        mismatch
            .text()
            .contains("Server did not recognize the value of HTTP Header SOAPAction")
    );

    // A SOAP 1.2 envelope sent as SOAP 1.1 is a VersionMismatch.
    let wrong = http(
        &server.url(),
        "POST",
        SERVER_SYNC_PATH,
        &[
            ("Content-Type", "text/xml"),
            ("SOAPAction", &format!("\"{SERVER_SYNC_NS}/GetAuthConfig\"")),
        ],
        body.as_bytes(),
    )
    .await;
    assert!(
        wrong
            .text()
            .contains("<faultcode>soap:VersionMismatch</faultcode>")
    );
    let recorded = server.requests();
    assert_eq!(recorded[0].soap_version, Some(SoapVersion::Soap12));
}

#[tokio::test]
async fn soap_action_must_name_the_body_operation() {
    let server = sample_server().await;
    let body = soap11_envelope(SERVER_SYNC_NS, "GetAuthConfig", "");
    for action in [
        None,
        Some("\"http://www.microsoft.com/SoftwareDistribution/GetCookie\""),
    ] {
        let mut headers = vec![("Content-Type", "text/xml; charset=utf-8")];
        if let Some(action) = action {
            headers.push(("SOAPAction", action));
        }
        let response = http(
            &server.url(),
            "POST",
            SERVER_SYNC_PATH,
            &headers,
            body.as_bytes(),
        )
        .await;
        assert_eq!(response.status, 500);
        assert_eq!(response.error_code(), None, "a bare fault has no ErrorCode");
        assert!(
            response
                .text()
                .contains("<faultcode>soap:Client</faultcode>")
                && response.text().contains("<detail></detail>")
        );
    }
    // The DSS auth operation only lives on the DSS auth endpoint.
    let misplaced = http(
        &server.url(),
        "POST",
        SERVER_SYNC_PATH,
        &[("Content-Type", "text/xml"), ("SOAPAction", "\"http://www.microsoft.com/SoftwareDistribution/Server/DssAuthWebService/GetAuthorizationCookie\"")],
        soap11_envelope(patchbay_wsus_upstream::DSS_AUTH_NS, "GetAuthorizationCookie", "").as_bytes(),
    )
    .await;
    assert_eq!((misplaced.status, misplaced.error_code()), (500, None));
    let unimplemented = call(&server, "GetDeployments", "").await;
    assert_eq!(
        unimplemented.error_code().as_deref(),
        Some("InternalServerError")
    );
    assert!(
        unimplemented
            .text()
            .contains("<faultcode>soap:Server</faultcode>")
    );
    assert_eq!(
        http(
            &server.url(),
            "POST",
            SERVER_SYNC_PATH,
            &[("Content-Type", "application/json")],
            b"{}"
        )
        .await
        .status,
        415
    );
    assert_eq!(
        http(&server.url(), "GET", "/nothing", &[], b"")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn requests_are_recorded() {
    let server = FakeUpstream::start(
        FixtureCatalog::generated(120, 1),
        UpstreamOptions::default(),
    )
    .await
    .expect("server starts");
    let cookie = authorize(&server).await;
    let (anchor, updates) = revision_ids(&server, &cookie, &filter(false, None, &[], &[])).await;
    assert_eq!(updates.len(), 120);
    revision_ids(&server, &cookie, &filter(true, Some(&anchor), &[], &[])).await;
    for batch in updates.chunks(50) {
        let response = call(&server, "GetUpdateData", &update_ids_body(&cookie, batch)).await;
        assert_eq!(parse_update_data(&response.text()).0.len(), batch.len());
    }
    call(
        &server,
        "GetConfigData",
        &format!("{cookie}<configAnchor>{anchor}</configAnchor>"),
    )
    .await;

    let requests = server.requests();
    let operations: Vec<&str> = requests.iter().map(|r| r.operation.as_str()).collect();
    assert_eq!(
        operations,
        [
            "GetAuthConfig",
            "GetAuthorizationCookie",
            "GetCookie",
            "GetRevisionIdList",
            "GetRevisionIdList",
            "GetUpdateData",
            "GetUpdateData",
            "GetUpdateData",
            "GetConfigData"
        ]
    );
    assert_eq!(
        requests[0].soap_action.as_deref(),
        Some("http://www.microsoft.com/SoftwareDistribution/GetAuthConfig")
    );
    assert_eq!(
        (
            requests[3].filter_get_config,
            requests[3].filter_anchor.as_deref()
        ),
        (Some(false), None)
    );
    assert_eq!(
        (
            requests[4].filter_get_config,
            requests[4].filter_anchor.as_deref()
        ),
        (Some(true), Some(anchor.as_str()))
    );
    let counts: Vec<Option<usize>> = requests[5..8].iter().map(|r| r.update_id_count).collect();
    assert_eq!(counts, [Some(50), Some(50), Some(20)]);
    assert_eq!(requests[8].config_anchor.as_deref(), Some(anchor.as_str()));
    server.clear_requests();
    assert!(server.requests().is_empty());
    server.shutdown().await;
}
